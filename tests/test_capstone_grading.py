"""autograder.checks.capstone: the held-out set, the notebook's loader and the scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.checks import CheckFailed, capstone
from autograder.notebooks import build_notebook

SOURCE = Path(__file__).resolve().parent.parent / "solutions" / "08_capstone" / "capstone.md"


@pytest.fixture(scope="module")
def heldout():
    return capstone.load_heldout()


@pytest.fixture(scope="module")
def notebook():
    """The notebook's setup and provided cells (load_training_data, jitter, Standardize)."""
    namespace = {"__name__": "__main__"}
    for cell in build_notebook(SOURCE).cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") in ("setup", "provided"):
            exec(compile(cell.source, "capstone", "exec"), namespace)
    return namespace


class Oracle:
    """A 'model' that knows the held-out answers and gets ``wrong`` of them wrong on purpose."""

    def __init__(self, wrong=0, scores=None):
        x, y = capstone.load_heldout()
        self.answers = {row.tobytes(): label for row, label in zip(x, y, strict=True)}
        self.wrong, self.scores = wrong, scores

    def predict(self, x):
        labels = np.array([self.answers[row.tobytes()] for row in x])
        labels[: self.wrong] = (labels[: self.wrong] + 1) % 10
        out = np.eye(10)[labels]
        return out if self.scores is None else self.scores(out)


def test_stored_heldout_set_has_not_drifted(heldout):
    x, y = capstone.build_heldout(path=None)
    with np.load(capstone.DATA) as data:
        np.testing.assert_array_equal(data["x"], x)
        np.testing.assert_array_equal(data["y"], y)
    assert x.shape == (1080, 64) and x.dtype == np.uint8 and x.max() <= 16
    assert heldout[0].dtype == np.float64 and 0 <= heldout[0].min() and heldout[0].max() <= 1


def test_heldout_digits_are_disjoint_from_the_training_split_and_in_no_public_image():
    from sklearn.datasets import load_digits

    train, held = capstone.training_indices(), capstone.heldout_indices()
    assert len(train) == 1437 and len(held) == 360
    assert not set(train) & set(held) and len(set(train) | set(held)) == 1797
    originals = {row.tobytes() for row in load_digits().data.astype(np.uint8)}
    x, y = capstone.build_heldout(path=None)
    assert not any(row.tobytes() in originals for row in x)
    np.testing.assert_array_equal(y[:360], load_digits().target[held])
    assert np.bincount(y).min() >= 60  # every class is well represented


def test_notebook_loader_returns_exactly_the_training_split(notebook):
    from npdl.data import load_digits

    x, y = notebook["load_training_data"]()
    x_all, y_all = load_digits()
    train = capstone.training_indices()
    np.testing.assert_array_equal(x, x_all[train])
    np.testing.assert_array_equal(y, y_all[train])


def test_notebook_jitter_is_the_graders_perturbation(notebook):
    x, _ = notebook["load_training_data"]()
    ours = notebook["jitter"](x[:50], np.random.default_rng(5))
    theirs = capstone.perturb(np.rint(x[:50] * 16), np.random.default_rng(5)) / 16
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_standardize_layer_gradient(notebook):
    from npdl.gradcheck import numerical_gradient, relative_error

    layer = notebook["Standardize"](np.array([0.5, 1.0]), np.array([2.0, 0.25]))
    x, g = np.array([[1.0, 2.0], [3.0, -1.0]]), np.array([[0.3, -1.0], [2.0, 0.5]])
    layer.forward(x)
    numeric = numerical_gradient(lambda: float(np.sum(layer.forward(x) * g)), x)
    assert relative_error(layer.backward(g), numeric) < 1e-6


@pytest.mark.parametrize("accuracy, score", [(1.0, 10), (0.97, 10), (0.935, 5), (0.9, 0), (0.5, 0)])
def test_score_is_linear_from_90_to_97_percent(accuracy, score):
    assert capstone.score_from_accuracy(accuracy, 10) == pytest.approx(score, abs=1e-3)


@settings(max_examples=40, deadline=None)
@given(st.floats(0, 1), st.floats(0, 1), st.sampled_from([1, 10, 7.5]))
def test_score_is_monotone_and_bounded(a, b, points):
    low, high = sorted((a, b))
    s_low, s_high = (capstone.score_from_accuracy(v, points) for v in (low, high))
    assert 0 <= s_low <= s_high <= points


def test_perfect_model_gets_full_marks(capsys):
    assert capstone.grade_capstone(Oracle(), points=10) == 10
    out = capsys.readouterr().out
    assert "✔ held-out accuracy 100.0% on 1080" in out and "10 / 10 points" in out


def test_partial_credit(capsys):
    score = capstone.grade_capstone(Oracle(wrong=54), points=10)  # 95 % right
    assert score == pytest.approx(10 * (0.95 - 0.9) / 0.07, abs=1e-3)
    assert "held-out accuracy 95.0%" in capsys.readouterr().out


def test_below_90_percent_fails_with_the_accuracy():
    with pytest.raises(CheckFailed, match=r"held-out accuracy 50\.0% .* 0 / 10 points"):
        capstone.grade_capstone(Oracle(wrong=540), points=10)


@pytest.mark.parametrize(
    "model, match",
    [
        (None, "a variable named `model`"),
        (object(), "predict"),
        (Oracle(scores=lambda out: out[:, :5]), r"shape \(1080, 10\)"),
        (Oracle(scores=lambda out: out.argmax(axis=1)), r"shape \(1080, 10\)"),
    ],
)
def test_broken_models_get_actionable_feedback(model, match):
    with pytest.raises(CheckFailed, match=match):
        capstone.grade_capstone(model)


def test_exceptions_and_non_finite_scores_are_contained(capfd):
    class Raises:
        def predict(self, x):
            raise ValueError("bad input")

    with pytest.raises(CheckFailed, match="raised ValueError: bad input"):
        capstone.grade_capstone(Raises())

    def nan_rows(out):  # 5 % of the rows are NaN (and warn while being made): they count as wrong
        out = out.copy()
        out[:54] = np.log(-np.ones(10))
        return out

    assert capstone.grade_capstone(Oracle(scores=nan_rows)) == pytest.approx(
        10 * 0.05 / 0.07, abs=1e-3
    )
    assert capfd.readouterr().err == ""


def test_grader_does_not_hand_the_model_its_own_copy_of_the_data():
    class Mutates(Oracle):
        def predict(self, x):
            out = super().predict(x)
            x[...] = 0
            return out

    assert capstone.grade_capstone(Mutates()) == 10
    assert capstone.load_heldout()[0].max() == 1.0
