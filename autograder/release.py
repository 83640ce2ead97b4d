"""The student edition: a standalone tree to publish as its own public repository, term by term.

``python -m autograder release --through N --out DIR`` (``make release N=...``) writes::

    README.md          set-up, where each chapter is, the visible tests, how to submit
    requirements.txt   the course's runtime pins (no torch, nbgrader, Jupyter Book) and ``-e .``
    pyproject.toml     makes the edition's ``npdl/`` a package (``pip install .``)
    runtime.txt        Binder's Python version (the pins need 3.11)
    postBuild          Binder only, when a released book notebook compares with PyTorch
    .gitignore
    npdl/              core + the modules of chapters 1..N-1, exactly as `handout.write_npdl`
    exercises/<a>/     the released notebooks of assignments 1..N (from exercises/)
    book/<chapter>.ipynb  every book chapter whose npdl imports are all released by N

Every notebook begins with a Colab set-up cell (`SETUP_CELL`): where npdl is not importable it
downloads from the edition exactly the modules the handout would give that notebook.

Nothing else leaves the repository: no solutions, hidden tests, checks, gradebook, or npdl module
of chapter N or later (tests/test_release.py greps every file for them). The output is
deterministic: the same inputs give byte-identical files, so the public history stays clean.
Re-running into the same DIR (a clone of the public repository) replaces everything but ``.git``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import jupytext
import nbformat
import yaml

from .handout import MODULE_CHAPTER, chapter_of, shipped_before, shipped_modules, write_npdl
from .notebooks import EXERCISES, REPO, SOLUTIONS, assignments

BOOK = REPO / "book"
CONFIG = REPO / "_config.yml"
RUNTIME = REPO / "requirements.txt"
RUNTIME_TXT = REPO / "runtime.txt"  # Binder's Python, for this repository and the edition
MARKER = ".npdl-edition"  # names a folder this command may empty before writing into it
# Runtime pins that the edition leaves out: the tests' oracle and the instructor's tools.
NOT_FOR_STUDENTS = {"torch", "nbgrader", "jupyter-book", "jupytext", "sphinx-mathjax-offline"}

# The first cell of every notebook of the edition. Colab has no npdl: the cell fetches the modules
# this notebook may use, as the handout would ship them, from the edition itself.
SETUP_CELL = """\
# Set-up for Colab: fetches the npdl modules this notebook may use (earlier chapters', as the
# student edition releases them). Does nothing where npdl is importable (Binder, your machine).
import importlib.util
if importlib.util.find_spec("npdl") is None:
    import pathlib, urllib.request
    EDITION = "{base}"
    pathlib.Path("npdl").mkdir(exist_ok=True)
    for module in {modules!r}:
        urllib.request.urlretrieve(f"{{EDITION}}{{module}}.py", f"npdl/{{module}}.py")
    importlib.invalidate_caches()"""
SETUP_ID = "colab-setup"
_NPDL_IMPORT = re.compile(r"^\s*(?:from|import)\s+npdl\.(\w+)", re.MULTILINE)
_TITLE = re.compile(r"^# (.+)$", re.MULTILINE)


class ReleaseError(ValueError):
    """The edition cannot be written as asked (unknown N, unsafe DIR, exercises not built)."""


# ------------------------------------------------------------------------------ what is released


def edition_url(config: Path = CONFIG) -> str:
    """The student edition's repository: ``repository.url`` of _config.yml (the one setting)."""
    url = yaml.safe_load(config.read_text(encoding="utf-8"))["repository"]["url"]
    return str(url).rstrip("/")


def edition_branch(config: Path = CONFIG) -> str:
    return str(yaml.safe_load(config.read_text(encoding="utf-8"))["repository"]["branch"])


def raw_base(url: str, branch: str) -> str:
    """Where Colab downloads the edition's npdl files from (GitHub's raw file host)."""
    slug = url.removeprefix("https://github.com/")
    return f"https://raw.githubusercontent.com/{slug}/{branch}/npdl/"


def setup_cell(base: str, modules: list[str]):
    """The set-up code cell that fetches ``modules`` from ``base`` when npdl is missing."""
    cell = nbformat.v4.new_code_cell(SETUP_CELL.format(base=base, modules=list(modules)))
    cell.id = SETUP_ID
    return cell


def released(through: int, solutions: Path = SOLUTIONS) -> list[str]:
    """Assignment ids of chapters 1..``through``; the count is that of solutions/."""
    known = assignments(solutions)
    if not 1 <= through <= len(known):
        raise ReleaseError(
            f"--through must be between 1 and {len(known)} (the assignments in solutions/). "
            f"Received: {through}."
        )
    return [a for a in known if chapter_of(a) <= through]


def book_chapters(book: Path = BOOK) -> list[Path]:
    """The numbered chapter sources book/NN_*.md, sorted."""
    return sorted(p for p in book.glob("[0-9][0-9]_*.md"))


def npdl_imports(md: Path) -> list[str]:
    """The npdl modules a book chapter imports (``from npdl.layers import ...``), sorted."""
    return sorted(set(_NPDL_IMPORT.findall(md.read_text(encoding="utf-8"))))


def runs_from(md: Path) -> int:
    """The first release N whose edition runs this chapter's notebook: all its imports shipped.

    An edition through N ships the modules of chapters < N, so a chapter importing npdl.layers
    (chapter 4) runs from release 5 on, and never before its own chapter is released.
    """
    needed = [MODULE_CHAPTER[m] for m in npdl_imports(md) if m in MODULE_CHAPTER]
    return max([chapter_of(md.stem), *(c + 1 for c in needed)])


def requirements(runtime: Path = RUNTIME) -> str:
    """The edition's requirements.txt: the repository's runtime pins, minus NOT_FOR_STUDENTS."""
    pins = []
    for line in runtime.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name = re.split(r"[=<>!~\[; ]", line, maxsplit=1)[0].lower()
        if name not in NOT_FOR_STUDENTS:
            pins.append(line)
    return (
        "# The student edition's environment (Binder reads this file): the course's pinned\n"
        "# libraries and this repository's npdl. Install with: pip install -r requirements.txt\n"
        + "".join(f"{pin}\n" for pin in sorted(pins, key=str.lower))
        + "-e .\n"
    )


# ------------------------------------------------------------------------------ writing notebooks


def _with_setup(nb, base: str, modules: list[str]):
    """``nb`` with the Colab set-up cell first."""
    if any(c.get("id") == SETUP_ID for c in nb.cells):
        raise ReleaseError(f"a notebook already has a cell with id {SETUP_ID!r}")
    nb.cells.insert(0, setup_cell(base, modules))
    nbformat.validate(nb)
    return nb


def _write_nb(nb, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


def book_notebook(md: Path, base: str):
    """A book chapter as a plain notebook (no outputs, stable ids) behind the set-up cell."""
    nb = jupytext.read(md, fmt="md:myst")
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for index, cell in enumerate(nb.cells):
        cell.id = f"cell-{index:03d}"
        cell.metadata.pop("lines_to_next_cell", None)
    return _with_setup(nb, base, shipped_before(runs_from(md)))


# ------------------------------------------------------------------------------ the edition


def _prepare(out: Path) -> None:
    """Empty ``out`` for a rebuild, keeping ``.git``; refuse a folder that is not an edition."""
    if out.exists():
        entries = [p for p in out.iterdir() if p.name != ".git"]
        if entries and not (out / MARKER).is_file():
            raise ReleaseError(
                f"{out} is not empty and holds no {MARKER}: give an empty folder, a fresh clone "
                "of the public repository, or a folder an earlier release wrote."
            )
        for entry in entries:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _title(text: str, fallback: str) -> str:
    match = _TITLE.search(text)
    return match.group(1).strip() if match else fallback


def build_release(
    through: int,
    out: Path,
    *,
    url: str | None = None,
    branch: str | None = None,
    exercises: Path = EXERCISES,
    solutions: Path = SOLUTIONS,
    book: Path = BOOK,
) -> list[Path]:
    """Write the student edition of assignments 1..``through`` into ``out``; return its files."""
    url = (url or edition_url()).rstrip("/")
    branch = branch or edition_branch()
    base = raw_base(url, branch)
    ids = released(through, solutions)
    missing = [a for a in ids if not any((exercises / a).glob("*.ipynb"))]
    if missing:
        raise ReleaseError(f"{missing} not built in {exercises}: run `make exercises` first.")
    out = Path(out)
    _prepare(out)

    modules = write_npdl(out, ids[-1])
    chapters = []  # (assignment, [notebook paths], title)
    for assignment in ids:
        paths = []
        for src in sorted((exercises / assignment).glob("*.ipynb")):
            nb = _with_setup(nbformat.read(src, as_version=4), base, shipped_modules(assignment))
            target = out / "exercises" / assignment / src.name
            _write_nb(nb, target)
            paths.append(target.relative_to(out).as_posix())
        first = out / paths[0]
        title = _title("".join(nbformat.read(first, as_version=4).cells[1].source), assignment)
        chapters.append((assignment, paths, title))

    book_rows, torch = [], False
    for md in book_chapters(book):
        start = runs_from(md)
        title = _title(md.read_text(encoding="utf-8"), md.stem)
        target = None
        if start <= through:
            target = out / "book" / f"{md.stem}.ipynb"
            nb = book_notebook(md, base)
            _write_nb(nb, target)
            torch |= any("import torch" in c.source for c in nb.cells if c.cell_type == "code")
        book_rows.append((md.stem, title, start, target and target.relative_to(out).as_posix()))

    files = {
        MARKER: f"student edition through assignment {through}\n",
        "README.md": student_readme(through, url, branch, chapters, book_rows, modules, torch),
        "requirements.txt": requirements(),
        "pyproject.toml": _PYPROJECT.format(through=through),
        "runtime.txt": RUNTIME_TXT.read_text(encoding="utf-8"),
        ".gitignore": "*.egg-info/\n.ipynb_checkpoints/\n__pycache__/\nbuild/\n",
    }
    if torch:
        files["postBuild"] = _POSTBUILD
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    if torch:
        (out / "postBuild").chmod(0o755)
    return sorted(p for p in out.rglob("*") if p.is_file() and ".git" not in p.parts)


_PYPROJECT = """\
# The released part of npdl as a package: `pip install -r requirements.txt` installs it (-e .).
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "npdl"
version = "0.{through}.0"
description = "npdl, the course's NumPy deep-learning library: the chapters released so far."
requires-python = ">=3.11"
dependencies = ["numpy", "scipy"]

[tool.setuptools]
packages = ["npdl"]
"""

_POSTBUILD = """\
#!/bin/bash
# Binder runs this after requirements.txt: the CPU build of PyTorch, which a book notebook
# uses to compare npdl with torch.nn (Colab has it already; the exercises never need it).
set -euo pipefail
pip install --no-cache-dir torch --index-url https://download.pytorch.org/whl/cpu
"""


def student_readme(through, url, branch, chapters, book_rows, modules, torch) -> str:
    """The edition's README.md (deterministic: built only from its arguments)."""
    slug = url.removeprefix("https://github.com/")
    name = slug.rsplit("/", 1)[-1]

    def launch(path: str) -> str:
        binder = f"https://mybinder.org/v2/gh/{slug}/{branch}?labpath={path.replace('/', '%2F')}"
        colab = f"https://colab.research.google.com/github/{slug}/blob/{branch}/{path}"
        return f"[Binder]({binder}) · [Colab]({colab})"

    rows = []
    for assignment, paths, title in chapters:
        for path in paths:
            rows.append(
                f"| {chapter_of(assignment)} | {title} | [`{path}`]({path}) | {launch(path)} |"
            )
    book = []
    for stem, title, start, path in book_rows:
        if path:
            where = f"[`{path}`]({path}) · {launch(path)}"
        elif start <= len(assignments()):
            where = f"with the release of assignment {start}"
        else:
            where = "not in the edition (it uses the last assignment's module): read it in the book"
        book.append(f"| {chapter_of(stem)} | {title} | {where} |")
    shipped = ", ".join(f"`npdl.{Path(p).stem}`" for p in modules if Path(p).stem != "__init__")
    torch_note = (
        "\nOne book notebook compares npdl with PyTorch: `pip install torch` to run that part "
        "locally (Binder installs it with `postBuild`, Colab has it).\n"
        if torch
        else ""
    )
    return f"""# Build your own deep-learning framework: student edition

The exercises of the course, released so far through **assignment {through}**, and `npdl`, the
NumPy library you build in it, as far as the deadlines have passed. Each release before an
assignment adds its notebook here, and the reference modules of the chapters already graded.

## Set-up

With Python 3.11 or later:

```bash
git clone {url}.git
cd {name}
python3 -m venv .venv && . .venv/bin/activate
pip install -r requirements.txt   # the pinned libraries and this repository's npdl
pip install jupyterlab            # or open the notebooks in VS Code
jupyter lab
```

Or press a notebook's **Binder** link (everything installed, in your browser) or its **Colab**
link: a notebook's first cell downloads the npdl modules it may use from this repository when
npdl is missing, and does nothing elsewhere.
{torch_note}
## The chapters

Each assignment's notebook is in `exercises/<assignment>/`. Read the chapter in the course book
first.

| chapter | assignment | notebook | open in |
|---|---|---|---|
{chr(10).join(rows)}

The book's chapters as notebooks, which run once every npdl module they import is released:

| chapter | title | notebook |
|---|---|---|
{chr(10).join(book)}

This edition's `npdl` holds the modules of the chapters before assignment {through}, which the
notebooks and your own code may import:
{shipped}. The module of the chapter you are working on is the one you write.

## Running the visible tests

Run the notebook from the top (*Run → Run All Cells*). Write your code where a cell says
`# YOUR CODE HERE` and delete its `raise NotImplementedError()`. The test cell after it checks your
code: a pass prints a `✔` line, and a failure says which input failed, what was expected and
what your code returned. Until you write a function, its tests fail with `NotImplementedError`.
When the assignment is graded, hidden tests run the same code on more inputs (more shapes, a
batch of one, extreme values, float32).

## Submitting

Submit the notebook file itself, `exercises/<assignment>/<notebook>.ipynb`, the way your
instructor says (for instance by uploading it to Gradescope). Keep its name and its cells: do not
delete, split or re-order them, and leave the read-only cells as they are. Restart the kernel and
run all cells once before you submit, so that it runs from top to bottom.
"""
