"""No cascade: a student with one bug loses points only on the tests of the buggy component.

Where one graded component builds on another of the same assignment (Swish on the student's
Sigmoid, AdamW on the student's Adam, fit_epoch on the student's batches...), the hidden check
replaces the dependency by a stand-in (`autograder.checks.stand_ins`) or grades against the
student's own dependency, and the test cell's visible part (which does use the student's
dependency) is the student's own check: its hidden block says ``# graded: the hidden tests only``.

``EDGES`` lists every such dependency edge with a single-bug student of tests/fixtures/bugs.yaml
whose bug is in the depended-on component. For each edge this module shows that

* the edge is real: with the protections switched off, that student fails the dependent test;
* the edge is cut: with them, the dependent test passes (locally, in-kernel, and graded by the
  real ``python -m autograder grade``, which must take points exactly on the bug's own tests).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys

import nbformat
import pytest
import yaml

from autograder.demo import fill_release, load_bugs, student_code
from autograder.notebooks import REPO, build_notebook, graded_cells, sources
from autograder.trusted.executor import HIDDEN_ONLY, graded_source

BUGS = {bug["student"]: (a, bug) for a, bugs in load_bugs().items() for bug in bugs}

# assignment -> component -> the prefix of its test ids (test_<prefix> or test_<prefix>_<method>)
COMPONENTS = {
    "01_backprop": {"numerical_gradient": "numerical_gradient", "relative_error":
                    "relative_error", "two-layer network": "two_layer"},
    "02_activations": {c: c.lower() for c in ("Sigmoid", "Tanh", "ReLU", "ELU", "Softplus",
                                              "Swish", "GELU", "Softmax")}
    | {"LeakyReLU": "leaky_relu"},
    "03_initializers": {"compute_fans": "compute_fans", "XavierNormal": "xavier_normal",
                        "XavierUniform": "xavier_uniform", "HeNormal": "he_normal",
                        "HeUniform": "he_uniform", "LeCunNormal": "lecun_normal",
                        "Orthogonal": "orthogonal", "symmetry_experiment": "symmetry_experiment"},
    "04_layers": {"Dense": "dense", "Dropout": "dropout", "Flatten": "flatten",
                  "BatchNorm": "batch_norm"},
    "05_losses": {"MSE": "mse", "MAE": "mae", "Huber": "huber",
                  "BinaryCrossEntropy": "binary_cross_entropy",
                  "CategoricalCrossEntropy": "categorical_cross_entropy",
                  "SoftmaxCrossEntropy": "softmax_cross_entropy", "Hinge": "hinge",
                  "KLDivergence": "kl_divergence"},
    "06_models": {"batches": "batches", "Sequential": "sequential",
                  "EarlyStopping": "early_stopping"},
    "07_optimizers": {"SGD": "sgd", "AdaGrad": "adagrad", "RMSprop": "rmsprop", "Adam": "adam",
                      "AdamW": "adamw", "CosineAnnealingLR": "cosine_annealing_lr",
                      "clip_grad_norm": "clip_grad_norm"},
    "08_capstone": {"the trained model": "capstone"},
}

# (assignment, depended-on component, dependent test, single-bug student in the former).
# 04, 05 and 08 have no edge: 04's layers and 05's losses are independent classes (Dense draws
# from npdl's initializers; 05's sigmoid and clamped_log are provided, not graded), and 08's
# one graded component is a model built on npdl, graded on held-out accuracy only.
EDGES = [
    ("01_backprop", "numerical_gradient", "test_two_layer_backward",
     "bug_gradient_twice_too_large"),
    ("01_backprop", "relative_error", "test_two_layer_backward",
     "bug_relative_error_returns_array"),
    *[("02_activations", "Sigmoid", test, student)
      for test in ("test_softplus_backward", "test_swish_forward", "test_swish_backward")
      for student in ("bug_sigmoid_naive_overflow", "bug_sigmoid_mirrored")],
    *[("03_initializers", "compute_fans", test, "bug_compute_fans_swapped")
      for test in ("test_he_normal", "test_he_uniform", "test_lecun_normal")],
    *[("03_initializers", "compute_fans", test, "bug_compute_fans_fan_out_is_fan_in")
      for test in ("test_xavier_normal", "test_xavier_uniform")],
    ("03_initializers", "XavierNormal", "test_symmetry_experiment",
     "bug_xavier_normal_without_size"),
    ("06_models", "batches", "test_sequential_fit_epoch", "bug_batches_ignores_y"),
    ("06_models", "batches", "test_sequential_fit_epoch", "bug_batches_drops_last_partial_batch"),
    ("06_models", "batches", "test_sequential_evaluate", "bug_batches_drops_last_partial_batch"),
    ("07_optimizers", "Adam", "test_adamw_step", "bug_adam_without_bias_correction"),
]
EDGE_IDS = [f"{student}->{test}" for _, _, test, student in EDGES]


def _tests(assignment: str) -> dict[str, float]:
    found = {}
    for md in sources(assignment):
        found.update(graded_cells(build_notebook(md)))
    return found


def component_of(assignment: str, test: str) -> str:
    prefixes = COMPONENTS[assignment]
    found = [c for c, p in prefixes.items() if test == f"test_{p}" or test.startswith(f"test_{p}_")]
    assert len(found) == 1, f"{assignment}/{test} belongs to components {found}"
    return found[0]


# ------------------------------------------------------------------ the tables


@pytest.mark.parametrize("assignment", sorted(COMPONENTS))
def test_components_partition_the_tests(assignment):
    for test in _tests(assignment):
        component_of(assignment, test)  # exactly one component each
    used = {component_of(assignment, t) for t in _tests(assignment)}
    assert used == set(COMPONENTS[assignment]), "a component without tests"


@pytest.mark.parametrize("student", sorted(s for s, (a, _) in BUGS.items() if a in COMPONENTS))
def test_each_bug_costs_its_own_component_only(student):
    assignment, bug = BUGS[student]
    owners = {component_of(assignment, test) for test in bug["fails"]}
    assert len(owners) == 1, f"{student} costs points in {sorted(owners)}: a cascade"
    assert "cascade" not in yaml.safe_dump(bug)


@pytest.mark.parametrize(("assignment", "dependency", "test", "student"), EDGES, ids=EDGE_IDS)
def test_every_edge_has_a_bug_student_in_the_dependency(assignment, dependency, test, student):
    assert student in BUGS, f"{student} is not in tests/fixtures/bugs.yaml"
    where, bug = BUGS[student]
    assert where == assignment
    assert {component_of(assignment, t) for t in bug["fails"]} == {dependency}
    assert test in _tests(assignment) and test not in bug["fails"]
    assert component_of(assignment, test) != dependency


def _cell_source(assignment: str, grade_id: str) -> str:
    for md in sources(assignment):
        for cell in build_notebook(md).cells:
            if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
                return cell.source
    raise KeyError(grade_id)


@pytest.mark.parametrize("test", sorted({(a, t) for a, _, t, _ in EDGES}), ids=str)
def test_dependent_cells_are_graded_on_their_hidden_checks(test):
    """The visible part of each dependent cell runs the student's dependency: not graded."""
    source = _cell_source(*test)
    assert HIDDEN_ONLY in source.split("### END HIDDEN TESTS")[0]
    graded = graded_source(source)
    assert graded.rstrip().endswith("### END HIDDEN TESTS") and len(graded) < len(source)


# ------------------------------------------------------------------ in-kernel: real, then cut


def _namespace(assignment: str, bug: dict) -> dict:
    """The notebook's namespace after its setup, locked and (buggy) solution cells."""
    namespace = {"__name__": "__main__"}
    for md in sources(assignment):
        for cell in build_notebook(md).cells:
            meta = cell.metadata.get("nbgrader", {})
            if cell.cell_type != "code" or meta.get("grade") or not meta:
                continue
            source = student_code(cell.source) if meta.get("solution") else cell.source
            if meta.get("grade_id") == bug["cell"]:
                source = source.replace(bug["old"], bug["new"])
            exec(compile(source, meta["grade_id"], "exec"), namespace)
    return namespace


@contextlib.contextmanager
def _unprotected(monkeypatch):
    """The checks as they were: no stand-ins, AdamW against the reference only."""
    from autograder.checks import activations, initializers, optimizers, training

    @contextlib.contextmanager
    def nothing_replaced(namespace, stand_ins):
        yield

    for module in (activations, initializers, training):
        monkeypatch.setattr(module, "replaced", nothing_replaced)
    monkeypatch.setattr(optimizers, "_follows_own_base", lambda *args: False)
    yield


@pytest.mark.parametrize(("assignment", "dependency", "test", "student"), EDGES, ids=EDGE_IDS)
def test_edge_is_real_and_cut(assignment, dependency, test, student, monkeypatch, capsys):
    _, bug = BUGS[student]
    source = _cell_source(assignment, test)
    namespace = _namespace(assignment, bug)
    exec(compile(graded_source(source), test, "exec"), namespace)  # cut: passes
    assert "✔" in capsys.readouterr().out
    # real: the same cell fails without the protections (a CheckFailed is an AssertionError;
    # ValueError: an array where the visible test wants one number)
    with _unprotected(monkeypatch), pytest.raises((AssertionError, ValueError)):
        exec(compile(source, test, "exec"), _namespace(assignment, bug))


# ------------------------------------------------------------------ the real pipeline


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """`python -m autograder grade` on a class of exactly the edges' single-bug students."""
    from autograder.demo import make_demo_class

    root = tmp_path_factory.mktemp("cascades")
    students = sorted({student for *_, student in EDGES})
    chosen = {}
    for student in students:
        assignment, bug = BUGS[student]
        chosen.setdefault(assignment, []).append(bug)
    bugs_file = root / "bugs.yaml"
    bugs_file.write_text(yaml.safe_dump(chosen), encoding="utf-8")
    make_demo_class(root / "class", bugs_file=bugs_file, only=sorted(chosen))
    for extra in ("solution", "blank"):  # graded by tests/test_grading_e2e.py already
        shutil.rmtree(root / "class" / extra)
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(root / "class"), "--out",
         str(root / "out"), "--quiet"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )
    assert run.returncode == 0, f"grading failed:\n{run.stdout}\n{run.stderr}"
    return root / "out"


@pytest.mark.xdist_group(name="grading")
@pytest.mark.slow
@pytest.mark.parametrize("student", sorted({s for *_, s in EDGES}))
def test_single_bug_student_loses_only_its_own_tests(graded, student):
    assignment, bug = BUGS[student]
    data = json.loads((graded / "results" / f"{student}.json").read_text(encoding="utf-8"))
    results = {t["name"]: t for t in data["tests"]}
    assert set(results) == set(_tests(assignment))
    lost = sorted(name for name, r in results.items() if r["score"] != r["max_score"])
    assert lost == sorted(bug["fails"]), f"{student}: lost points on {lost}"
    messages = bug.get("message", [])
    for name in bug["fails"]:
        for piece in messages.get(name, []) if isinstance(messages, dict) else messages:
            assert piece in results[name]["output"], (name, piece, results[name]["output"])
    for _, _, test, edge_student in EDGES:
        if edge_student == student:
            assert "✔" in results[test]["output"], results[test]["output"]


def test_bug_fixtures_fill_a_real_release():
    """Every edge student's patch applies to the released notebook (once, in its cell)."""
    for student in {s for *_, s in EDGES}:
        assignment, bug = BUGS[student]
        release = REPO / "exercises" / assignment / f"{bug['notebook']}.ipynb"
        source = build_notebook(REPO / "solutions" / assignment / f"{bug['notebook']}.md")
        fill_release(nbformat.read(release, as_version=4), source, bug)
