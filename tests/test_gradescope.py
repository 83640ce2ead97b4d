"""The Gradescope autograder, end to end, as Gradescope's harness runs it.

`python -m autograder gradescope 02_activations` builds the zip; each test unpacks it into a fresh
AUTOGRADER_ROOT laid out like Gradescope's /autograder (source/ = the zip, run_autograder copied
beside it, submission/, results/), world-traversable as /autograder is, and runs run_autograder as
root in a container-like environment: `setpriv` drops CAP_SYS_ADMIN, so bubblewrap cannot start
and the process sandbox must. AUTOGRADER_PYTHON points at this venv (setup.sh's apt/pip install is
not run here). Every results.json is validated against Gradescope's results specification.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import jsonschema
import nbformat
import pytest

from autograder.demo import fill_release, load_bugs
from autograder.gradescope import build_zip, pick_notebooks, to_gradescope
from autograder.notebooks import REPO, assignments, build_notebook, graded_cells, sources
from autograder.pipeline import build_exercises

pytestmark = [pytest.mark.xdist_group(name="gradescope"), pytest.mark.slow]

A, NB = "02_activations", "activations"
CONTAINER = ["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--"]
SOURCE = build_notebook(REPO / "solutions" / A / f"{NB}.md")
POINTS = graded_cells(SOURCE)  # grade id -> points, in notebook order
HIDDEN = {
    c.metadata["nbgrader"]["grade_id"]
    for c in SOURCE.cells
    if c.metadata.get("nbgrader", {}).get("grade") and "BEGIN HIDDEN TESTS" in c.source
}
VISIBILITY = {"enum": ["hidden", "after_due_date", "after_published", "visible"]}
FORMAT = {"enum": ["text", "html", "simple_format", "md", "ansi"]}
# Gradescope's results.json (gradescope-autograders.readthedocs.io, "Autograder Specifications"):
# every key it defines, none other; what our results always carry is required.
SPEC = {
    "type": "object",
    "additionalProperties": False,
    "required": ["score", "execution_time", "output", "tests"],
    "properties": {
        "score": {"type": "number", "minimum": 0},
        "execution_time": {"type": "number", "minimum": 0},
        "output": {"type": "string"},
        "output_format": FORMAT,
        "test_output_format": FORMAT,
        "test_name_format": FORMAT,
        "visibility": VISIBILITY,
        "stdout_visibility": VISIBILITY,
        "extra_data": {"type": "object"},
        "leaderboard": {"type": "array"},
        "tests": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "score", "max_score", "output", "visibility"],
                "properties": {
                    "score": {"type": "number", "minimum": 0},
                    "max_score": {"type": "number", "minimum": 0},
                    "status": {"enum": ["passed", "failed"]},
                    "name": {"type": "string"},
                    "name_format": FORMAT,
                    "number": {"type": "string"},
                    "output": {"type": "string"},
                    "output_format": FORMAT,
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "visibility": VISIBILITY,
                    "extra_data": {"type": "object"},
                },
            },
        },
    },
}


def validate(results: dict, hidden_visibility: str = "after_published") -> dict[str, dict]:
    """Gradescope's schema plus our invariants; returns the tests by name."""
    jsonschema.validate(results, SPEC)
    tests = results["tests"]
    assert [t["name"] for t in tests] == list(POINTS), "one test per grade id, in notebook order"
    assert results["score"] == pytest.approx(sum(t["score"] for t in tests), abs=1e-6)
    for t in tests:
        assert t["max_score"] == POINTS[t["name"]]
        assert 0 <= t["score"] <= t["max_score"]
        assert t["visibility"] == (hidden_visibility if t["name"] in HIDDEN else "visible")
        assert t.get("status", "passed" if t["score"] == t["max_score"] else "failed") == (
            "passed" if t["score"] == t["max_score"] else "failed")
    return {t["name"]: t for t in tests}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The zip (built by the CLI) and a fresh release of the assignment."""
    root = tmp_path_factory.mktemp("gradescope")
    zip_path = root / "autograder.zip"
    cli = subprocess.run(
        [sys.executable, "-m", "autograder", "gradescope", A, "--out", str(zip_path)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    build_exercises(out=root / "exercises", sources_out=root / "solutions", only=[A])
    release = nbformat.read(root / "exercises" / A / f"{NB}.ipynb", as_version=4)
    return {"zip": zip_path, "release": release}


def new_root() -> Path:
    """An empty AUTOGRADER_ROOT under /tmp, traversable by any uid as /autograder is."""
    root = Path(tempfile.mkdtemp(prefix="autograder-"))
    root.chmod(0o755)
    return root


def run_autograder(built, submission: dict[str, bytes | nbformat.NotebookNode],
                   root: Path | None = None, container=CONTAINER, python=sys.executable,
                   **env_extra):
    """Unpack the zip as Gradescope does, hand in ``submission`` (name -> content), run."""
    root = root or new_root()
    try:
        if not (root / "source").exists():  # else: test_setup_sh... unpacked it and ran setup.sh
            with zipfile.ZipFile(built["zip"]) as archive:
                archive.extractall(root / "source")
        shutil.copy(root / "source" / "run_autograder", root / "run_autograder")
        (root / "run_autograder").chmod(0o755)
        (root / "results").mkdir()
        metadata = {"users": [{"name": "Ada", "email": "ada@example.org", "id": 1}],
                    "previous_submissions": []}  # as Gradescope's harness writes it, 0644
        (root / "submission_metadata.json").write_text(json.dumps(metadata))
        for name, content in submission.items():
            path = root / "submission" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                nbformat.write(content, path)
        os.chmod(root / "submission", 0o755)
        before = _digests(root / "source")
        env = {k: v for k, v in os.environ.items()
               if k not in ("PYTHONPATH", "NPDL_SANDBOX", "AUTOGRADER_PYTHON")}
        env.update(AUTOGRADER_ROOT=str(root), **env_extra)
        if python is not None:  # None: run_autograder's default, setup.sh's venv
            env["AUTOGRADER_PYTHON"] = python
        run = subprocess.run(
            [*container, str(root / "run_autograder")], cwd=root, env=env,
            capture_output=True, text=True, timeout=900,
        )
        results = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
        assert _digests(root / "source") == before, "the zip's files changed while grading"
        mode = (root / "source").stat().st_mode
        assert not mode & (stat.S_IRWXG | stat.S_IRWXO), "source/ must be root-only"
        return run, results, root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts and "_build" not in p.parts
    }


def _solution(built, bug: dict | None = None):
    return fill_release(built["release"], SOURCE, bug)


def test_zip_layout(built):
    with zipfile.ZipFile(built["zip"]) as archive:
        names = set(archive.namelist())
        modes = {i.filename: i.external_attr >> 16 for i in archive.infolist()}
        requirements = archive.read("requirements.txt").decode()
        config = json.loads(archive.read("course/gradescope.json"))
        setup = archive.read("setup.sh").decode()
        runner = archive.read("run_autograder").decode()
        nbgrader_config = archive.read("course/nbgrader_config.py").decode()
    assert {"setup.sh", "run_autograder", "requirements.txt", "constraints.txt",
            "course/nbgrader_config.py", f"course/solutions/{A}/{NB}.md",
            "course/autograder/gradescope.py", "course/reference_impl/npdl/activations.py"} <= names
    assert modes["run_autograder"] & 0o111 and modes["setup.sh"] & 0o111
    assert not any(n.startswith("course/solutions/") and A not in n for n in names)
    pinned = [line for line in requirements.splitlines() if line and not line.startswith("#")]
    assert all("==" in line for line in pinned)
    assert {line.split("==")[0] for line in pinned} >= {"numpy", "scipy", "nbgrader", "jupytext",
                                                        "pyseccomp"}
    assert not {"torch", "jupyter-book", "playwright"} & {line.split("==")[0] for line in pinned}
    assert config == {"assignment": A, "notebooks": [NB], "hidden_visibility": "after_published",
                      "cell_timeout": None, "time_limit": 420, "tests": POINTS}
    assert nbgrader_config.endswith("c.TrustedExecute.session_timeout = 420\n")
    assert 'HARD_LIMIT="${AUTOGRADER_HARD_LIMIT:-540}"' in runner
    assert "python3.11" in setup and "deadsnakes" in setup
    syntax = subprocess.run(["bash", "-n"], input=setup, capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


@pytest.mark.parametrize("assignment", assignments())
def test_every_assignment_builds(assignment, tmp_path):
    config = build_zip(assignment, tmp_path / "a.zip")
    expected = {}
    for md in sources(assignment):
        expected.update(graded_cells(build_notebook(md)))
    assert config["tests"] == expected
    assert config["notebooks"] == [md.stem for md in sources(assignment)]
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        names = archive.namelist()
    assert sorted(n for n in names if n.startswith("course/solutions/")) == sorted(
        f"course/solutions/{assignment}/{md.name}" for md in sources(assignment))


def test_setup_smoke_check_runs_from_the_unpacked_zip(built, tmp_path):
    """setup.sh's last step: the zip's grader imports and the process sandbox starts."""
    with zipfile.ZipFile(built["zip"]) as archive:
        archive.extractall(tmp_path)
    course = tmp_path / "course"
    env = dict(os.environ, PYTHONPATH=f"{course}:{course / 'reference_impl'}",
               NPDL_SANDBOX="process")
    check = subprocess.run(
        [*CONTAINER, sys.executable, "-m", "autograder.gradescope", "check"],
        cwd=course, env=env, capture_output=True, text=True, timeout=300,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "sandbox backend: process"


def test_hidden_visibility_option(tmp_path):
    out = tmp_path / "a.zip"
    cli = subprocess.run(
        [sys.executable, "-m", "autograder", "gradescope", A, "--out", str(out),
         "--hidden-visibility", "hidden", "--cell-timeout", "30", "--time-limit", "200"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert cli.returncode == 0, cli.stderr
    with zipfile.ZipFile(out) as archive:
        config = json.loads(archive.read("course/gradescope.json"))
    assert (config["hidden_visibility"], config["cell_timeout"], config["time_limit"]) == (
        "hidden", 30, 200)
    tests = [{"name": n, "score": 0.0, "max_score": float(p), "output": ""}
             for n, p in POINTS.items()]
    validate(to_gradescope(tests, [], HIDDEN, "hidden", 1.0, "process"), "hidden")


def test_perfect_submission_named_like_a_download(built):
    run, results, root = run_autograder(built, {f"{NB} (1).ipynb": _solution(built)})
    assert run.returncode == 0, run.stdout + run.stderr
    tests = validate(results)
    assert results["score"] == sum(POINTS.values())
    assert all(t["score"] == t["max_score"] for t in tests.values())
    assert f"Graded {NB} (1).ipynb as {NB}.ipynb" in results["output"]
    # the zip's own grader ran (not this checkout's), with the process sandbox
    assert f"autograder: {root}/source/course/autograder" in run.stdout
    assert "sandbox backend: process" in run.stdout


def test_blank_submission_scores_zero(built):
    run, results, _ = run_autograder(built, {f"{NB}.ipynb": built["release"]})
    assert run.returncode == 0, run.stdout + run.stderr
    tests = validate(results)
    assert results["score"] == 0
    assert all(t["score"] == 0 for t in tests.values())


def test_buggy_submission_loses_exactly_its_tests(built):
    bug = next(b for b in load_bugs()[A] if b["notebook"] == NB)
    submission = {"hw2/notes.txt": b"my notes", f"hw2/{NB}.ipynb": _solution(built, bug)}
    run, results, _ = run_autograder(built, submission)
    assert run.returncode == 0, run.stdout + run.stderr
    tests = validate(results)
    lost = {name for name, t in tests.items() if t["score"] < t["max_score"]}
    assert lost == set(bug["fails"])
    assert all(word in tests[name]["output"] for name in lost for word in bug["message"])


ATTACK = """
import glob, re
leaked = []
ROOT, REPO = {root!r}, {repo!r}
secrets = glob.glob(ROOT + "/source/**", recursive=True) + [
    ROOT + "/source/course/solutions/{a}/{nb}.md", ROOT + "/source/course/gradescope.json",
    ROOT + "/source/course/reference_impl/npdl/activations.py", ROOT + "/submission_metadata.json",
    ROOT + "/source/course/reference_impl/npdl/layers.py",
    REPO + "/solutions/{a}/{nb}.md", REPO + "/reference_impl/npdl/activations.py",
    REPO + "/reference_impl/npdl/layers.py"]
for path in secrets:
    try:
        text = open(path).read()
    except OSError:
        continue
    leaked.append(path)
    found = re.search(r"class ReLU\\(Layer\\):.*?(?=\\n```|\\nclass )", text, re.S)
    if found:
        exec(found.group(0).replace("### BEGIN SOLUTION", "").replace("### END SOLUTION", ""))
for module in ("npdl.activations", "npdl.layers", "npdl.optimizers", "autograder.checks"):
    try:
        __import__(module)
        leaked.append(module)
    except ImportError:
        pass
for path in [ROOT + "/results/results.json", ROOT + "/source/course/gradescope.json"]:
    try:
        with open(path, "w") as handle:
            handle.write('{{"score": 100, "tests": []}}')
        leaked.append("wrote " + path)
    except OSError:
        pass
if "ReLU" not in globals():
    class ReLU(Layer):
        def forward(self, x):
            raise RuntimeError(f"attack report: leaked={{leaked}}")
        backward = forward
"""


def test_attacking_submission_gains_nothing(built):
    """Student code that knows the harness layout reads, imports and writes what it should not."""
    root = new_root()
    attack = nbformat.from_dict(built["release"])
    relu = next(c for c in attack.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "relu")
    relu.source = ATTACK.format(root=str(root), repo=str(REPO), a=A, nb=NB)
    run, results, _ = run_autograder(built, {f"{NB}.ipynb": attack}, root)
    assert run.returncode == 0, run.stdout + run.stderr
    tests = validate(results)
    assert results["score"] == 0, "the attack gained points"
    report = tests["test_relu_forward"]["output"]
    assert "attack report: leaked=[]" in report, report


def test_pick_notebooks(tmp_path):
    def pick(*names, expected=(NB,)):
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        for name in names:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_text("{}")
        picked, note = pick_notebooks(folder, list(expected))
        return {nb: str(p.relative_to(folder)) for nb, p in picked.items()}, note

    assert pick(f"{NB} (1).ipynb")[0] == {NB: f"{NB} (1).ipynb"}
    assert pick("mine.ipynb", "README.md")[0] == {NB: "mine.ipynb"}  # the only notebook
    assert pick("a/b/other.ipynb", f"x/{NB}.ipynb", f"{NB}-copy.ipynb")[0] == {NB: f"x/{NB}.ipynb"}
    assert pick(f".ipynb_checkpoints/{NB}-checkpoint.ipynb", f"__MACOSX/{NB}.ipynb")[0] == {}
    picked, note = pick("one.ipynb", "two.ipynb")
    assert picked == {} and "one.ipynb, two.ipynb" in note and f"expected {NB}.ipynb" in note
    folder = tmp_path / "links"
    folder.mkdir()
    (folder / f"{NB}.ipynb").symlink_to(REPO / "solutions" / A / f"{NB}.ipynb")
    assert pick_notebooks(folder, [NB])[0] == {}  # never follows a link out of submission/


def test_no_notebook_scores_zero_with_a_reason(built):
    run, results, _ = run_autograder(built, {"activations.py": b"print('hi')"})
    assert run.returncode == 0, run.stdout + run.stderr
    tests = validate(results)
    assert results["score"] == 0 and all(t["score"] == 0 for t in tests.values())
    assert "No notebook to grade: expected activations.ipynb" in results["output"]
    assert "activations.py" in results["output"]


def test_sandbox_unavailable_is_an_autograder_error_not_a_grade(built):
    """Without CAP_SETUID the process sandbox cannot start: nothing is graded, exit non-zero."""
    no_setuid = ["setpriv", "--bounding-set", "-sys_admin,-setuid,-setgid",
                 "--inh-caps", "-sys_admin,-setuid,-setgid", "--"]
    run, results, _ = run_autograder(built, {f"{NB}.ipynb": _solution(built)}, container=no_setuid)
    assert run.returncode == 2, run.stdout + run.stderr
    jsonschema.validate(results, SPEC)
    assert results["tests"] == [] and results["score"] == 0
    assert results["output"].startswith("AUTOGRADER ERROR - this is not your grade.")
    assert "the grading sandbox cannot start on this machine" in results["output"]
    assert "sandbox backend:" not in run.stdout  # nothing was graded
    assert results["extra_data"] == {"infrastructure_error": True}


def test_broken_interpreter_is_an_autograder_error(built):
    run, results, _ = run_autograder(built, {f"{NB}.ipynb": built["release"]}, python="/bin/false")
    assert run.returncode != 0
    jsonschema.validate(results, SPEC)
    assert results["tests"] == [] and results["extra_data"] == {"infrastructure_error": True}
    assert results["output"].startswith("AUTOGRADER ERROR - this is not your grade.")


def test_overrunning_the_time_limit_is_an_autograder_error(built):
    run, results, _ = run_autograder(built, {f"{NB}.ipynb": built["release"]},
                                     AUTOGRADER_HARD_LIMIT="2")
    assert run.returncode == 124, run.stdout + run.stderr
    jsonschema.validate(results, SPEC)
    assert results["tests"] == [] and results["extra_data"] == {"infrastructure_error": True}
    assert "grading did not finish within 2 s" in results["output"]


def test_setup_sh_installs_a_runtime_that_grades(built, tmp_path):
    """setup.sh for real but for apt (a stub: this machine has Python 3.11 and libseccomp already,
    the PPA path is Gradescope's): it builds AUTOGRADER_ROOT/venv from the zip's pins alone, with
    PyPI, locks source/ and passes its sandbox smoke check; run_autograder then grades with that
    venv (AUTOGRADER_PYTHON unset), as on Gradescope."""
    root = new_root()
    with zipfile.ZipFile(built["zip"]) as archive:
        archive.extractall(root / "source")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "apt-get").write_text('#!/bin/sh\necho "stub: apt-get $*"\n')
    (stubs / "apt-get").chmod(0o755)
    (stubs / "python3.11").symlink_to(os.path.realpath(sys._base_executable))
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "NPDL_SANDBOX", "VIRTUAL_ENV")}
    env.update(AUTOGRADER_ROOT=str(root), PATH=f"{stubs}:{os.environ['PATH']}")
    setup = subprocess.run(
        [*CONTAINER, "bash", str(root / "source" / "setup.sh")], cwd=root, env=env,
        capture_output=True, text=True, timeout=1500,
    )
    try:
        assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
        assert "sandbox backend: process" in setup.stdout and "WARNING" not in setup.stdout
        venv = root / "venv" / "bin" / "python"
        absent = subprocess.run(  # the course's code lives only in source/, root-only
            [str(venv), "-c", "import npdl"], cwd="/", env=env, capture_output=True, text=True)
        assert "ModuleNotFoundError" in absent.stderr
        packages = subprocess.run([str(venv), "-m", "pip", "list", "--format=freeze"],
                                  capture_output=True, text=True, check=True).stdout
        names = {line.split("==")[0].lower() for line in packages.splitlines()}
        assert {"numpy", "scipy", "nbgrader", "jupytext", "pyseccomp"} <= names
        assert not {"torch", "jupyter-book", "playwright", "pytest"} & names
    except AssertionError:
        shutil.rmtree(root, ignore_errors=True)
        raise
    run, results, _ = run_autograder(built, {f"{NB}.ipynb": _solution(built)}, root, python=None)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"python: {root}/venv/bin/python" in run.stdout
    validate(results)
    assert results["score"] == sum(POINTS.values())
