"""Tests for npdl.conv: im2col/col2im, Conv2D, MaxPool2D, AvgPool2D, GlobalAvgPool2D.

Oracles: PyTorch (float64, relative error < 1e-7, forward and every gradient),
finite differences (float64, < 1e-6) and the adjoint identity of im2col/col2im.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from npdl.activations import ReLU
from npdl.conv import AvgPool2D, Conv2D, GlobalAvgPool2D, MaxPool2D, col2im, im2col
from npdl.core import Layer, NotReadyError, ShapeError
from npdl.gradcheck import numerical_gradient, relative_error
from npdl.initializers import Constant, RandomNormal
from npdl.layers import Dense, Flatten
from npdl.losses import SoftmaxCrossEntropy
from npdl.models import Sequential

TORCH_TOL = 1e-7
FD_TOL = 1e-6


def t64(a, grad=True):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=grad)


def check_layer_gradients(layer, x, rng, eps=1e-6):
    """Finite-difference check of dL/dx and every dL/dparam for L = sum(R * layer(x))."""
    r = rng.standard_normal(layer.forward(x).shape)

    def loss():
        return np.sum(r * layer.forward(x))

    loss()
    dx = layer.backward(r)
    assert relative_error(dx, numerical_gradient(loss, x, eps)) < FD_TOL
    for name, p in layer.params.items():
        layer.forward(x)
        layer.backward(r)
        analytic = layer.grads[name].copy()
        assert relative_error(analytic, numerical_gradient(loss, p, eps)) < FD_TOL, name


# (N, C_in, H, W), C_out, kernel_size, stride, padding: ints and pairs, non-square kernels,
# strides that skip input rows, batch of one.
CONV_CASES = [
    ((2, 3, 7, 6), 4, 3, 1, 0),
    ((2, 3, 7, 6), 4, 3, 1, 1),
    ((3, 2, 9, 8), 5, 3, 2, 1),
    ((1, 1, 5, 5), 1, 5, 1, 0),
    ((1, 3, 8, 7), 2, (2, 3), (2, 1), (1, 0)),
    ((2, 4, 6, 9), 3, (3, 1), 1, (0, 2)),
    ((2, 2, 10, 7), 3, (1, 4), (3, 2), 2),
    ((4, 3, 5, 5), 6, 2, 3, 0),
    ((1, 2, 3, 3), 2, (4, 2), 1, (1, 0)),
    # stride 1 with the input's size kept: dx by whole-image shifts, not col2im
    ((2, 2, 5, 4), 3, (3, 5), 1, (1, 2)),
    ((2, 3, 1, 1), 2, 3, 1, 1),  # a 1x1 image: every offset but the centre reads padding
    ((1, 2, 2, 3), 2, (5, 3), 1, (2, 1)),  # padding wider than the image
]


@pytest.mark.parametrize("x_shape, c_out, kernel, stride, padding", CONV_CASES)
def test_conv2d_matches_torch_forward_and_backward(rng, x_shape, c_out, kernel, stride, padding):
    layer = Conv2D(x_shape[1], c_out, kernel, stride, padding, bias_init=RandomNormal(0, 1), rng=1)
    x = rng.standard_normal(x_shape)
    xt, wt, bt = t64(x), t64(layer.params["W"]), t64(layer.params["b"])
    yt = F.conv2d(xt, wt, bt, stride=stride, padding=padding)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    y = layer.forward(x)
    assert y.shape == tuple(yt.shape) == layer.output_shape(x_shape)
    assert relative_error(y, yt.detach().numpy()) < TORCH_TOL
    dx = layer.backward(g)
    assert relative_error(dx, xt.grad.numpy()) < TORCH_TOL
    assert relative_error(layer.grads["W"], wt.grad.numpy()) < TORCH_TOL
    assert relative_error(layer.grads["b"], bt.grad.numpy()) < TORCH_TOL


def test_conv2d_ints_equal_pairs_and_torch_layout(rng):
    a = Conv2D(3, 4, 3, 2, 1, rng=5)
    b = Conv2D(3, 4, (3, 3), (2, 2), (1, 1), rng=5)
    assert a.kernel_size == b.kernel_size == (3, 3) and a.stride == (2, 2) and a.padding == (1, 1)
    assert a.params["W"].shape == (4, 3, 3, 3) and a.params["b"].shape == (4,)
    np.testing.assert_array_equal(a.params["W"], b.params["W"])
    x = rng.standard_normal((2, 3, 6, 6))
    np.testing.assert_array_equal(a(x), b(x))


def test_conv2d_default_init_is_he_normal_with_torch_fan_in():
    layer = Conv2D(8, 64, (3, 5), rng=0)
    fan_in = 8 * 3 * 5  # as torch: in_channels * kh * kw
    std = np.sqrt(2 / fan_in)
    assert np.all(layer.params["b"] == 0)
    assert abs(layer.params["W"].std() - std) < 4 * std / np.sqrt(layer.params["W"].size)
    seen = []

    class Spy(Constant):
        def __call__(self, shape, rng=None, dtype=np.float64):
            seen.append(tuple(shape))
            return super().__call__(shape, rng, dtype)

    Conv2D(2, 3, (4, 5), weight_init=Spy(0.5))
    assert seen == [(4, 5, 2, 3)]  # (kh, kw, in, out): compute_fans' conv layout


@pytest.mark.parametrize("x_shape, c_out, kernel, stride, padding", CONV_CASES[:6])
def test_conv2d_gradcheck(rng, x_shape, c_out, kernel, stride, padding):
    layer = Conv2D(x_shape[1], c_out, kernel, stride, padding, bias_init=RandomNormal(0, 1), rng=2)
    # L is linear in x, W and b: the central difference has no truncation error, and a
    # larger step keeps the round-off of the ~100-term sum small.
    check_layer_gradients(layer, rng.standard_normal(x_shape), rng, eps=1e-3)


def test_conv2d_float32_stays_float32(rng):
    layer = Conv2D(3, 4, (3, 2), 2, 1, rng=0, dtype=np.float32)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    y = layer(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dx.dtype == np.float32
    assert all(a.dtype == np.float32 for a in (*layer.params.values(), *layer.grads.values()))
    ref = F.conv2d(torch.tensor(x), torch.tensor(layer.params["W"]), stride=2, padding=1)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_conv2d_casts_float32_input_to_its_dtype(rng):
    layer = Conv2D(2, 3, 2, rng=0)
    x32 = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    y = layer(x32)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, layer(x32.astype(np.float64)))


def test_conv2d_grads_are_same_objects_overwritten_and_need_input_grad(rng):
    layer = Conv2D(2, 3, 3, padding=1, rng=0)
    grad_w, grad_b = layer.grads["W"], layer.grads["b"]
    x, g = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((2, 3, 5, 5))
    layer(x)
    dx = layer.backward(g)
    first_w, first_b = grad_w.copy(), grad_b.copy()
    layer(x)
    assert layer.backward(g, need_input_grad=False) is None
    assert layer.grads["W"] is grad_w and layer.grads["b"] is grad_b
    np.testing.assert_array_equal(grad_w, first_w)  # not 2 * first: overwritten
    np.testing.assert_array_equal(grad_b, first_b)
    np.testing.assert_array_equal(layer.backward(g), dx)


def test_conv2d_output_shape_repr_num_params():
    layer = Conv2D(3, 16, (3, 5), stride=2, padding=(1, 2))
    assert layer.output_shape((None, 3, 32, 31)) == (None, 16, 16, 16)
    assert repr(layer) == (
        "Conv2D(in_channels=3, out_channels=16, kernel_size=(3, 5), stride=(2, 2), "
        "padding=(1, 2))"
    )
    assert layer.num_params() == 16 * 3 * 3 * 5 + 16
    assert isinstance(layer, Layer)


# ------------------------------------------------------------------ errors
def test_conv2d_wrong_ndim_and_channels_name_the_layer():
    layer = Conv2D(3, 4, 3)
    msg = r"Conv2D\(in_channels=3, .*\): expected input of shape \(N, 3, H, W\)\. Received: "
    with pytest.raises(ShapeError, match=msg + r"shape=\(3, 8, 8\)\."):
        layer(np.ones((3, 8, 8)))  # a single image without its batch axis
    with pytest.raises(ShapeError, match=msg + r"shape=\(2, 8, 8, 3\)\."):
        layer(np.ones((2, 8, 8, 3)))  # NHWC instead of NCHW
    with pytest.raises(ShapeError, match=r"expected input of shape \(N, 3, H, W\)"):
        layer.output_shape((None, 1, 8, 8))


def test_conv2d_kernel_larger_than_padded_input():
    msg = (
        r"Conv2D\(.*\): expected the padded input \(H \+ 2\*padding, W \+ 2\*padding\) = "
        r"\(4, 8\) to be at least the kernel size \(5, 5\)\. Received: shape=\(1, 1, 2, 6\)\."
    )
    with pytest.raises(ShapeError, match=msg):
        Conv2D(1, 1, 5, padding=1)(np.ones((1, 1, 2, 6)))
    Conv2D(1, 1, 5, padding=2)(np.ones((1, 1, 1, 1)))  # exactly fits: a 1x1 output


@pytest.mark.parametrize("stride", [0, -1, (1, 0), (2, -2), 1.5, (1, 2, 3), True])
def test_non_positive_or_malformed_stride(stride):
    msg = r"expected stride to be a positive integer or a pair of positive integers\. Received:"
    with pytest.raises(ValueError, match="Conv2D: " + msg):
        Conv2D(1, 1, 3, stride=stride)
    with pytest.raises(ValueError, match="MaxPool2D: " + msg):
        MaxPool2D(2, stride=stride)
    with pytest.raises(ValueError, match="AvgPool2D: " + msg):
        AvgPool2D(2, stride=stride)
    with pytest.raises(ValueError, match="im2col: " + msg):
        im2col(np.ones((1, 1, 4, 4)), 2, 2, stride=stride)


def test_conv2d_bad_constructor_arguments():
    with pytest.raises(ValueError, match=r"Conv2D: expected in_channels .* Received: 0"):
        Conv2D(0, 1, 3)
    with pytest.raises(ValueError, match=r"expected kernel_size to be a positive .*\(3, 0\)"):
        Conv2D(1, 1, (3, 0))
    with pytest.raises(ValueError, match=r"expected padding to be a non-negative .*=-1"):
        Conv2D(1, 1, 3, padding=-1)
    with pytest.raises(TypeError, match="floating dtype"):
        Conv2D(1, 1, 3, dtype=np.int32)
    with pytest.raises(ValueError, match=r"initializer for W must return shape \(3, 3, 1, 2\)"):
        Conv2D(1, 2, 3, weight_init=lambda shape, rng=None, dtype=None: np.ones((2, 1, 3, 3)))


@pytest.mark.parametrize(
    "layer", [Conv2D(1, 1, 2), MaxPool2D(2), AvgPool2D(2), GlobalAvgPool2D()], ids=repr
)
def test_integer_input_is_rejected(layer):
    with pytest.raises(TypeError, match=r"\(.*\): expected a floating-point input.*dtype=int64"):
        layer(np.ones((1, 1, 4, 4), dtype=np.int64))


def test_im2col_col2im_errors():
    with pytest.raises(TypeError, match=r"im2col: expected a floating-point input.*dtype=int32"):
        im2col(np.ones((1, 1, 4, 4), dtype=np.int32), 2, 2)
    with pytest.raises(ShapeError, match=r"im2col: expected input of shape \(N, C, H, W\)"):
        im2col(np.ones((4, 4)), 2, 2)
    with pytest.raises(ShapeError, match=r"im2col: expected the padded input .*\(4, 4\) to be "):
        im2col(np.ones((1, 1, 4, 4)), 5, 1)
    with pytest.raises(ShapeError, match=r"col2im: expected cols of shape .* = \(1, 4, 9\).*"
                       r"Received: shape=\(1, 9, 4\)"):
        col2im(np.ones((1, 9, 4)), (1, 1, 4, 4), 2, 2)


@pytest.mark.parametrize("cls", [MaxPool2D, AvgPool2D])
def test_pool_errors(cls):
    name = cls.__name__
    with pytest.raises(ShapeError, match=rf"{name}\(kernel_size=\(2, 2\).*\): expected input of "
                       r"shape \(N, C, H, W\)\. Received: shape=\(4, 4\)\."):
        cls(2)(np.ones((4, 4)))
    with pytest.raises(ShapeError, match=r"at least the kernel size \(3, 3\)\. Received: "):
        cls(3)(np.ones((1, 1, 2, 2)))
    with pytest.raises(ValueError, match=rf"{name}: expected padding to be at most half"):
        cls(2, padding=2)
    with pytest.raises(NotReadyError, match="forward"):
        cls(2).backward(np.ones((1, 1, 1, 1)))
    pool = cls(2)
    pool(np.ones((1, 2, 4, 4)))
    with pytest.raises(ShapeError, match=r"grad_output of shape \(1, 2, 2, 2\).*\(1, 2, 2\)"):
        pool.backward(np.ones((1, 2, 2)))


def test_conv2d_backward_errors(rng):
    layer = Conv2D(2, 3, 3)
    with pytest.raises(NotReadyError, match="forward"):
        layer.backward(np.ones((1, 3, 1, 1)))
    layer(rng.standard_normal((2, 2, 5, 5)))
    with pytest.raises(
        ShapeError, match=r"grad_output of shape \(2, 3, 3, 3\).*Received: shape=\(1, 3, 3, 3\)"
    ):
        layer.backward(np.ones((1, 3, 3, 3)))  # would broadcast silently otherwise


def test_global_avg_pool_errors():
    with pytest.raises(ShapeError, match=r"GlobalAvgPool2D\(\): expected input of shape "
                       r"\(N, C, H, W\)\. Received: shape=\(2, 3\)\."):
        GlobalAvgPool2D()(np.ones((2, 3)))
    with pytest.raises(NotReadyError):
        GlobalAvgPool2D().backward(np.ones((2, 3)))


# --------------------------------------------------------------- im2col / col2im
IM2COL_CASES = [((2, 3, 5, 6), 3, 3, 1, 0), ((1, 2, 7, 5), 2, 3, (2, 1), (1, 2)),
                ((3, 1, 6, 6), 4, 1, 3, 1), ((2, 2, 4, 4), 1, 1, 1, 0)]


@pytest.mark.parametrize("x_shape, kh, kw, stride, padding", IM2COL_CASES)
def test_im2col_equals_torch_unfold_and_col2im_equals_fold(rng, x_shape, kh, kw, stride, padding):
    x = rng.standard_normal(x_shape)
    cols = im2col(x, kh, kw, stride, padding)
    ref = F.unfold(torch.tensor(x), (kh, kw), padding=padding, stride=stride).numpy()
    np.testing.assert_array_equal(cols, ref)
    c = rng.standard_normal(cols.shape)
    folded = F.fold(torch.tensor(c), x_shape[2:], (kh, kw), padding=padding, stride=stride)
    assert relative_error(col2im(c, x_shape, kh, kw, stride, padding), folded.numpy()) < 1e-12


@pytest.mark.parametrize("x_shape, kh, kw, stride, padding", IM2COL_CASES)
def test_im2col_col2im_adjoint(rng, x_shape, kh, kw, stride, padding):
    x = rng.standard_normal(x_shape)
    cols = im2col(x, kh, kw, stride, padding)
    c = rng.standard_normal(cols.shape)
    lhs, rhs = np.vdot(cols, c), np.vdot(x, col2im(c, x_shape, kh, kw, stride, padding))
    assert abs(lhs - rhs) <= 1e-12 * (np.abs(cols).sum() * np.abs(c).max())


def test_col2im_adds_overlapping_windows():
    # A 3x3 kernel, stride 1, no padding, on a 4x4 image: each pixel is counted once per
    # window that covers it (a col2im that overwrites would give 1 everywhere).
    counts = col2im(np.ones((1, 9, 4)), (1, 1, 4, 4), 3, 3)
    np.testing.assert_array_equal(
        counts[0, 0], [[1, 2, 2, 1], [2, 4, 4, 2], [2, 4, 4, 2], [1, 2, 2, 1]]
    )


def test_im2col_layout_matches_weight_order():
    x = np.arange(2 * 3 * 3, dtype=np.float64).reshape(1, 2, 3, 3)
    cols = im2col(x, 2, 2)
    assert cols.shape == (1, 2 * 2 * 2, 4)
    # column 0 = the window under output pixel (0, 0), in (c, i, j) order
    np.testing.assert_array_equal(cols[0, :, 0], [0, 1, 3, 4, 9, 10, 12, 13])
    np.testing.assert_array_equal(cols[0, 0], [0, 1, 3, 4])  # (c=0, i=0, j=0) across pixels


# ------------------------------------------------------------------ pooling
POOL_CASES = [
    ((2, 3, 6, 6), 2, None, 0),
    ((1, 2, 7, 5), 3, 2, 1),
    ((2, 1, 8, 9), (2, 3), (1, 2), (1, 1)),
    ((3, 2, 5, 5), 3, 1, 0),  # overlapping windows: gradients add up
    ((1, 1, 4, 6), (4, 2), None, (2, 0)),
]


@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES)
@pytest.mark.parametrize(
    "cls, fn", [(MaxPool2D, F.max_pool2d), (AvgPool2D, F.avg_pool2d)], ids=["max", "avg"]
)
def test_pool_matches_torch(rng, cls, fn, x_shape, kernel, stride, padding):
    layer = cls(kernel, stride, padding)
    x = rng.standard_normal(x_shape)
    xt = t64(x)
    yt = fn(xt, kernel, stride, padding)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    y = layer(x)
    assert y.shape == tuple(yt.shape) == layer.output_shape(x_shape)
    assert relative_error(y, yt.detach().numpy()) < TORCH_TOL
    assert relative_error(layer.backward(g), xt.grad.numpy()) < TORCH_TOL


@pytest.mark.parametrize("x_shape, kernel, stride, padding", POOL_CASES)
def test_maxpool_ties_route_to_the_first_maximum_like_torch(rng, x_shape, kernel, stride, padding):
    x = rng.integers(-1, 2, size=x_shape).astype(np.float64)  # values in {-1, 0, 1}: many ties
    x[0, 0] = 0.0  # a whole channel of ties
    xt = t64(x)
    yt = F.max_pool2d(xt, kernel, stride, padding)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    layer = MaxPool2D(kernel, stride, padding)
    np.testing.assert_array_equal(layer(x), yt.detach().numpy())
    assert relative_error(layer.backward(g), xt.grad.numpy()) < TORCH_TOL


def test_maxpool_tie_gradient_goes_to_one_position():
    layer = MaxPool2D(2)
    x = np.array([[[[1.0, 3.0, 5.0, 5.0], [3.0, 2.0, 5.0, 5.0]]]])
    np.testing.assert_array_equal(layer(x), [[[[3.0, 5.0]]]])
    dx = layer.backward(np.array([[[[10.0, 20.0]]]]))
    # first maximum in row-major window order, not copied to every maximum
    np.testing.assert_array_equal(dx, [[[[0.0, 10.0, 20.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])


def test_maxpool_padding_counts_as_minus_infinity():
    x = -np.ones((1, 1, 2, 2))
    y = MaxPool2D(2, stride=1, padding=1)(x)
    np.testing.assert_array_equal(y, -np.ones((1, 1, 3, 3)))  # zero padding would give 0


def test_avgpool_padding_counts_in_the_average():
    y = AvgPool2D(2, stride=1, padding=1)(np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(y[0, 0], [[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]])


def test_global_avg_pool_matches_torch(rng):
    x = rng.standard_normal((3, 4, 5, 2))
    xt = t64(x)
    yt = F.adaptive_avg_pool2d(xt, 1).flatten(1)
    g = rng.standard_normal((3, 4))
    yt.backward(torch.tensor(g))
    layer = GlobalAvgPool2D()
    y = layer(x)
    assert y.shape == layer.output_shape(x.shape) == (3, 4)
    assert relative_error(y, yt.detach().numpy()) < TORCH_TOL
    assert relative_error(layer.backward(g), xt.grad.numpy()) < TORCH_TOL
    assert layer.output_shape((None, 4, 5, 2)) == (None, 4)


@pytest.mark.parametrize(
    "layer",
    [MaxPool2D(2), MaxPool2D(3, 2, 1), AvgPool2D((2, 3), 1, (1, 0)), GlobalAvgPool2D()],
    ids=repr,
)
def test_pool_gradcheck(rng, layer):
    check_layer_gradients(layer, rng.standard_normal((2, 3, 6, 7)), rng)


@pytest.mark.parametrize("layer", [MaxPool2D(2), AvgPool2D(3, 2, 1), GlobalAvgPool2D()], ids=repr)
def test_pool_float32_stays_float32(rng, layer):
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    y = layer(x)
    dx = layer.backward(np.ones(y.shape, dtype=np.float64))
    assert y.dtype == dx.dtype == np.float32


def test_pool_repr_and_default_stride():
    assert repr(MaxPool2D(2)) == "MaxPool2D(kernel_size=(2, 2), stride=(2, 2), padding=(0, 0))"
    assert AvgPool2D((3, 2)).stride == (3, 2)
    assert MaxPool2D(3, 1).output_shape((None, 5, 7, 7)) == (None, 5, 5, 5)
    assert MaxPool2D(2).params == {} and GlobalAvgPool2D().num_params() == 0


# ------------------------------------------------------------- in a network
def test_small_cnn_in_sequential_matches_torch(rng):
    conv = Conv2D(1, 4, 3, padding=1, bias_init=RandomNormal(0, 0.1), rng=0)
    dense = Dense(4 * 4 * 4, 3, rng=1)
    model = Sequential([conv, ReLU(), MaxPool2D(2), Flatten(), dense])
    x, y = rng.standard_normal((5, 1, 8, 8)), rng.integers(0, 3, 5)
    loss = SoftmaxCrossEntropy()
    value = loss.forward(model.forward(x), y)
    model.backward(loss.backward(), need_input_grad=False)

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(64, 3))
    net = net.double()
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(conv.params["W"]))
        net[0].bias.copy_(torch.tensor(conv.params["b"]))
        net[4].weight.copy_(torch.tensor(dense.params["W"].T))
        net[4].bias.copy_(torch.tensor(dense.params["b"]))
    ref = F.cross_entropy(net(torch.tensor(x)), torch.tensor(y))
    ref.backward()
    assert abs(value - ref.item()) < 1e-12
    assert relative_error(conv.grads["W"], net[0].weight.grad.numpy()) < TORCH_TOL
    assert relative_error(conv.grads["b"], net[0].bias.grad.numpy()) < TORCH_TOL
    table = model.summary((1, 8, 8))
    assert "(None, 4, 8, 8)" in table and "(None, 4, 4, 4)" in table and "(None, 3)" in table


# ---------------------------------------------------------------- hypothesis
@st.composite
def conv_geometry(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 9))
    w = draw(st.integers(max(1, kw - 2 * pw), 9))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    return (draw(st.integers(1, 3)), draw(st.integers(1, 3)), h, w), (kh, kw), stride, (ph, pw)


@settings(max_examples=40, deadline=None)
@given(geometry=conv_geometry(), c_out=st.integers(1, 3), f32=st.booleans())
def test_conv2d_shapes_property(geometry, c_out, f32):
    x_shape, kernel, stride, padding = geometry
    dtype = np.float32 if f32 else np.float64
    layer = Conv2D(x_shape[1], c_out, kernel, stride, padding, rng=0, dtype=dtype)
    y = layer(np.ones(x_shape, dtype=dtype))
    oh = (x_shape[2] + 2 * padding[0] - kernel[0]) // stride[0] + 1
    ow = (x_shape[3] + 2 * padding[1] - kernel[1]) // stride[1] + 1
    assert y.shape == layer.output_shape(x_shape) == (x_shape[0], c_out, oh, ow)
    dx = layer.backward(np.ones_like(y))
    assert dx.shape == x_shape and y.dtype == dx.dtype == dtype


@settings(max_examples=40, deadline=None)
@given(geometry=conv_geometry(), seed=st.integers(0, 2**32 - 1))
def test_im2col_adjoint_and_unfold_property(geometry, seed):
    x_shape, (kh, kw), stride, padding = geometry
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape)
    cols = im2col(x, kh, kw, stride, padding)
    np.testing.assert_array_equal(
        cols, F.unfold(torch.tensor(x), (kh, kw), padding=padding, stride=stride).numpy()
    )
    c = rng.standard_normal(cols.shape)
    lhs, rhs = np.vdot(cols, c), np.vdot(x, col2im(c, x_shape, kh, kw, stride, padding))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, np.abs(cols).sum() * np.abs(c).max())


@settings(max_examples=40, deadline=None)
@given(geometry=conv_geometry(), seed=st.integers(0, 2**32 - 1), ties=st.booleans())
def test_pools_match_torch_property(geometry, seed, ties):
    x_shape, kernel, stride, padding = geometry
    padding = tuple(min(p, k // 2) for p, k in zip(padding, kernel, strict=True))  # torch's limit
    if any(s + 2 * p < k for s, p, k in zip(x_shape[2:], padding, kernel, strict=True)):
        padding = (kernel[0] // 2, kernel[1] // 2)
    x_shape = tuple(max(s, k) for s, k in zip(x_shape, (1, 1, *kernel), strict=True))
    rng = np.random.default_rng(seed)
    x = rng.integers(-1, 2, x_shape).astype(np.float64) if ties else rng.standard_normal(x_shape)
    for layer, fn in ((MaxPool2D(kernel, stride, padding), F.max_pool2d),
                      (AvgPool2D(kernel, stride, padding), F.avg_pool2d)):
        xt = t64(x)
        yt = fn(xt, kernel, stride, padding)
        g = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(g))
        assert relative_error(layer(x), yt.detach().numpy()) < TORCH_TOL
        assert relative_error(layer.backward(g), xt.grad.numpy()) < TORCH_TOL


@st.composite
def same_size_geometry(draw):
    """Stride 1, odd kernels, padding (k - 1) / 2: the output keeps the input's size."""
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    x_shape = (draw(st.integers(1, 3)), draw(st.integers(1, 3)),
               draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    return x_shape, (2 * ph + 1, 2 * pw + 1), (ph, pw)


@settings(max_examples=40, deadline=None)
@given(geometry=same_size_geometry(), c_out=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_same_size_input_gradient_equals_col2im_and_torch(geometry, c_out, seed):
    x_shape, kernel, padding = geometry
    rng = np.random.default_rng(seed)
    layer = Conv2D(x_shape[1], c_out, kernel, 1, padding, rng=seed)
    x = rng.standard_normal(x_shape)
    g = rng.standard_normal(layer.output_shape(x_shape))
    assert layer.forward(x).shape == g.shape and g.shape[2:] == x_shape[2:]
    dx = layer.backward(g)
    w2 = layer.params["W"].reshape(c_out, -1)
    by_col2im = col2im(np.matmul(w2.T, g.reshape(len(g), c_out, -1)), x_shape, *kernel, 1, padding)
    assert np.allclose(dx, by_col2im, rtol=1e-12, atol=1e-12)
    xt = t64(x)
    F.conv2d(xt, t64(layer.params["W"], grad=False), padding=padding).backward(torch.tensor(g))
    assert relative_error(dx, xt.grad.numpy()) < TORCH_TOL
