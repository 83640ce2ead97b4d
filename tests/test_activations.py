"""Tests for npdl.activations: torch parity, gradient checks, stability, dtypes, errors."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npdl import activations as A
from npdl.core import Layer, NotReadyError, ShapeError
from npdl.gradcheck import numerical_gradient, relative_error

# name -> (npdl factory, torch function)
CASES = {
    "Identity": (A.Identity, lambda t: t),
    "Sigmoid": (A.Sigmoid, torch.sigmoid),
    "Tanh": (A.Tanh, torch.tanh),
    "ReLU": (A.ReLU, torch.relu),
    "LeakyReLU": (A.LeakyReLU, lambda t: F.leaky_relu(t, 0.01)),
    "LeakyReLU(0.2)": (lambda: A.LeakyReLU(alpha=0.2), lambda t: F.leaky_relu(t, 0.2)),
    "ELU": (A.ELU, F.elu),
    "ELU(0.5)": (lambda: A.ELU(alpha=0.5), lambda t: F.elu(t, alpha=0.5)),
    "Softplus": (A.Softplus, F.softplus),
    "Swish": (A.Swish, F.silu),
    "GELU": (A.GELU, F.gelu),
    "GELU(tanh)": (lambda: A.GELU("tanh"), lambda t: F.gelu(t, approximate="tanh")),
    "Softmax": (A.Softmax, lambda t: torch.softmax(t, dim=-1)),
    "Softmax(axis=0)": (lambda: A.Softmax(axis=0), lambda t: torch.softmax(t, dim=0)),
}
IDS = list(CASES)


def away_from_kinks(rng, shape):
    """Normal samples pushed out of (-0.05, 0.05), so ReLU-like kinks are not straddled."""
    x = rng.normal(scale=2.0, size=shape)
    return x + 0.05 * np.sign(x)


@pytest.mark.parametrize("name", IDS)
def test_matches_torch_forward_and_backward(name, rng):
    make, torch_fn = CASES[name]
    x = away_from_kinks(rng, (6, 5))
    g = rng.normal(size=x.shape)
    layer = make()
    y = layer.forward(x)
    dx = layer.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_fn(xt)
    yt.backward(torch.tensor(g))
    assert relative_error(y, yt.detach().numpy()) < 1e-7
    assert relative_error(dx, xt.grad.numpy()) < 1e-7


@pytest.mark.parametrize("name", IDS)
def test_gradient_check(name, rng):
    make, _ = CASES[name]
    layer = make()
    x = away_from_kinks(rng, (4, 3))
    g = rng.normal(size=x.shape)
    layer.forward(x)
    analytic = layer.backward(g)
    numeric = numerical_gradient(lambda: np.sum(layer.forward(x) * g), x)
    assert relative_error(analytic, numeric) < 1e-6


@pytest.mark.parametrize("name", IDS)
def test_is_a_parameter_free_layer_that_keeps_shape(name):
    layer = CASES[name][0]()
    assert isinstance(layer, A.Activation) and isinstance(layer, Layer)
    assert layer.params == {} and layer.grads == {} and layer.num_params() == 0
    assert layer.output_shape((7, 3)) == (7, 3)


@pytest.mark.parametrize("name", IDS)
def test_does_not_mutate_inputs(name, rng):
    layer = CASES[name][0]()
    x = rng.normal(size=(3, 4))
    g = rng.normal(size=(3, 4))
    x0, g0 = x.copy(), g.copy()
    y = layer.forward(x)
    dx = layer.backward(g)
    assert np.array_equal(x, x0) and np.array_equal(g, g0)
    assert not np.shares_memory(y, x) and not np.shares_memory(dx, g)


@pytest.mark.parametrize("name", IDS)
def test_backward_overwrites_rather_than_accumulates(name, rng):
    layer = CASES[name][0]()
    x = rng.normal(size=(3, 4))
    g = rng.normal(size=(3, 4))
    layer.forward(x)
    first = layer.backward(g)
    second = layer.backward(g)
    assert np.array_equal(first, second)


@pytest.mark.parametrize("name", IDS)
def test_returned_arrays_belong_to_the_caller(name, rng):
    # The autograder keeps forward's output and compares it after backward and after
    # later calls: no activation may return a buffer that a later call overwrites.
    layer = CASES[name][0]()
    x, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    y = layer.forward(x)
    dx = layer.backward(g)
    y0, dx0 = y.copy(), dx.copy()
    layer.forward(rng.normal(size=(3, 4)))
    layer.backward(rng.normal(size=(3, 4)))
    assert np.array_equal(y, y0) and np.array_equal(dx, dx0)
    assert not np.shares_memory(y, dx)


@pytest.mark.parametrize("name", IDS)
def test_rejects_integer_input(name):
    with pytest.raises(TypeError, match="Received: dtype=int64"):
        CASES[name][0]().forward(np.arange(6).reshape(2, 3))


@pytest.mark.parametrize("name", IDS)
def test_backward_before_forward_raises(name):
    with pytest.raises(NotReadyError):
        CASES[name][0]().backward(np.ones((2, 3)))


@pytest.mark.parametrize("name", IDS)
def test_backward_rejects_wrong_grad_shape(name):
    layer = CASES[name][0]()
    layer.forward(np.ones((2, 3)))
    with pytest.raises(ShapeError, match=r"\(2, 3\).*\(3, 2\)"):
        layer.backward(np.ones((3, 2)))


def test_error_messages_name_the_component():
    with pytest.raises(TypeError, match=r"LeakyReLU\(alpha=0.2\)"):
        A.LeakyReLU(0.2).forward(np.arange(3))
    with pytest.raises(ValueError, match=r"GELU.*'exact'"):
        A.GELU("exact")
    with pytest.raises(ShapeError, match=r"Softmax\(axis=2\).*\(2, 3\)"):
        A.Softmax(axis=2).forward(np.ones((2, 3)))


def test_silu_is_swish():
    assert A.SiLU is A.Swish


def test_relu_has_zero_gradient_at_zero_like_torch():
    relu = A.ReLU()
    relu.forward(np.array([-1.0, 0.0, 2.0]))
    np.testing.assert_array_equal(relu.backward(np.ones(3)), [0.0, 0.0, 1.0])


def test_relu_float32_stays_float32_even_with_float64_grad(rng):
    layer = A.ReLU()
    x = rng.normal(size=(5, 4)).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(rng.normal(size=(5, 4)))  # float64 grad_output is cast to x's dtype
    assert y.dtype == dx.dtype == np.float32
    assert np.array_equal(dx == 0, x <= 0)


def test_softmax_backward_handles_higher_rank_and_axis(rng):
    x = rng.normal(size=(2, 3, 4))
    g = rng.normal(size=x.shape)
    layer = A.Softmax(axis=1)
    layer.forward(x)
    xt = torch.tensor(x, requires_grad=True)
    torch.softmax(xt, dim=1).backward(torch.tensor(g))
    assert relative_error(layer.backward(g), xt.grad.numpy()) < 1e-7


def test_pure_functions_match_torch(rng):
    x = rng.normal(scale=5.0, size=(5, 7))
    t = torch.tensor(x)
    assert relative_error(A.sigmoid(x), torch.sigmoid(t).numpy()) < 1e-12
    assert relative_error(A.softplus(x), F.softplus(t).numpy()) < 1e-7
    assert relative_error(A.softmax(x), torch.softmax(t, -1).numpy()) < 1e-12
    assert relative_error(A.softmax(x, axis=0), torch.softmax(t, 0).numpy()) < 1e-12
    assert relative_error(A.log_softmax(x), torch.log_softmax(t, -1).numpy()) < 1e-12
    assert relative_error(A.log_softmax(x, axis=0), torch.log_softmax(t, 0).numpy()) < 1e-12


def test_pure_functions_exact_at_extremes():
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    np.testing.assert_array_equal(A.sigmoid(x)[[0, 2, 4]], [0.0, 0.5, 1.0])
    expected = [0.0, np.exp(-50.0), np.log(2.0), 50.0, 1e4]
    np.testing.assert_allclose(A.softplus(x), expected, rtol=1e-12)
    np.testing.assert_allclose(A.log_softmax(np.array([1e4, -1e4])), [0.0, -2e4])


# ----------------------------------------------------------------------------- properties

float_dtypes = st.sampled_from([np.float32, np.float64])
shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)


@st.composite
def float_arrays(draw, low=-1e4, high=1e4):
    dtype = draw(float_dtypes)
    elements = st.floats(low, high, allow_nan=False, width=32)
    return draw(hnp.arrays(dtype, draw(shapes), elements=elements))


@settings(max_examples=40, deadline=None)
@given(x=float_arrays(), name=st.sampled_from(IDS))
def test_shape_and_dtype_preserved_and_finite(x, name):
    layer = CASES[name][0]()
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(x))
    for out in (y, dx):
        assert out.shape == x.shape and out.dtype == x.dtype
        assert np.all(np.isfinite(out))


@settings(max_examples=40, deadline=None)
@given(x=float_arrays())
def test_pure_functions_finite_dtype_preserving(x):
    for fn in (A.sigmoid, A.softplus, A.softmax, A.log_softmax):
        out = fn(x)
        assert out.dtype == x.dtype and out.shape == x.shape
        assert np.all(np.isfinite(out))
    s = A.sigmoid(x)
    assert np.all((s >= 0) & (s <= 1))
    assert np.all(A.softplus(x) >= 0)
    assert np.all(A.log_softmax(x) <= 0)


@settings(max_examples=40, deadline=None)
@given(x=float_arrays())
def test_softmax_rows_sum_to_one(x):
    tol = 1e-5 if x.dtype == np.float32 else 1e-12
    for axis in range(-x.ndim, x.ndim):
        s = A.softmax(x, axis=axis)
        np.testing.assert_allclose(np.sum(s, axis=axis, dtype=np.float64), 1.0, atol=tol)
        log_s = A.log_softmax(x, axis=axis).astype(np.float64)
        np.testing.assert_allclose(np.exp(log_s), s, atol=tol)


@settings(max_examples=25, deadline=None)
@given(x=float_arrays(low=-1e4, high=1e4))
def test_float32_matches_float64_reference(x):
    x32 = x.astype(np.float32)
    for name in ("Sigmoid", "Softplus", "GELU", "Swish", "ELU"):
        y32 = CASES[name][0]().forward(x32)
        y64 = CASES[name][0]().forward(x32.astype(np.float64))
        assert y32.dtype == np.float32
        np.testing.assert_allclose(y32, y64, rtol=1e-5, atol=1e-6)
