"""The student edition (`python -m autograder release --through N`): nothing unreleased leaks.

For every N the edition is built and all of its files (notebooks as raw JSON and as decoded cell
text) are searched for every substantial line of: the solution blocks of assignments N and later,
every hidden-test block, the autograder's checks, and the npdl modules of chapters N and later.
A line is substantial when it has at least MIN_CHARS characters once stripped (the book tests'
threshold: `return out` or `for layer in layers:` is not distinctive), is not an import (a name
reveals no code) and does not occur in what is legitimately released: the released exercise
notebooks (nbgrader's output, whose solution-freeness tests/test_handout.py checks on its own)
and the released npdl modules.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from autograder.handout import MODULE_CHAPTER, NPDL, chapter_of, shipped_modules
from autograder.notebooks import EXERCISES, REPO, SOLUTIONS, assignments, graded_cells, sources
from autograder.release import (
    MARKER,
    SETUP_ID,
    ReleaseError,
    book_chapters,
    build_release,
    released,
    requirements,
    runs_from,
)

ASSIGNMENTS = assignments()
THROUGH = list(range(1, len(ASSIGNMENTS) + 1))
MIN_CHARS = 22  # as book_helpers.MIN_LINE_CHARS
_BLOCK = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", re.DOTALL)


def _lines(text: str) -> set[str]:
    return {
        s
        for line in text.splitlines()
        if len(s := line.strip()) >= MIN_CHARS and not s.startswith(("import ", "from "))
    }


def _blocks(assignment: str, kind: str) -> set[str]:
    found = set()
    for md in sources(assignment):
        for block_kind, body in _BLOCK.findall(md.read_text(encoding="utf-8")):
            if block_kind == kind:
                found |= _lines(body)
    return found


def _notebook_text(path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return "\n".join("".join(cell["source"]) for cell in nb["cells"])


def legitimate(through: int) -> str:
    """The text of the released material itself (stub lines, imports, helpers)."""
    texts = []
    for assignment in released(through):
        texts += [_notebook_text(nb) for nb in sorted((EXERCISES / assignment).glob("*.ipynb"))]
    for module in shipped_modules(ASSIGNMENTS[through - 1]):
        texts.append((NPDL / f"{module}.py").read_text(encoding="utf-8"))
    return "\n".join(texts)


def forbidden(through: int) -> dict[str, str]:
    """Substantial unreleased line -> where it comes from."""
    found: dict[str, str] = {}
    for assignment in ASSIGNMENTS:
        for line in _blocks(assignment, "HIDDEN TESTS"):
            found[line] = f"hidden test of {assignment}"
        if chapter_of(assignment) >= through:
            for line in _blocks(assignment, "SOLUTION"):
                found[line] = f"solution of {assignment}"
    for module, chapter in MODULE_CHAPTER.items():
        path = NPDL / f"{module}.py"
        if chapter >= through and path.exists():
            for line in _lines(path.read_text(encoding="utf-8")):
                found.setdefault(line, f"npdl/{module}.py (chapter {chapter})")
    for path in sorted((REPO / "autograder" / "checks").glob("*.py")):
        for line in _lines(path.read_text(encoding="utf-8")):
            found.setdefault(line, f"autograder/checks/{path.name}")
    ok = legitimate(through)  # a line the released text contains proves no leak
    return {line: where for line, where in found.items() if line not in ok}


def leaks(edition, unreleased: dict[str, str]) -> list[str]:
    """Every unreleased line found in any file of ``edition`` (as 'file: where: line')."""
    found = []
    for path in sorted(p for p in edition.rglob("*") if p.is_file()):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":
            text += "\n" + _notebook_text(path)  # JSON escapes quotes: search the cells too
        rel = path.relative_to(edition).as_posix()
        found += [f"{rel}: {where}: {line}" for line, where in unreleased.items() if line in text]
    return found


@pytest.fixture(scope="module")
def editions(tmp_path_factory):
    root = tmp_path_factory.mktemp("editions")
    return {n: (build_release(n, root / str(n)), root / str(n)) for n in THROUGH}


def test_count_comes_from_solutions():
    assert THROUGH[-1] == len([p for p in SOLUTIONS.iterdir() if any(p.glob("*.md"))])
    assert released(THROUGH[-1]) == ASSIGNMENTS
    with pytest.raises(ReleaseError, match="between 1 and"):
        released(len(ASSIGNMENTS) + 1)
    with pytest.raises(ReleaseError):
        released(0)


@pytest.mark.parametrize("through", THROUGH)
def test_nothing_unreleased_leaks(editions, through):
    files, edition = editions[through]
    unreleased = forbidden(through)
    kinds = {where.split(" ")[0] for where in unreleased.values()}
    # The search must have teeth: hidden tests always, and the checks, are looked for.
    assert "hidden" in kinds and len(unreleased) >= 200, (through, len(unreleased))
    if through < len(ASSIGNMENTS):
        assert "solution" in kinds and any(w.startswith("npdl/") for w in unreleased.values())
    assert leaks(edition, unreleased) == []
    names = {p.relative_to(edition).parts[0] for p in files}
    assert not names & {"solutions", "autograder", "reference_impl", "gradebook.db", "tests"}
    assert not [p for p in files if p.suffix == ".db" or "nbgrader" in p.name]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text, path


@pytest.mark.parametrize("through", THROUGH)
def test_contents(editions, through):
    files, edition = editions[through]
    ids = ASSIGNMENTS[:through]
    notebooks = sorted(p.relative_to(edition).as_posix() for p in files if p.suffix == ".ipynb")
    expected = [
        f"exercises/{a}/{nb.name}" for a in ids for nb in sorted(EXERCISES.glob(f"{a}/*.ipynb"))
    ]
    expected += [f"book/{md.stem}.ipynb" for md in book_chapters() if runs_from(md) <= through]
    assert notebooks == sorted(expected)
    shipped = sorted(p.stem for p in (edition / "npdl").glob("*.py"))
    assert shipped == sorted(shipped_modules(ids[-1]))  # exactly the handout of assignment N
    for module in shipped:
        assert (edition / "npdl" / f"{module}.py").read_bytes() == (
            NPDL / f"{module}.py"
        ).read_bytes()
        assert MODULE_CHAPTER.get(module, 0) < through
    req = (edition / "requirements.txt").read_text()
    assert req == requirements() and "-e ." in req.splitlines()
    assert not re.search(r"^(torch|nbgrader|jupyter-book)\b", req, re.MULTILINE)
    readme = (edition / "README.md").read_text()
    for path in notebooks:
        assert f"({path})" in readme, f"README does not link {path}"
    for heading in (
        "## Set-up",
        "## The chapters",
        "## Running the visible tests",
        "## Submitting",
    ):
        assert heading in readme
    assert (edition / MARKER).is_file() and (edition / "pyproject.toml").is_file()
    assert (edition / "runtime.txt").read_text() == "python-3.11\n"  # Binder's Python


@pytest.mark.parametrize("through", [1, THROUGH[-1]])
def test_every_notebook_begins_with_the_colab_setup(editions, through):
    files, edition = editions[through]
    for path in (p for p in files if p.suffix == ".ipynb"):
        nb = nbformat.read(path, as_version=4)
        first = nb.cells[0]
        assert first.id == SETUP_ID and first.cell_type == "code", path
        assert 'find_spec("npdl") is None' in first.source
        fetched = re.search(r"for module in (\[.*?\]):", first.source).group(1)
        for module in json.loads(fetched.replace("'", '"')):
            assert (edition / "npdl" / f"{module}.py").is_file(), (path, module)
        if path.parts[-3] == "exercises":  # an exercise gets its handout, never more
            assert json.loads(fetched.replace("'", '"')) == shipped_modules(path.parts[-2])


def test_leak_search_catches_a_deliberate_leak(editions, tmp_path):
    _, built = editions[2]
    edition = tmp_path / "edition"
    shutil.copytree(built, edition)
    unreleased = forbidden(2)
    assert leaks(edition, unreleased) == []
    solution = sorted(set(_blocks("02_activations", "SOLUTION")) & set(unreleased))[0]
    hidden = sorted(set(_blocks("01_backprop", "HIDDEN TESTS")) & set(unreleased))[0]
    nb_path = edition / "exercises" / "02_activations" / "activations.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells[3].source += "\n        " + solution  # JSON-escaped in the file
    nbformat.write(nb, nb_path)
    (edition / "README.md").write_text("notes\n" + hidden + "\n")
    shutil.copyfile(NPDL / "layers.py", edition / "npdl" / "extra.py")
    found = leaks(edition, unreleased)
    assert any(f.startswith("exercises/02_activations") and solution in f for f in found)
    assert any(f.startswith("README.md") and hidden in f for f in found)
    assert any(f.startswith("npdl/extra.py: npdl/layers.py") for f in found)


def test_deterministic_and_rebuilds_in_place(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    build_release(3, a)
    (b / ".git").mkdir(parents=True)
    (b / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    build_release(2, b)  # an earlier release in the clone, then extend it
    build_release(3, b)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(
        p.relative_to(b) for p in b.rglob("*") if p.is_file() and ".git" not in p.parts
    )
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (b / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n"
    build_release(3, a)
    assert all((a / rel).read_bytes() == (b / rel).read_bytes() for rel in files)


def test_refuses_to_empty_a_folder_it_did_not_write(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(ReleaseError, match="not empty"):
        build_release(1, tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_cli(tmp_path, capsys):
    from autograder.__main__ import main

    assert main(["release", "--through", "2", "--out", str(tmp_path / "e")]) == 0
    assert "through assignment 2" in capsys.readouterr().out
    assert main(["release", "--through", "99", "--out", str(tmp_path / "f")]) == 2
    assert "between 1 and" in capsys.readouterr().err


def test_colab_cell_fetches_exactly_the_handout_once(editions, tmp_path):
    """Where npdl is missing (python -S: no site-packages), the first cell downloads the handout
    from the edition (here through a file:// URL instead of GitHub's raw host), then does
    nothing on a second run."""
    _, edition = editions[3]
    nb = nbformat.read(edition / "exercises" / "02_activations" / "activations.ipynb", 4)
    base = (edition / "npdl").as_uri() + "/"
    code, n = re.subn(r'EDITION = "[^"]*"', f"EDITION = {base!r}", nb.cells[0].source)
    assert n == 1 and "raw.githubusercontent.com" in nb.cells[0].source
    stamps = []
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True
        )
        assert run.returncode == 0, run.stderr
        stamps.append({p.name: p.stat().st_mtime_ns for p in (tmp_path / "npdl").iterdir()})
    assert stamps[0] == stamps[1], "the second run fetched again"
    assert sorted(stamps[0]) == sorted(f"{m}.py" for m in shipped_modules("02_activations"))
    for name in stamps[0]:
        assert (tmp_path / "npdl" / name).read_bytes() == (NPDL / name).read_bytes()
    where = subprocess.run(
        [sys.executable, "-c", "import npdl.gradcheck as g; print(g.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert where.returncode == 0 and where.stdout.strip().startswith(str(tmp_path)), where


def test_edition_npdl_is_the_handout_of_assignment_n(editions, tmp_path):
    from autograder.handout import build_handout

    bundles = {b.name: b for b in build_handout(tmp_path / "handout")}
    for through in THROUGH:
        bundle = bundles[ASSIGNMENTS[through - 1]] / "npdl"
        edition = editions[through][1] / "npdl"
        names = sorted(p.name for p in bundle.iterdir())
        assert names == sorted(p.name for p in edition.iterdir()), through
        assert all((bundle / n).read_bytes() == (edition / n).read_bytes() for n in names)


@pytest.mark.slow
def test_a_notebook_from_the_edition_grades_like_the_release(editions, tmp_path):
    """Students submit the edition's notebook, Colab cell included: full marks for the
    solutions, zero for the blank notebook, as with the notebook of exercises/."""
    edition = editions[2][1]
    blank = nbformat.read(edition / "exercises" / "02_activations" / "activations.ipynb", 4)
    solved = nbformat.read(SOLUTIONS / "02_activations" / "activations.ipynb", 4)
    solved.cells.insert(0, blank.cells[0])
    for student, nb in (("solved", solved), ("blank", blank)):
        target = tmp_path / "submissions" / student / "02_activations" / "activations.ipynb"
        target.parent.mkdir(parents=True)
        nbformat.write(nb, target)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(tmp_path / "submissions"),
            "--out",
            str(tmp_path / "out"),
            "--quiet",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    scores = {
        line.split(": ")[0]: line.split(": ")[1]
        for line in run.stdout.splitlines()
        if line.startswith(("solved: ", "blank: "))
    }
    total = sum(graded_cells(solved).values())
    assert scores["solved"] == f"{total:g} / {total:g}" and scores["blank"] == f"0 / {total:g}"
