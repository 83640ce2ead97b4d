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
import functools
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


@functools.cache
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


@pytest.mark.parametrize(("assignment", "dependency", "test", "student"), EDGES, ids=EDGE_IDS)
def test_every_edge_has_a_bug_student_in_the_dependency(assignment, dependency, test, student):
    assert student in BUGS, f"{student} is not in tests/fixtures/bugs.yaml"
    where, bug = BUGS[student]
    assert where == assignment
    assert {component_of(assignment, t) for t in bug["fails"]} == {dependency}
    assert test in _tests(assignment) and test not in bug["fails"]
    assert component_of(assignment, test) != dependency


@functools.cache
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


@pytest.mark.parametrize("test", sorted({(a, t) for a, _, t, _ in EDGES}), ids=str)
def test_unprotected_cells_pass_for_the_solution(test, monkeypatch, capsys):
    """The control of the test above: without a bug, the whole cell passes unprotected too."""
    with _unprotected(monkeypatch):
        exec(compile(_cell_source(*test), test[1], "exec"),
             _namespace(test[0], {"cell": None, "old": "", "new": ""}))
    assert "✔" in capsys.readouterr().out


# ------------------------------------------------------------------ the parts, one by one


def test_graded_source_stops_after_a_hidden_block_that_says_so():
    visible = "\nassert_close(Swish().forward(x), y, 'Swish')\n"
    marked = f"### BEGIN HIDDEN TESTS\n{HIDDEN_ONLY} (why)\ncheck()\n### END HIDDEN TESTS{visible}"
    assert graded_source(marked) == marked[: -len(visible)]
    plain = f"### BEGIN HIDDEN TESTS\ncheck()\n### END HIDDEN TESTS{visible}"
    assert graded_source(plain) == plain
    late = f"### BEGIN HIDDEN TESTS\ncheck()\n### END HIDDEN TESTS\n{HIDDEN_ONLY}{visible}"
    assert graded_source(late) == late  # only the instructor's hidden block can say it


def test_replaced_puts_the_students_name_back_even_after_a_failure():
    from autograder.checks.stand_ins import replaced, sigmoid_layer

    def mine():
        return "the student's"

    namespace = {"Sigmoid": mine}
    with pytest.raises(RuntimeError), replaced(namespace, {"Sigmoid": sigmoid_layer,
                                                           "Absent": sigmoid_layer}):
        assert namespace["Sigmoid"] is sigmoid_layer
        raise RuntimeError
    assert namespace == {"Sigmoid": mine}  # and a name the student lacks is not added
    with replaced(None, {"Sigmoid": sigmoid_layer}):  # no namespace: nothing to replace
        pass


def test_stand_ins_are_data_or_library_code():
    import numpy as np
    from scipy.special import expit

    from autograder.checks.stand_ins import fans_table, recorded_batches, sigmoid_layer

    layer, x = sigmoid_layer(), np.array([-1e4, -3.0, 0.0, 2.0, 1e4], dtype=np.float32)
    with np.errstate(all="raise"):
        y = layer.forward(x)
    assert y.dtype == np.float32 and np.array_equal(y, expit(x))
    np.testing.assert_allclose(layer.backward(np.ones(5, np.float32)), y * (1 - y))
    fans = fans_table([[[4, 3], [4, 3]], [[2, 2, 5, 6], [20, 24]]])
    assert fans((2, 2, 5, 6)) == (20, 24) and fans([4, 3]) == (4, 3)
    with pytest.raises(ValueError, match="knows the shapes of this check only"):
        fans((3, 4))
    plays = {"seed/2": [np.array([2, 0]), np.array([1])], "in order/2": [np.array([0, 1]),
             np.array([2])], "other/2": [np.array([1, 0]), np.array([2])]}
    fresh = str(np.random.default_rng(5).bit_generator.state["state"])
    batches = recorded_batches(plays, 5, fresh)
    x, y = np.array([10.0, 11.0, 12.0]), np.array([0, 1, 2])

    def labels(**kwargs):
        return [list(yb) for _, yb in batches(x, y, 2, **kwargs)]

    assert labels(shuffle=True, rng=5) == [[2, 0], [1]]
    assert labels(shuffle=True, rng=np.random.default_rng(5)) == [[2, 0], [1]]
    assert labels(shuffle=True, rng=None) == labels(shuffle=True, rng=6) == [[1, 0], [2]]
    used = np.random.default_rng(5)
    used.random()
    assert labels(shuffle=True, rng=used) == [[1, 0], [2]]  # not a fresh Generator
    assert labels() == labels(rng=5) == [[0, 1], [2]]
    assert [list(xb) for xb in batches(x, batch_size=2)] == [[10.0, 11.0], [12.0]]
    with pytest.raises(ValueError, match="batch_size=4"):
        list(batches(x, y, 4))


@pytest.fixture(scope="module")
def optimizers():
    return _namespace("07_optimizers", {"cell": None, "old": "", "new": ""})


def test_adamw_on_a_buggy_adam_passes_but_its_own_bug_still_fails(optimizers):
    import npdl.optimizers
    from autograder.checks import CheckFailed
    from autograder.checks.optimizers import check_optimizer

    _, bug = BUGS["bug_adam_without_bias_correction"]
    buggy = _namespace("07_optimizers", bug)
    check_optimizer(buggy["AdamW"], npdl.optimizers.AdamW, decoupled_from=buggy["Adam"])
    with pytest.raises(CheckFailed, match="Adam without bias correction"):
        check_optimizer(buggy["AdamW"], npdl.optimizers.AdamW)  # the cascade it prevents
    check_optimizer(optimizers["AdamW"], npdl.optimizers.AdamW, decoupled_from=optimizers["Adam"])
    for cell_bug, match in [
        ({"old": "            p *= 1 - self.lr * self.weight_decay\n", "new": "            pass\n"},
         "weight_decay is ignored"),
        ({"old": "p *= 1 - self.lr * self.weight_decay", "new": "p *= 1 - self.weight_decay"},
         "AdamW.step"),
    ]:
        # AdamW's own bug on the solution's Adam, and on top of Adam's bug: it fails both times
        alone = _namespace("07_optimizers", {"cell": "adam", **cell_bug})
        for patched, says in [(alone, match), (_two_bugs(bug, cell_bug), "AdamW.step")]:
            with pytest.raises(CheckFailed, match=says):
                check_optimizer(patched["AdamW"], npdl.optimizers.AdamW,
                                kwargs={"lr": 0.01, "weight_decay": 0.1},
                                decoupled_from=patched["Adam"])


def _two_bugs(first: dict, second: dict) -> dict:
    """Both snippets replaced in the adam cell (Adam's bug, then AdamW's)."""
    source = student_code(_cell_source("07_optimizers", "adam"))
    for bug in (first, second):
        assert source.count(bug["old"]) == 1
        source = source.replace(bug["old"], bug["new"])
    namespace = _namespace("07_optimizers", {"cell": None, "old": "", "new": ""})
    exec(compile(source, "adam", "exec"), namespace)
    return namespace


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
