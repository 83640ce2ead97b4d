"""Tests for npdl.layers: Dense, Dropout, Flatten, BatchNorm.

Oracles: finite differences (float64, rel err < 1e-6) and PyTorch (float64, < 1e-7).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from npdl.core import Layer, NotReadyError, ShapeError
from npdl.gradcheck import numerical_gradient, relative_error
from npdl.initializers import Constant, Ones, RandomNormal
from npdl.layers import BatchNorm, Dense, Dropout, Flatten
from npdl.layers import Layer as ReexportedLayer

TORCH_TOL = 1e-7
FD_TOL = 1e-6


def t64(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


def check_layer_gradients(layer, x, rng, reset=lambda: None):
    """Finite-difference check of dL/dx and every dL/dparam for L = sum(R * layer(x))."""
    reset()
    r = rng.standard_normal(layer.forward(x).shape)

    def loss():
        reset()
        return np.sum(r * layer.forward(x))

    loss()
    dx = layer.backward(r)
    assert relative_error(dx, numerical_gradient(loss, x)) < FD_TOL
    for name, p in layer.params.items():
        reset()
        layer.forward(x)
        layer.backward(r)
        analytic = layer.grads[name].copy()
        assert relative_error(analytic, numerical_gradient(loss, p)) < FD_TOL, name


def test_layer_is_reexported():
    assert ReexportedLayer is Layer
    assert all(issubclass(c, Layer) for c in (Dense, Dropout, Flatten, BatchNorm))


# ================================================================ Dense


def make_dense(n_in=4, n_out=3, seed=0, **kw):
    return Dense(n_in, n_out, bias_init=RandomNormal(0, 1), rng=seed, **kw)


def test_dense_shapes_and_formula(rng):
    layer = make_dense()
    assert layer.params["W"].shape == (4, 3) and layer.params["b"].shape == (3,)
    assert layer.grads["W"].shape == (4, 3) and layer.grads["b"].shape == (3,)
    x = rng.standard_normal((5, 4))
    np.testing.assert_allclose(layer(x), x @ layer.params["W"] + layer.params["b"], rtol=1e-15)


def test_dense_gradcheck(rng):
    check_layer_gradients(make_dense(), rng.standard_normal((5, 4)), rng)


def test_dense_matches_torch_linear(rng):
    layer = make_dense(6, 5)
    x = rng.standard_normal((7, 6))
    g = rng.standard_normal((7, 5))
    xt, wt, bt = t64(x), t64(layer.params["W"].T), t64(layer.params["b"])
    yt = F.linear(xt, wt, bt)
    yt.backward(torch.tensor(g))
    assert relative_error(layer.forward(x), yt.detach().numpy()) < TORCH_TOL
    dx = layer.backward(g)
    assert relative_error(dx, xt.grad.numpy()) < TORCH_TOL
    assert relative_error(layer.grads["W"], wt.grad.numpy().T) < TORCH_TOL
    assert relative_error(layer.grads["b"], bt.grad.numpy()) < TORCH_TOL


def test_dense_default_init_is_he_normal_and_zero_bias():
    layer = Dense(1000, 500, rng=0)
    assert np.all(layer.params["b"] == 0)
    assert abs(layer.params["W"].std() - np.sqrt(2 / 1000)) < 4 * np.sqrt(2 / 1000) / np.sqrt(1e6)


def test_dense_rng_seed_is_reproducible_and_custom_init_is_used():
    assert np.array_equal(Dense(3, 2, rng=7).params["W"], Dense(3, 2, rng=7).params["W"])
    layer = Dense(3, 2, weight_init=Ones(), bias_init=Constant(0.5))
    assert np.all(layer.params["W"] == 1) and np.all(layer.params["b"] == 0.5)


def test_dense_float32_stays_float32(rng):
    layer = make_dense(dtype=np.float32)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert layer.params["W"].dtype == np.float32 and layer.params["b"].dtype == np.float32
    assert y.dtype == np.float32 and dx.dtype == np.float32
    assert layer.grads["W"].dtype == np.float32 and layer.grads["b"].dtype == np.float32


def test_dense_casts_float32_input_to_its_dtype(rng):
    layer = make_dense()
    x32 = rng.standard_normal((5, 4)).astype(np.float32)
    y = layer(x32)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, layer(x32.astype(np.float64)), rtol=1e-15)


def test_dense_rejects_integer_input():
    with pytest.raises(TypeError, match=r"Dense\(in_features=4, out_features=3\).*dtype=int64"):
        make_dense()(np.ones((2, 4), dtype=np.int64))


def test_dense_wrong_feature_count_names_layer_and_shapes():
    msg = (
        r"Dense\(in_features=4, out_features=3\): expected input of shape \(batch, 4\)\. "
        r"Received: shape=\(2, 5\)\."
    )
    with pytest.raises(ShapeError, match=msg):
        make_dense()(np.ones((2, 5)))
    with pytest.raises(ShapeError, match=r"Received: shape=\(4,\)"):
        make_dense()(np.ones(4))  # no silent promotion of a 1-D sample


def test_dense_backward_before_forward():
    with pytest.raises(NotReadyError, match="forward"):
        make_dense().backward(np.ones((2, 3)))


def test_dense_grad_output_shape_must_match(rng):
    layer = make_dense()
    layer(rng.standard_normal((5, 4)))
    with pytest.raises(
        ShapeError, match=r"grad_output of shape \(5, 3\).*Received: shape=\(1, 3\)"
    ):
        layer.backward(np.ones((1, 3)))  # would broadcast silently otherwise


def test_dense_grads_are_same_objects_and_overwritten(rng):
    layer = make_dense()
    grad_w, grad_b = layer.grads["W"], layer.grads["b"]
    x, g = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    layer(x)
    layer.backward(g)
    first_w, first_b = grad_w.copy(), grad_b.copy()
    layer(x)
    layer.backward(g)
    assert layer.grads["W"] is grad_w and layer.grads["b"] is grad_b
    np.testing.assert_array_equal(grad_w, first_w)  # not 2 * first
    np.testing.assert_array_equal(grad_b, first_b)


def test_dense_returned_arrays_belong_to_the_caller_float32(rng):
    # Outputs and input gradients are new arrays: a later forward/backward (the autograder
    # compares results after further calls) must not change them, nor may they alias state.
    layer = Dense(4, 3, rng=0, dtype=np.float32)
    params, grads = dict(layer.params), dict(layer.grads)
    x = rng.standard_normal((5, 4)).astype(np.float32)
    g = rng.standard_normal((5, 3)).astype(np.float32)
    y = layer.forward(x)
    dx = layer.backward(g)
    y0, dx0 = y.copy(), dx.copy()
    layer.forward(x + 1)
    layer.backward(2 * g)
    np.testing.assert_array_equal(y, y0)
    np.testing.assert_array_equal(dx, dx0)
    for key in params:
        assert layer.params[key] is params[key] and layer.grads[key] is grads[key]
        assert layer.grads[key].dtype == np.float32
        for returned in (y, dx):
            assert not np.shares_memory(returned, layer.params[key])
            assert not np.shares_memory(returned, layer.grads[key])
    assert y.dtype == dx.dtype == np.float32


def test_dense_need_input_grad_false(rng):
    layer = make_dense()
    x, g = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    layer(x)
    assert layer.backward(g) is not None
    full_w, full_b = layer.grads["W"].copy(), layer.grads["b"].copy()
    layer.grads["W"][...] = 0.0
    layer.grads["b"][...] = 0.0
    assert layer.backward(g, need_input_grad=False) is None
    np.testing.assert_array_equal(layer.grads["W"], full_w)
    np.testing.assert_array_equal(layer.grads["b"], full_b)


def test_dense_output_shape_repr_num_params():
    layer = Dense(4, 3)
    assert layer.output_shape((None, 4)) == (None, 3)
    with pytest.raises(ShapeError):
        layer.output_shape((None, 5))
    assert repr(layer) == "Dense(in_features=4, out_features=3)"
    assert layer.num_params() == 15


def test_dense_invalid_constructor_arguments():
    with pytest.raises(ValueError, match="in_features"):
        Dense(0, 3)
    with pytest.raises(ValueError, match="out_features"):
        Dense(3, 2.5)
    with pytest.raises(TypeError, match="floating dtype"):
        Dense(3, 2, dtype=np.int32)


def test_dense_finite_for_large_inputs(rng):
    layer = make_dense()
    y = layer(np.full((3, 4), 1e4))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(layer.backward(np.full((3, 3), 1e4))))


# ================================================================ Dropout


def test_dropout_statistics():
    layer = Dropout(0.3, rng=0)
    x = np.ones((1000, 1000))
    y = layer(x)
    n = x.size
    dropped = np.mean(y == 0)
    assert abs(dropped - 0.3) < 4 * np.sqrt(0.3 * 0.7 / n)
    np.testing.assert_allclose(y[y != 0], 1 / 0.7, rtol=1e-15)  # inverted scaling
    assert abs(y.mean() - 1.0) < 4 * np.sqrt(0.3 / 0.7 / n)  # E[y] = x


def test_dropout_backward_uses_the_same_mask(rng):
    layer = Dropout(0.5, rng=1)
    x = rng.standard_normal((20, 10))
    y = layer(x)
    g = rng.standard_normal((20, 10))
    dx = layer.backward(g)
    np.testing.assert_array_equal(dx == 0, y == 0)
    np.testing.assert_allclose(dx[y != 0], 2 * g[y != 0], rtol=1e-15)


def test_dropout_gradcheck_with_fixed_rng(rng):
    layer = Dropout(0.4)

    def reset():
        layer.rng = np.random.default_rng(5)

    check_layer_gradients(layer, rng.standard_normal((6, 5)), rng, reset)


def test_dropout_eval_and_rate_zero_are_identity(rng):
    x, g = rng.standard_normal((8, 4)), rng.standard_normal((8, 4))
    for layer in (Dropout(0.5, rng=0).eval(), Dropout(0.0, rng=0)):
        np.testing.assert_array_equal(layer(x), x)
        np.testing.assert_array_equal(layer.backward(g), g)


def test_dropout_train_again_after_eval(rng):
    layer = Dropout(0.5, rng=0)
    layer.eval()
    layer.train()
    assert np.any(layer(np.ones((50, 50))) == 0)


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5])
def test_dropout_rejects_bad_rate(rate):
    with pytest.raises(ValueError, match=r"\[0, 1\).*Received: rate="):
        Dropout(rate)


def test_dropout_float32_and_errors(rng):
    layer = Dropout(0.5, rng=0)
    y = layer(rng.standard_normal((4, 3)).astype(np.float32))
    assert y.dtype == np.float32 and layer.backward(np.ones((4, 3), np.float32)).dtype == np.float32
    with pytest.raises(ShapeError):
        layer.backward(np.ones((4, 4)))
    with pytest.raises(TypeError):
        layer(np.ones((2, 2), dtype=np.int32))
    with pytest.raises(NotReadyError):
        Dropout(0.5).backward(np.ones(3))
    assert repr(Dropout(0.25)) == "Dropout(rate=0.25)"


# ================================================================ Flatten


def test_flatten_matches_torch(rng):
    x = rng.standard_normal((3, 2, 4, 5))
    g = rng.standard_normal((3, 40))
    xt = t64(x)
    yt = torch.flatten(xt, start_dim=1)
    yt.backward(torch.tensor(g))
    layer = Flatten()
    assert relative_error(layer(x), yt.detach().numpy()) < TORCH_TOL
    assert relative_error(layer.backward(g), xt.grad.numpy()) < TORCH_TOL


def test_flatten_gradcheck(rng):
    check_layer_gradients(Flatten(), rng.standard_normal((2, 3, 2)), rng)


def test_flatten_shapes_and_errors():
    layer = Flatten()
    assert layer.output_shape((None, 28, 28)) == (None, 784)
    assert layer(np.zeros((0, 3, 2))).shape == (0, 6)  # empty batch is fine
    assert layer(np.ones((2, 5))).shape == (2, 5)
    with pytest.raises(ShapeError, match=r"at least 2 dimensions.*Received: shape=\(5,\)"):
        layer(np.ones(5))
    with pytest.raises(NotReadyError):
        Flatten().backward(np.ones((2, 3)))
    layer(np.ones((2, 3, 4)))
    with pytest.raises(ShapeError):
        layer.backward(np.ones((2, 3, 4)))


# ================================================================ BatchNorm


def make_bn(c=3, rng=None, **kw):
    layer = BatchNorm(c, **kw)
    if rng is not None:  # non-trivial affine params so their gradients matter
        layer.params["gamma"][...] = rng.uniform(0.5, 2.0, c)
        layer.params["beta"][...] = rng.standard_normal(c)
    return layer


def test_batchnorm_train_normalizes_batch(rng):
    layer = make_bn(4)
    y = layer(rng.standard_normal((50, 4)) * 3 + 5)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=0), 1, rtol=1e-5)  # eps makes it slightly < 1


def test_batchnorm_gradcheck_train(rng):
    layer = make_bn(3, rng)
    check_layer_gradients(layer, rng.standard_normal((6, 3)) * 2 + 1, rng)


def test_batchnorm_gradcheck_eval(rng):
    layer = make_bn(3, rng)
    layer(rng.standard_normal((10, 3)))  # some running stats
    layer.eval()
    check_layer_gradients(layer, rng.standard_normal((4, 3)), rng)


def test_batchnorm_matches_torch_over_several_steps(rng):
    c = 4
    ours = make_bn(c, rng, momentum=0.2, eps=1e-3)
    theirs = torch.nn.BatchNorm1d(c, momentum=0.2, eps=1e-3, dtype=torch.float64)
    with torch.no_grad():
        theirs.weight.copy_(torch.tensor(ours.params["gamma"]))
        theirs.bias.copy_(torch.tensor(ours.params["beta"]))
    for step, training in enumerate([True, True, True, False, True, False]):
        ours.train() if training else ours.eval()
        theirs.train(training)
        x = rng.standard_normal((8, c)) * (step + 1) + step
        g = rng.standard_normal((8, c))
        xt = t64(x)
        theirs.zero_grad()
        yt = theirs(xt)
        yt.backward(torch.tensor(g))
        assert relative_error(ours(x), yt.detach().numpy()) < TORCH_TOL
        assert relative_error(ours.backward(g), xt.grad.numpy()) < TORCH_TOL
        assert relative_error(ours.grads["gamma"], theirs.weight.grad.numpy()) < TORCH_TOL
        assert relative_error(ours.grads["beta"], theirs.bias.grad.numpy()) < TORCH_TOL
        rm, rv = theirs.running_mean.numpy(), theirs.running_var.numpy()
        assert relative_error(ours.buffers["running_mean"], rm) < TORCH_TOL
        assert relative_error(ours.buffers["running_var"], rv) < TORCH_TOL


def test_batchnorm_running_stats_use_unbiased_variance(rng):
    layer = BatchNorm(2, momentum=1.0)
    x = rng.standard_normal((5, 2))
    layer(x)
    np.testing.assert_allclose(layer.buffers["running_mean"], x.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(layer.buffers["running_var"], x.var(axis=0, ddof=1), rtol=1e-14)


def test_batchnorm_buffers_updated_in_place(rng):
    layer = BatchNorm(3)
    mean, var = layer.buffers["running_mean"], layer.buffers["running_var"]
    layer(rng.standard_normal((4, 3)) + 2)
    assert layer.buffers["running_mean"] is mean and layer.buffers["running_var"] is var
    assert np.all(mean != 0)


def test_batchnorm_eval_uses_running_stats_and_leaves_them(rng):
    layer = make_bn(3, rng)
    layer(rng.standard_normal((20, 3)) * 2 + 1)
    layer.eval()
    before = {k: v.copy() for k, v in layer.buffers.items()}
    x = rng.standard_normal((1, 3))  # one sample is fine in eval mode
    expected = (x - before["running_mean"]) / np.sqrt(before["running_var"] + 1e-5)
    expected = layer.params["gamma"] * expected + layer.params["beta"]
    np.testing.assert_allclose(layer(x), expected, rtol=1e-14)
    for k, v in layer.buffers.items():
        np.testing.assert_array_equal(v, before[k])


def test_batchnorm_single_sample_training_is_refused():
    with pytest.raises(ValueError, match=r"more than 1 sample.*Received: shape=\(1, 3\)"):
        BatchNorm(3)(np.ones((1, 3)))


def test_batchnorm_grads_same_objects_and_need_input_grad(rng):
    layer = make_bn(3, rng)
    grad_gamma, grad_beta = layer.grads["gamma"], layer.grads["beta"]
    x, g = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    layer(x)
    assert layer.backward(g) is not None
    first = grad_gamma.copy(), grad_beta.copy()
    layer(x)
    assert layer.backward(g, need_input_grad=False) is None
    assert layer.grads["gamma"] is grad_gamma and layer.grads["beta"] is grad_beta
    np.testing.assert_allclose(grad_gamma, first[0], rtol=1e-14)  # overwritten, not doubled
    np.testing.assert_allclose(grad_beta, first[1], rtol=1e-14)


def test_batchnorm_float32(rng):
    layer = BatchNorm(3, dtype=np.float32)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    y = layer(x)
    dx = layer.backward(np.ones((6, 3), np.float32))
    assert y.dtype == dx.dtype == np.float32
    assert all(
        a.dtype == np.float32
        for d in (layer.params, layer.grads, layer.buffers)
        for a in d.values()
    )
    assert BatchNorm(3)(x).dtype == np.float64  # float32 input cast to the layer's dtype


def test_batchnorm_errors_and_repr():
    layer = BatchNorm(3)
    with pytest.raises(NotReadyError):
        layer.backward(np.ones((2, 3)))
    with pytest.raises(
        ShapeError, match=r"BatchNorm\(num_features=3.*\(batch, 3\).*Received: shape=\(2, 4\)"
    ):
        layer(np.ones((2, 4)))
    with pytest.raises(TypeError):
        layer(np.ones((2, 3), dtype=np.int64))
    layer(np.arange(6.0).reshape(2, 3))
    with pytest.raises(ShapeError):
        layer.backward(np.ones((3,)))
    with pytest.raises(ValueError):
        BatchNorm(0)
    assert repr(layer) == "BatchNorm(num_features=3, eps=1e-05, momentum=0.1)"
    assert layer.output_shape((None, 3)) == (None, 3) and layer.num_params() == 6


def test_batchnorm_finite_for_extreme_and_constant_inputs():
    layer = BatchNorm(2)
    x = np.array([[1e4, 5.0], [-1e4, 5.0], [1e4, 5.0]])  # second column constant: var 0
    y = layer(x)
    dx = layer.backward(np.full_like(x, 1e4))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    np.testing.assert_array_equal(y[:, 1], 0.0)


# ================================================================ hypothesis

dims = st.integers(1, 7)


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(0, 6), n_in=dims, n_out=dims, f32=st.booleans())
def test_dense_shapes_property(batch, n_in, n_out, f32):
    dtype = np.float32 if f32 else np.float64
    layer = Dense(n_in, n_out, rng=0, dtype=dtype)
    y = layer(np.ones((batch, n_in), dtype=dtype))
    assert y.shape == layer.output_shape((batch, n_in)) == (batch, n_out) and y.dtype == dtype
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == (batch, n_in) and dx.dtype == dtype


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(dims, min_size=2, max_size=5).map(tuple), rate=st.floats(0.0, 0.95))
def test_flatten_dropout_shapes_property(shape, rate):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    flat = Flatten()
    y = flat(x)
    assert y.shape == flat.output_shape(shape) == (shape[0], x[0].size)
    assert flat.backward(y).shape == shape
    drop = Dropout(rate, rng=0)
    z = drop(x)
    assert z.shape == shape and z.dtype == np.float32
    assert np.all((z == 0) | np.isclose(z, x / (1 - rate), rtol=1e-6))


@settings(max_examples=30, deadline=None)
@given(
    batch=st.integers(2, 8),
    c=dims,
    scale=st.sampled_from([1e-3, 1.0, 1e2, 1e4]),
    seed=st.integers(0, 2**32 - 1),
)
def test_batchnorm_finite_property(batch, c, scale, seed):
    x = np.random.default_rng(seed).uniform(-scale, scale, (batch, c))
    layer = BatchNorm(c)
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert y.shape == dx.shape == (batch, c)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert np.all(np.abs(y) <= np.sqrt(batch - 1) + 1e-9)  # |xhat| <= sqrt(N - 1)
