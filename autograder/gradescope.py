"""A Gradescope autograder for one assignment: ``python -m autograder gradescope A --out Z.zip``.

The zip (upload it as the assignment's autograder, "Zip file upload", Ubuntu 22.04 or 24.04)::

    setup.sh, run_autograder        gradescope_files/: install; grade one submission
    requirements.txt                the pinned grading set (`runtime_requirements`)
    constraints.txt                 the repository's pins, less torch/Jupyter Book/Playwright
    course/                         a copy of the repository's grading part, laid out as here:
      autograder/, reference_impl/npdl/
      nbgrader_config.py            the repository's, + TrustedExecute.session_timeout = time limit
      solutions/<A>/<nb>.md         the source notebook(s): solutions and hidden tests
      gradescope.json               assignment, notebooks, tests, hidden-test visibility, limits

``run_autograder`` calls ``python -m autograder.gradescope run`` (`run`): pick the notebook in
``submission/`` whatever it is called (`pick_notebooks`), grade it with `ClassGrader` exactly as
``python -m autograder grade`` would (a class of one student), and write ``results/results.json``
in Gradescope's format (`to_gradescope`). The course's code, the hidden tests and the whole npdl
stay in ``source/``, readable by root only; student code runs in the ``process`` sandbox under an
unprivileged uid that Landlock (where the kernel has it) and those permissions keep out of them.

Time: Gradescope stops a run after its timeout (10 minutes unless raised, 40 at most) with no
results. Each cell has ``--cell-timeout`` (120 s), the notebook's sandbox session ``--time-limit``
(420 s), and run_autograder stops the whole run 120 s after that, as an autograder error.

Autograder errors (the sandbox cannot start, the grader crashes or runs out of time or memory) are
never presented as a grade. Gradescope goes by results.json, not by the exit status: its
troubleshooting guide gives "The autograder failed to execute correctly" (all a student would read)
for a missing or invalid results.json. So `infrastructure_error` (or run_autograder itself) writes
one whose output begins "AUTOGRADER ERROR - this is not your grade", with score 0, no tests and
``extra_data.infrastructure_error``, and the run exits non-zero (2: the sandbox cannot start, 124:
out of time, else 1) so the failure shows in Gradescope's stdout log and in any local harness.
After fixing the cause, the instructor re-runs the autograder on those submissions (their 0 is not
a grade).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

from .notebooks import REPO, SOLUTIONS, build_notebook, graded_cells, sources

VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")
TEMPLATES = Path(__file__).resolve().parent / "gradescope_files"
# Grading needs these besides the runtime set (requirements.txt): nbgrader, the process
# sandbox's libseccomp binding and the feedback pages' vendored MathJax; the rest of
# requirements-dev.txt (torch, Jupyter Book, Playwright, pytest, ...) is for the repository only.
GRADING_EXTRAS = ("nbgrader", "pyseccomp", "sphinx-mathjax-offline")
NOT_SHIPPED = re.compile(r"^(torch|nvidia-|triton|playwright|jupyter-book|pytest|hypothesis|ruff)",
                         re.IGNORECASE)
TIME_LIMIT, GRACE = 420, 120  # s: the notebook's sandbox session; + start-up and nbgrader
ZIP_TIME = (2020, 1, 1, 0, 0, 0)  # fixed timestamps: the same sources give the same zip
STUDENT = "student"  # the one student of the class ClassGrader grades


# ------------------------------------------------------------------ building the zip

def _requirement_name(line: str) -> str:
    return re.split(r"[<>=!~\[;@ ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _requirement_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.lstrip().startswith(("#", "-"))]


def runtime_requirements(repo: Path = REPO) -> tuple[str, str]:
    """(requirements.txt, constraints.txt) for the zip: every requirement pinned with ``==``.

    The runtime set (requirements.txt, less torch and the course package itself: the zip carries
    its own copy) plus `GRADING_EXTRAS` from requirements-dev.txt."""
    wanted = [line for line in _requirement_lines(repo / "requirements.txt")
              if not NOT_SHIPPED.search(_requirement_name(line))] + [
        line for line in _requirement_lines(repo / "requirements-dev.txt")
        if _requirement_name(line) in GRADING_EXTRAS
    ]
    missing = sorted({_requirement_name(w) for w in wanted} - {
        _requirement_name(w) for w in wanted if "==" in w})
    if missing:
        raise ValueError(f"gradescope: expected pinned (==) requirements. Unpinned: {missing}.")
    constraints = [line for line in _requirement_lines(repo / "constraints.txt")
                   if not NOT_SHIPPED.search(_requirement_name(line))]
    head = "# Generated by `python -m autograder gradescope` from the repository's pins.\n"
    return head + "\n".join(wanted) + "\n", head + "\n".join(constraints) + "\n"


def _course_files(repo: Path, assignment: str, solutions: Path) -> dict[str, Path]:
    """Archive name (under course/) -> file: the grading code, npdl and the assignment source."""
    files = {"nbgrader_config.py": repo / "nbgrader_config.py"}
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        relative = path.relative_to(package)
        if path.is_file() and "__pycache__" not in relative.parts and path.suffix != ".pyc":
            files[f"autograder/{relative.as_posix()}"] = path
    npdl = repo / "reference_impl" / "npdl"
    for path in sorted(npdl.glob("*.py")):
        files[f"reference_impl/npdl/{path.name}"] = path
    for md in sources(assignment, solutions):
        files[f"solutions/{assignment}/{md.name}"] = md
    return files


def _add(archive: zipfile.ZipFile, name: str, data: bytes, executable: bool = False) -> None:
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def build_zip(assignment: str, out: Path, hidden_visibility: str = "after_published",
              cell_timeout: int | None = None, time_limit: int = TIME_LIMIT,
              solutions: Path = SOLUTIONS, repo: Path = REPO) -> dict:
    """Write the Gradescope autograder zip of ``assignment`` to ``out``; return its config.

    ``time_limit`` (s) bounds the trusted executor's notebook session; run_autograder stops the
    whole run ``GRACE`` s later at the latest (an autograder error then), which must stay under
    the assignment's Gradescope timeout (10 minutes unless the instructor raises it).
    """
    if hidden_visibility not in VISIBILITIES:
        raise ValueError(f"gradescope: expected --hidden-visibility among {VISIBILITIES}. "
                         f"Received: {hidden_visibility!r}")
    mds = sources(assignment, solutions)
    if not mds:
        raise ValueError(f"gradescope: no source notebook solutions/{assignment}/*.md.")
    tests = {}
    for md in mds:  # raises NotebookFormatError on a broken source: nothing is written
        tests.update(graded_cells(build_notebook(md)))
    config = {
        "assignment": assignment,
        "notebooks": [md.stem for md in mds],
        "hidden_visibility": hidden_visibility,
        "cell_timeout": cell_timeout,
        "time_limit": time_limit,
        "tests": tests,
    }
    requirements, constraints = runtime_requirements(repo)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for name in ("setup.sh", "run_autograder"):
            text = (TEMPLATES / name).read_text(encoding="utf-8")
            text = text.replace("@HARD_LIMIT@", str(time_limit + GRACE))
            _add(archive, name, text.encode(), executable=True)
        _add(archive, "requirements.txt", requirements.encode())
        _add(archive, "constraints.txt", constraints.encode())
        for name, path in _course_files(repo, assignment, solutions).items():
            data = path.read_bytes()
            if name == "nbgrader_config.py":  # this zip's own budget for one notebook
                data += (f"\n# python -m autograder gradescope: one notebook's sandbox session "
                         f"within Gradescope's timeout.\nc.TrustedExecute.session_timeout = "
                         f"{time_limit}\n").encode()
            _add(archive, f"course/{name}", data)
        _add(archive, "course/gradescope.json", (json.dumps(config, indent=1) + "\n").encode())
    partial.replace(out)
    return config


# ------------------------------------------------------------------ grading one submission

def _junk(part: str) -> bool:
    return part.startswith(".") or part in ("__MACOSX", "__pycache__")


def pick_notebooks(submission: Path, expected: list[str]) -> tuple[dict[str, Path], str]:
    """Expected notebook name -> the submitted file to grade as it, and a note for the student.

    Per expected name: a file of exactly that name (the shallowest), else one whose name is
    that name plus a suffix such as " (1)" or "-copy" (downloads, re-uploads), else, for a
    one-notebook assignment, the submission's only .ipynb. Symbolic links are never followed.
    """
    found, others = [], []
    for directory, dirs, files in os.walk(submission):  # never descends into symlinked folders
        dirs[:] = [d for d in dirs if not _junk(d)]
        for name in (f for f in files if not _junk(f)):
            path = Path(directory, name)
            usable = name.endswith(".ipynb") and path.is_file() and not path.is_symlink()
            (found if usable else others).append(path)
    found.sort(key=lambda p: (len(p.relative_to(submission).parts), str(p)))
    picked: dict[str, Path] = {}
    for nb in expected:
        loose = re.compile(rf"^{re.escape(nb)}[\s_\-]*(\(\d+\)|\d+|copy|\(copy\))?\.ipynb$",
                           re.IGNORECASE)
        exact = [p for p in found if p.name == f"{nb}.ipynb"]
        close = [p for p in found if loose.match(p.name)]
        if exact or close:
            picked[nb] = (exact or close)[0]
    if len(expected) == 1 and not picked and len(found) == 1:
        picked[expected[0]] = found[0]
    names = ", ".join(str(p.relative_to(submission)) for p in found) or "no .ipynb file"
    if not found and others:
        listed = sorted(str(p.relative_to(submission)) for p in others)[:10]
        names += f" (files: {', '.join(listed)})"
    wanted = ", ".join(f"{nb}.ipynb" for nb in expected)
    if not picked:
        return picked, (f"No notebook to grade: expected {wanted}; your submission has {names}. "
                        f"Upload your completed {wanted} and submit again.")
    note = "; ".join(f"graded {p.relative_to(submission)} as {nb}.ipynb"
                     for nb, p in picked.items())
    missing = [f"{nb}.ipynb" for nb in expected if nb not in picked]
    if missing:
        note += f". Not found: {', '.join(missing)} (its tests score 0; found {names})"
    return picked, note[0].upper() + note[1:] + "."


def hidden_test_ids(course: Path, assignment: str) -> set[str]:
    """Test cells of the source that hold hidden tests (``### BEGIN HIDDEN TESTS``)."""
    return {
        cell.metadata["nbgrader"]["grade_id"]
        for md in sources(assignment, course / "solutions")
        for cell in build_notebook(md).cells
        if cell.metadata.get("nbgrader", {}).get("grade") and "BEGIN HIDDEN TESTS" in cell.source
    }


def to_gradescope(tests: list[dict], notes: list[str], hidden: set[str], visibility: str,
                  elapsed: float, backend: str) -> dict:
    """Gradescope's results.json from results.py-style tests (name, score, max_score, output)."""
    out = []
    for test in tests:
        out.append({
            "name": test["name"],
            "score": float(test["score"]),
            "max_score": float(test["max_score"]),
            "status": "passed" if test["score"] >= test["max_score"] else "failed",
            "output": test["output"],
            "visibility": visibility if test["name"] in hidden else "visible",
            "tags": list(test.get("tags", [])),
        })
    held = sum(1 for t in out if t["visibility"] != "visible")
    if held and visibility != "visible":
        when = {"hidden": "are never shown", "after_due_date": "are shown after the due date",
                "after_published": "are shown once grades are published"}[visibility]
        notes = [*notes, f"{held} test(s) include hidden tests: their results {when}."]
    return {
        "score": round(sum(t["score"] for t in out), 6),
        "execution_time": int(round(elapsed)),
        "output": "\n".join(notes),
        "stdout_visibility": "hidden",
        "extra_data": {"sandbox": backend},
        "tests": out,
    }


def infrastructure_error(message: str, elapsed: float) -> dict:
    """results.json for a run that could not grade: says so, scores no test."""
    return {
        "score": 0.0,
        "execution_time": int(round(elapsed)),
        "output": "AUTOGRADER ERROR - this is not your grade. The autograder could not grade your "
                  "submission because of a problem on the grading machine, not in your work. "
                  "Please tell your instructor, who can re-run the autograder on this submission "
                  f"once it is fixed.\n\nFor the instructor: {message}",
        "stdout_visibility": "hidden",
        "extra_data": {"infrastructure_error": True},
        "tests": [],
    }


def write_json(path: Path, results: dict) -> None:
    """Write atomically: a temporary file in the same folder, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".json")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


def grade(root: Path, config: dict, course: Path, work: Path) -> tuple[list[dict], list[str]]:
    """Grade ``root/submission`` with ClassGrader: (results.py tests, notes for the student)."""
    from .grading import ClassGrader

    assignment, notebooks = config["assignment"], config["notebooks"]
    picked, note = pick_notebooks(root / "submission", notebooks)
    if not picked:
        tests = [{"name": name, "score": 0.0, "max_score": float(points), "output": note,
                  "tags": [assignment]} for name, points in config["tests"].items()]
        return tests, [note]
    folder = work / "class" / STUDENT / assignment
    folder.mkdir(parents=True)
    for nb, path in picked.items():
        shutil.copyfile(path, folder / f"{nb}.ipynb")
    grader = ClassGrader(work / "out", solutions=course / "solutions",
                         cell_timeout=config.get("cell_timeout"))
    results = grader.run(work / "class", progress=False)
    if STUDENT not in results:
        raise RuntimeError(f"the class grader returned no result for the submission "
                           f"({getattr(grader, 'report', None)!r:.500})")
    result = results[STUDENT]
    notes = [note] + [line for line in result["output"].splitlines()
                      if not line.startswith("Graded assignments:")]
    return result["tests"], notes


def run(root: Path) -> int:
    """Grade ``root/submission`` into ``root/results/results.json``; the exit status."""
    start = time.monotonic()
    results = root / "results" / "results.json"
    course = Path(__file__).resolve().parent.parent
    print(f"autograder: {Path(__file__).resolve().parent}; python: {sys.executable}", flush=True)
    try:
        from .sandbox import SandboxUnavailable, preflight
        config = json.loads((course / "gradescope.json").read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a broken autograder zip or environment
        message = traceback.format_exc()
        print(message, flush=True)
        write_json(results, infrastructure_error(message.strip().splitlines()[-1], 0.0))
        return 1
    try:
        backend = preflight(os.environ.get("NPDL_SANDBOX") or "process")
    except SandboxUnavailable as exc:
        print(f"sandbox unavailable: {exc}", flush=True)
        write_json(results, infrastructure_error(
            f"the grading sandbox cannot start on this machine: {exc}", time.monotonic() - start))
        return 2
    print(f"sandbox backend: {backend}", flush=True)
    with tempfile.TemporaryDirectory(prefix="npdl-gradescope-") as work:
        try:
            tests, notes = grade(root, config, course, Path(work))
        except Exception:  # noqa: BLE001 - the grader failed, not the student
            message = traceback.format_exc()
            print(message, flush=True)
            write_json(results, infrastructure_error(
                f"grading failed: {message.strip().splitlines()[-1]}", time.monotonic() - start))
            return 1
    hidden = hidden_test_ids(course, config["assignment"])
    report = to_gradescope(tests, notes, hidden, config["hidden_visibility"],
                           time.monotonic() - start, backend)
    write_json(results, report)
    total = sum(t["max_score"] for t in report["tests"])
    print(f"score: {report['score']:g} / {total:g}\n{report['output']}", flush=True)
    return 0


def check() -> int:
    """setup.sh's smoke test: the grading code imports and the process sandbox starts."""
    from .grading import ClassGrader  # noqa: F401 - the import is the check
    from .sandbox import preflight

    print(f"sandbox backend: {preflight(os.environ.get('NPDL_SANDBOX') or 'process')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.gradescope",
                                     description="run_autograder's side (inside the zip).")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="grade root/submission into root/results/results.json")
    p.add_argument("--root", default=os.environ.get("AUTOGRADER_ROOT", "/autograder"))
    sub.add_parser("check", help="import the grader and start one sandbox")
    args = parser.parse_args(argv)
    return run(Path(args.root)) if args.command == "run" else check()


if __name__ == "__main__":
    sys.exit(main())
