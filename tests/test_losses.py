"""Tests for npdl.losses: torch parity, gradient checks, stability, validation errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npdl import losses as L
from npdl.core import NotReadyError, ShapeError
from npdl.gradcheck import numerical_gradient, relative_error

N, C = 5, 4


def probabilities(rng, shape=(N, C)):
    e = np.exp(rng.normal(size=shape))
    return e / e.sum(axis=1, keepdims=True)


def hinge_torch(pred, target):
    return torch.clamp(1 - target * pred, min=0).mean()


def make_case(name, rng):
    """(loss, pred, target, torch loss function of (pred tensor, target tensor))."""
    labels = rng.integers(0, C, size=N)
    one_hot = np.eye(C)[labels]
    x = rng.normal(size=(N, C))
    x = x + 0.1 * np.sign(x)  # away from the kinks of MAE, Huber and Hinge
    cases = {
        "MSE": (L.MSE(), x, rng.normal(size=(N, C)), F.mse_loss),
        "MAE": (L.MAE(), x, np.zeros((N, C)), F.l1_loss),
        "Huber": (L.Huber(), 3 * x, np.zeros((N, C)), F.huber_loss),
        "Huber(0.5)": (L.Huber(0.5), 3 * x, np.zeros((N, C)),
                       lambda p, t: F.huber_loss(p, t, delta=0.5)),
        "BCE": (L.BinaryCrossEntropy(), rng.uniform(0.05, 0.95, (N, C)), rng.uniform(0, 1, (N, C)),
                F.binary_cross_entropy),
        "BCE(logits)": (L.BinaryCrossEntropy(from_logits=True), 3 * x,
                        rng.integers(0, 2, (N, C)).astype(float),
                        F.binary_cross_entropy_with_logits),
        "CCE": (L.CategoricalCrossEntropy(), probabilities(rng), one_hot,
                lambda p, t: -(t * torch.log(p)).sum() / p.shape[0]),
        "SoftmaxCE(one-hot)": (L.SoftmaxCrossEntropy(), x, one_hot, F.cross_entropy),
        "SoftmaxCE(labels)": (L.SoftmaxCrossEntropy(), x, labels, F.cross_entropy),
        "Hinge": (L.Hinge(), x, np.where(rng.normal(size=(N, C)) > 0, 1.0, -1.0), hinge_torch),
        "KL": (L.KLDivergence(), probabilities(rng), probabilities(rng),
               lambda p, t: F.kl_div(torch.log(p), t, reduction="batchmean")),
    }
    return cases[name]


NAMES = ["MSE", "MAE", "Huber", "Huber(0.5)", "BCE", "BCE(logits)", "CCE", "SoftmaxCE(one-hot)",
         "SoftmaxCE(labels)", "Hinge", "KL"]


@pytest.mark.parametrize("name", NAMES)
def test_matches_torch(name, rng):
    loss, pred, target, torch_fn = make_case(name, rng)
    value = loss.forward(pred, target)
    grad = loss.backward()
    pt = torch.tensor(pred, requires_grad=True)
    expected = torch_fn(pt, torch.tensor(target))
    expected.backward()
    assert isinstance(value, float)
    assert relative_error(value, expected.item()) < 1e-7
    assert relative_error(grad, pt.grad.numpy()) < 1e-7


@pytest.mark.parametrize("name", NAMES)
def test_gradient_check(name, rng):
    loss, pred, target, _ = make_case(name, rng)
    loss.forward(pred, target)
    analytic = loss.backward()
    numeric = numerical_gradient(lambda: loss.forward(pred, target), pred)
    assert relative_error(analytic, numeric) < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_backward_shape_dtype_and_no_mutation(name, rng):
    loss, pred, target, _ = make_case(name, rng)
    pred32 = pred.astype(np.float32)
    p0, t0 = pred32.copy(), np.copy(target)
    value = loss.forward(pred32, target)
    grad = loss.backward()
    assert isinstance(value, float) and np.isfinite(value)
    assert grad.shape == pred.shape and grad.dtype == np.float32
    assert np.array_equal(pred32, p0) and np.array_equal(target, t0)
    assert np.array_equal(loss.backward(), grad)  # backward is repeatable


def test_softmax_cross_entropy_gradient_belongs_to_the_caller(rng):
    # backward returns a new array each time: the caller may keep or overwrite it.
    loss = L.SoftmaxCrossEntropy()
    logits, labels = rng.normal(size=(4, 3)).astype(np.float32), np.array([0, 2, 1, 2])
    loss.forward(logits, labels)
    first = loss.backward()
    saved = first.copy()
    first[...] = 0.0
    second = loss.backward()
    np.testing.assert_array_equal(second, saved)
    assert second.dtype == np.float32
    loss.forward(logits + 1, labels[::-1].copy())
    loss.backward()
    np.testing.assert_array_equal(second, saved)


@pytest.mark.parametrize("name", NAMES)
def test_rejects_integer_pred(name, rng):
    loss, pred, target, _ = make_case(name, rng)
    with pytest.raises(TypeError, match="Received: dtype=int64"):
        loss.forward(np.round(pred).astype(np.int64), target)


@pytest.mark.parametrize("name", NAMES)
def test_backward_before_forward_raises(name, rng):
    loss = make_case(name, rng)[0]
    with pytest.raises(NotReadyError, match=type(loss).__name__):
        loss.backward()


@pytest.mark.parametrize("loss", [L.MSE(), L.MAE(), L.Huber(), L.BinaryCrossEntropy(), L.Hinge()])
def test_no_broadcasting_of_column_targets(loss):
    pred = np.full(3, 0.5)
    with pytest.raises(ShapeError, match=r"\(3,\).*\(3, 1\)"):
        loss.forward(pred, np.ones((3, 1)))


@pytest.mark.parametrize(
    "loss", [L.CategoricalCrossEntropy(), L.SoftmaxCrossEntropy(), L.KLDivergence()]
)
def test_class_losses_check_shapes(loss):
    with pytest.raises(ShapeError, match=r"\(2, 3\).*\(2, 4\)"):
        loss.forward(np.full((2, 3), 1 / 3), np.eye(4)[:2])
    with pytest.raises(ShapeError, match=r"\(6,\)"):
        loss.forward(np.full(6, 0.5), np.ones(6))


@pytest.mark.parametrize(
    "loss, pred, target, pattern",
    [
        (L.Hinge(), np.zeros(3), np.array([1.0, 0.0, -1.0]), "Hinge"),
        (L.BinaryCrossEntropy(), np.full(2, 0.5), np.array([1.0, 2.0]),
         "BinaryCrossEntropy.*target"),
        (L.BinaryCrossEntropy(), np.array([0.5, 1.5]), np.ones(2),
         "BinaryCrossEntropy.*from_logits"),
        (L.BinaryCrossEntropy(from_logits=True), np.zeros(2), np.array([-1.0, 1.0]),
         "BinaryCrossEntropy"),
        (L.CategoricalCrossEntropy(), np.full((2, 2), 0.5), np.array([[1.0, 1.0], [0, 1]]),
         "CategoricalCrossEntropy.*one-hot.*row 0"),
        (L.CategoricalCrossEntropy(), np.array([[2.0, -1.0]]), np.array([[1.0, 0.0]]),
         "CategoricalCrossEntropy.*SoftmaxCrossEntropy"),
        (L.SoftmaxCrossEntropy(), np.zeros((2, 3)), np.array([0, 3]),
         r"SoftmaxCrossEntropy.*\[0, 3\)"),
        (L.SoftmaxCrossEntropy(), np.zeros((2, 3)), np.array([-1, 0]), "SoftmaxCrossEntropy"),
        (L.SoftmaxCrossEntropy(), np.zeros((2, 3)), np.array([[0.5, 0.5, 0.0], [1, 0, 0]]),
         "SoftmaxCrossEntropy.*one-hot.*row 0"),
        (L.KLDivergence(), np.full((1, 2), 0.5), np.array([[1.5, -0.5]]), "KLDivergence"),
    ],
)
def test_bad_targets_raise_value_error_naming_the_loss(loss, pred, target, pattern):
    with pytest.raises(ValueError, match=pattern):
        loss.forward(pred, target)


def test_integer_labels_must_have_batch_shape():
    with pytest.raises(ShapeError, match=r"\(2,\).*\(3,\)"):
        L.SoftmaxCrossEntropy().forward(np.zeros((2, 3)), np.array([0, 1, 2]))


def test_huber_rejects_nonpositive_delta():
    with pytest.raises(ValueError, match="Huber"):
        L.Huber(delta=0.0)


def test_mae_gradient_is_zero_where_equal():
    loss = L.MAE()
    loss.forward(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 3.0, 5.0]))
    np.testing.assert_array_equal(loss.backward(), [0.0, 0.25, 0.0, -0.25])


def test_integer_targets_are_accepted_for_regression_and_one_hot():
    assert L.MSE().forward(np.array([1.0, 3.0]), np.array([1, 1])) == pytest.approx(2.0)
    loss = L.SoftmaxCrossEntropy()
    assert loss.forward(np.zeros((2, 2)), np.array([[1, 0], [0, 1]])) == pytest.approx(np.log(2.0))


def test_probability_losses_clamp_like_torch_at_zero_and_one():
    p = np.array([0.0, 1.0, 0.0, 1.0])
    y = np.array([1.0, 0.0, 0.0, 1.0])
    bce = L.BinaryCrossEntropy()
    pt = torch.tensor(p, requires_grad=True)
    expected = F.binary_cross_entropy(pt, torch.tensor(y))
    expected.backward()
    assert bce.forward(p, y) == pytest.approx(expected.item(), rel=1e-12)  # 50: the -100 clamp
    # torch's 1e-12 floor is a float32 constant, so only agree to ~4e-9 here
    assert relative_error(bce.backward(), pt.grad.numpy()) < 1e-7
    cce = L.CategoricalCrossEntropy()
    assert cce.forward(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]])) == pytest.approx(100.0)
    assert np.all(np.isfinite(cce.backward()))


def test_kl_divergence_handles_zero_target_and_is_zero_for_equal_rows(rng):
    q = probabilities(rng)
    kl = L.KLDivergence()
    assert kl.forward(q, q) == pytest.approx(0.0, abs=1e-15)
    q[0] = [0.0, 0.5, 0.5, 0.0]
    p = probabilities(rng)
    expected = F.kl_div(torch.log(torch.tensor(p)), torch.tensor(q), reduction="batchmean")
    assert kl.forward(p, q) == pytest.approx(expected.item(), rel=1e-12)


# ----------------------------------------------------------------------------- properties

float_dtypes = st.sampled_from([np.float32, np.float64])
logit_elements = st.floats(-1e4, 1e4, allow_nan=False, width=32)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=float_dtypes)
def test_softmax_cross_entropy_finite_at_extremes(data, dtype):
    n = data.draw(st.integers(1, 6))
    c = data.draw(st.integers(2, 6))
    z = data.draw(hnp.arrays(dtype, (n, c), elements=logit_elements))
    labels = data.draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
    loss = L.SoftmaxCrossEntropy()
    value = loss.forward(z, labels)
    grad = loss.backward()
    assert np.isfinite(value) and value >= 0
    assert grad.dtype == dtype and np.all(np.isfinite(grad))
    # each row of (softmax - one_hot) / N sums to 0
    np.testing.assert_allclose(grad.sum(axis=1, dtype=np.float64), 0.0, atol=1e-6)
    assert loss.forward(z, np.eye(c, dtype=dtype)[labels]) == pytest.approx(value, rel=1e-5)


@settings(max_examples=40, deadline=None)
@given(data=st.data(), dtype=float_dtypes)
def test_bce_finite_at_extremes(data, dtype):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=6))
    z = data.draw(hnp.arrays(dtype, shape, elements=logit_elements))
    y = data.draw(hnp.arrays(dtype, shape, elements=st.sampled_from([0.0, 1.0])))
    for loss, pred in ((L.BinaryCrossEntropy(from_logits=True), z),
                       (L.BinaryCrossEntropy(), (z > 0).astype(dtype))):  # probabilities 0 and 1
        value = loss.forward(pred, y)
        grad = loss.backward()
        assert np.isfinite(value) and value >= 0
        assert grad.shape == shape and grad.dtype == dtype and np.all(np.isfinite(grad))


@settings(max_examples=30, deadline=None)
@given(data=st.data(), dtype=float_dtypes)
def test_regression_losses_nonnegative_and_zero_at_target(data, dtype):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
    pred = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-1e3, 1e3, width=32)))
    for loss in (L.MSE(), L.MAE(), L.Huber()):
        assert loss.forward(pred, pred.copy()) == 0.0
        assert np.all(loss.backward() == 0)
        value = loss.forward(pred, np.zeros_like(pred))
        assert value >= 0 and np.isfinite(value)
        assert loss.backward().dtype == dtype


def test_non_numeric_target_raises_type_error():
    with pytest.raises(TypeError, match=r"MSE\(\).*Received: dtype=<U1"):
        L.MSE().forward(np.zeros(2), np.array(["a", "b"]))
    # bool targets are fine: they are 0/1
    assert L.BinaryCrossEntropy(from_logits=True).forward(
        np.zeros(2), np.array([True, False])
    ) == pytest.approx(np.log(2.0))
