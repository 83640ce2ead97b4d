"""Convolution and pooling on NCHW images, as ``torch.nn.Conv2d`` and friends.

Shapes follow PyTorch: images are ``(N, C, H, W)`` and a kernel window is
``(kh, kw)``. With padding ``(ph, pw)`` and stride ``(sh, sw)`` the output is

    OH = (H + 2 ph - kh) // sh + 1,    OW = (W + 2 pw - kw) // sw + 1.

Everything is computed on whole batches: `im2col` copies every receptive field
into a column through a strided view (no Python loop over images or output
pixels), a convolution is then one matrix product per image, and `col2im`
scatters columns back, looping only over the ``kh * kw`` kernel offsets.
"""

from __future__ import annotations

import numpy as np

from npdl.core import Layer, ShapeError, float_array, require_cache
from npdl.initializers import HeNormal, Initializer, Zeros
from npdl.layers import _float_dtype, _grad_like, _positive_int

__all__ = ["im2col", "col2im", "Conv2D", "MaxPool2D", "AvgPool2D", "GlobalAvgPool2D"]


# ------------------------------------------------------------------ helpers
def _pair(value, who: str, name: str, minimum: int) -> tuple[int, int]:
    """An int or a pair of ints, each >= ``minimum``, as a pair (torch's ``_pair``)."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    ok = len(pair) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= minimum for v in pair
    )
    if not ok:
        kind = "positive" if minimum == 1 else "non-negative"
        raise ValueError(
            f"{who}: expected {name} to be a {kind} integer or a pair of {kind} integers. "
            f"Received: {name}={value!r}."
        )
    return int(pair[0]), int(pair[1])


def _output_hw(shape: tuple, kernel, stride, padding, who: str) -> tuple[int, int]:
    """``(OH, OW)`` for an input of ``shape`` (N, C, H, W); the kernel must fit the padded input."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = shape[-2:], kernel, stride, padding
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ShapeError(
            f"{who}: expected the padded input (H + 2*padding, W + 2*padding) = "
            f"({h + 2 * ph}, {w + 2 * pw}) to be at least the kernel size ({kh}, {kw}). "
            f"Received: shape={tuple(shape)}."
        )
    return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1


def _check_image(x, who: str, channels=None, dtype=None) -> np.ndarray:
    """A float (N, C, H, W) array, with C == ``channels`` when given."""
    x = float_array(x, who, dtype=dtype)
    c = "C" if channels is None else channels
    if x.ndim != 4 or (channels is not None and x.shape[1] != channels):
        raise ShapeError(
            f"{who}: expected input of shape (N, {c}, H, W). Received: shape={x.shape}."
        )
    return x


def _windows(x, kernel, stride, padding, fill: float) -> np.ndarray:
    """Read-only view (N, C, kh, kw, OH, OW) of ``x`` padded with ``fill``:
    ``view[n, c, i, j, p, q] = xpad[n, c, p*sh + i, q*sw + j]``."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = (x.shape[2] + 2 * ph - kh) // sh + 1, (x.shape[3] + 2 * pw - kw) // sw + 1
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    sn, sc, s_h, s_w = x.strides
    return np.lib.stride_tricks.as_strided(
        x, shape=(x.shape[0], x.shape[1], kh, kw, oh, ow),
        strides=(sn, sc, s_h, s_w, s_h * sh, s_w * sw), writeable=False,
    )


# ------------------------------------------------------------ im2col / col2im
def im2col(x, kh, kw, stride=1, padding=0) -> np.ndarray:
    """Unfold every receptive field of a zero-padded batch into a column.

    Shapes: x (N, C, H, W) -> cols (N, C*kh*kw, OH*OW), with
    ``cols[n, (c*kh + i)*kw + j, p*OW + q] = xpad[n, c, p*sh + i, q*sw + j]``.
    Column ``p*OW + q`` of ``cols[n]`` is the window under output pixel (p, q),
    flattened in the (c, i, j) order of a weight ``W[o]`` of shape (C, kh, kw), so a
    convolution is ``W.reshape(O, -1) @ cols[n]``. ``stride`` and ``padding`` are
    ints or pairs (torch's ``unfold`` gives the same array, as (N, C*kh*kw, L)).
    """
    x = _check_image(x, "im2col")
    kernel = _positive_int(kh, "im2col", "kh"), _positive_int(kw, "im2col", "kw")
    stride, padding = _pair(stride, "im2col", "stride", 1), _pair(padding, "im2col", "padding", 0)
    _output_hw(x.shape, kernel, stride, padding, "im2col")
    view = _windows(x, kernel, stride, padding, fill=0.0)
    n, c, _, _, oh, ow = view.shape
    return view.reshape(n, c * kernel[0] * kernel[1], oh * ow)  # the one copy


def _im2col_with_ones(x, kernel, stride, padding) -> np.ndarray:
    """``im2col(x)`` with a row of ones under each image's columns: (N, C*kh*kw + 1, OH*OW).

    The bias is then the weight of a constant input (the "bias trick"), so Conv2D's forward
    is ONE matmul ``[W | b] @ cols`` and its backward gets ``[dW | db]`` from another, with no
    extra passes over the output or the gradient to add or sum the bias.
    """
    view = _windows(x, kernel, stride, padding, fill=0.0)  # (N, C, kh, kw, OH, OW)
    n, c, kh, kw, oh, ow = view.shape
    cols = np.empty((n, c * kh * kw + 1, oh * ow), dtype=x.dtype)
    cols[:, -1] = 1.0
    window_rows = cols[:, :-1].reshape(view.shape)  # a view: it only splits contiguous axes
    np.copyto(window_rows, view)  # the one copy
    return cols


def _inside(offset: int, pad: int, stride: int, size: int, out: int) -> tuple[slice, slice]:
    """Along one axis, for kernel offset ``offset``: the output positions ``p`` whose input
    index ``p*stride + offset - pad`` lies inside ``[0, size)`` (the others read padding), as
    a slice of the input and the matching slice of the output (both empty if there are none)."""
    first = max(0, -((offset - pad) // stride))  # ceil((pad - offset) / stride), at least 0
    last = max(first, min(out, (size - 1 + pad - offset) // stride + 1))
    start = first * stride + offset - pad
    return slice(start, start + (last - first) * stride, stride), slice(first, last)


def col2im(cols, x_shape, kh, kw, stride=1, padding=0) -> np.ndarray:
    """Fold columns back into images, ADDING the values that land on the same pixel.

    Shapes: cols (N, C*kh*kw, OH*OW) -> dx (N, C, H, W) with ``x_shape = (N, C, H, W)``:
    ``dx[n, c, h, w] = sum of cols[n, (c*kh + i)*kw + j, p*OW + q]`` over every (i, j, p, q)
    with ``p*sh + i - ph = h`` and ``q*sw + j - pw = w``. This is the adjoint of `im2col`
    (``<im2col(x), cols> = <x, col2im(cols)>``), hence the backward of the unfolding.
    Loops over the kh*kw kernel offsets only: offset (i, j) adds the slice ``cols[:, :, i, j]``
    into the pixels it was copied from, rows ``p*sh + i - ph`` and columns ``q*sw + j - pw``,
    leaving out the entries that were copied from the padding (no pixel receives them).
    """
    cols = float_array(cols, "col2im", what="cols")
    (n, c, h, w), (kh, kw) = tuple(int(d) for d in x_shape), (int(kh), int(kw))
    stride, padding = _pair(stride, "col2im", "stride", 1), _pair(padding, "col2im", "padding", 0)
    (sh, sw), (ph, pw) = stride, padding
    oh, ow = _output_hw((n, c, h, w), (kh, kw), stride, padding, "col2im")
    if cols.shape != (n, c * kh * kw, oh * ow):
        raise ShapeError(
            f"col2im: expected cols of shape (N, C*kh*kw, OH*OW) = {(n, c * kh * kw, oh * ow)} "
            f"for x_shape={(n, c, h, w)}. Received: shape={cols.shape}."
        )
    # Images and channels share one axis: fewer, longer loops inside each NumPy addition.
    cols = cols.reshape(n * c, kh, kw, oh, ow)
    dx = np.zeros((n * c, h, w), dtype=cols.dtype)
    for i in range(kh):
        rows, p = _inside(i, ph, sh, h, oh)  # input rows hit by kernel row i, and from where
        for j in range(kw):
            columns, q = _inside(j, pw, sw, w, ow)
            dx[:, rows, columns] += cols[:, i, j, p, q]
    return dx.reshape(n, c, h, w)


def _same_size_input_grad(weight, g, x_shape, padding) -> np.ndarray:
    """dx of a stride-1 convolution whose output keeps the input's size (odd kernel, padding
    ``(k - 1) / 2``): the numbers of ``col2im(W^T g)``, computed faster.

    Shapes: weight (C_out, C, kh, kw), g (N, C_out, H*W) -> dx ``x_shape`` = (N, C, H, W).
    With W's columns in (i, j, c) order, ``W^T g`` holds the C planes of each kernel offset
    as one contiguous block per image. Offset (i, j) moves a value ``i - ph`` rows and
    ``j - pw`` columns: in a row-major image that is ONE flat shift ``(i - ph)*W + (j - pw)``,
    so each offset is a single long addition instead of N*C*H short rows (which NumPy runs
    several times slower). Values read from the padding would wrap into a neighbouring row
    or channel, so they are zeroed first.
    """
    n, c, h, w = x_shape
    c_out, _, kh, kw = weight.shape
    ph, pw = padding
    by_offset = weight.transpose(0, 2, 3, 1).reshape(c_out, kh * kw * c)  # columns (i, j, c)
    dcols = np.matmul(by_offset.T, g).reshape(n, kh, kw, c, h, w)
    for i in range(kh):  # outside the rows `_inside` keeps, kernel row i read padding
        _, inside = _inside(i, ph, 1, h, h)
        dcols[:, i, :, :, : inside.start, :] = dcols[:, i, :, :, inside.stop :, :] = 0.0
    for j in range(kw):
        _, inside = _inside(j, pw, 1, w, w)
        dcols[:, :, j, :, :, : inside.start] = dcols[:, :, j, :, :, inside.stop :] = 0.0
    planes, size = dcols.reshape(n, kh, kw, c * h * w), c * h * w
    dx = planes[:, ph, pw].copy()  # the centre offset does not move
    for i in range(kh):
        for j in range(kw):
            shift = (i - ph) * w + (j - pw)
            low, high = max(0, -shift), min(size, size - shift)
            if (i, j) != (ph, pw) and low < high:
                dx[:, low + shift : high + shift] += planes[:, i, j, low:high]
    return dx.reshape(x_shape)


# ---------------------------------------------------------------------- Conv2D
class Conv2D(Layer):
    """2-D convolution (a cross-correlation, as in every DL library), ``torch.nn.Conv2d``.

    Shapes: x (N, C_in, H, W) -> y (N, C_out, OH, OW); ``W`` (C_out, C_in, kh, kw),
    ``b`` (C_out,). Forward:
    ``y[n, o, p, q] = b[o] + sum_{c,i,j} W[o, c, i, j] * xpad[n, c, p*sh + i, q*sw + j]``,
    computed as ``y[n] = W.reshape(C_out, -1) @ cols[n] + b`` with ``cols = im2col(x)``
    (as one matmul: ``cols`` carries a row of ones whose weight is ``b``).

    Backward, with ``g = dL/dy`` reshaped (N, C_out, OH*OW):
    ``db = sum_{n,p,q} g``; ``dW = sum_n g[n] @ cols[n]^T`` (the correlation of the input
    with the gradient); ``dx = col2im(W.reshape(C_out, -1)^T @ g)`` (a full convolution of
    g with the flipped kernel; for a stride-1 "same" convolution, by whole-image shifts).
    ``weight_init`` is called with the shape (kh, kw, C_in, C_out), so ``fan_in = C_in*kh*kw``
    as in torch, then transposed.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        weight_init: Initializer = HeNormal(),  # noqa: B008 (initializers are stateless)
        bias_init: Initializer = Zeros(),  # noqa: B008
        rng=None,
        dtype=np.float64,
    ) -> None:
        super().__init__()
        self.in_channels = _positive_int(in_channels, "Conv2D", "in_channels")
        self.out_channels = _positive_int(out_channels, "Conv2D", "out_channels")
        self.kernel_size = _pair(kernel_size, "Conv2D", "kernel_size", 1)
        self.stride = _pair(stride, "Conv2D", "stride", 1)
        self.padding = _pair(padding, "Conv2D", "padding", 0)
        self.dtype = _float_dtype(dtype, repr(self))
        rng = np.random.default_rng(rng)
        (kh, kw), c_in, c_out = self.kernel_size, self.in_channels, self.out_channels
        w = np.asarray(weight_init((kh, kw, c_in, c_out), rng=rng, dtype=self.dtype))
        b = np.asarray(bias_init((c_out,), rng=rng, dtype=self.dtype))
        for name, arr, shape in (("W", w, (kh, kw, c_in, c_out)), ("b", b, (c_out,))):
            if arr.shape != shape or arr.dtype != self.dtype:
                raise ValueError(
                    f"{self!r}: the initializer for {name} must return shape {shape} and dtype "
                    f"{self.dtype}. Received: shape={arr.shape}, dtype={arr.dtype}."
                )
        self.params["W"] = np.ascontiguousarray(w.transpose(3, 2, 0, 1))  # (out, in, kh, kw)
        self.params["b"] = b
        self.grads["W"] = np.zeros_like(self.params["W"])
        self.grads["b"] = np.zeros_like(b)
        self._cache: tuple | None = None  # (x.shape, cols)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (N, C_in, H, W) -> y (N, C_out, OH, OW) = W * x + b (cross-correlation)."""
        x = _check_image(x, repr(self), self.in_channels, self.dtype)
        oh, ow = _output_hw(x.shape, self.kernel_size, self.stride, self.padding, repr(self))
        cols = _im2col_with_ones(x, self.kernel_size, self.stride, self.padding)
        weight_and_bias = np.concatenate(
            [self.params["W"].reshape(self.out_channels, -1), self.params["b"][:, None]], axis=1
        )
        out = np.matmul(weight_and_bias, cols)  # (N, C_out, OH*OW)
        self._cache = (x.shape, cols)
        return out.reshape(x.shape[0], self.out_channels, oh, ow)

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True):
        """g (N, C_out, OH, OW) -> dx (N, C_in, H, W), or None; overwrites dW and db."""
        x_shape, cols = require_cache(self._cache, repr(self))
        n, _, length = cols.shape
        out_shape = self.output_shape(x_shape)
        g = _grad_like(grad_output, out_shape, repr(self), self.dtype)
        g = g.reshape(n, self.out_channels, length)
        grads = np.sum(np.matmul(g, cols.transpose(0, 2, 1)), axis=0)  # [dW | db]
        self.grads["W"][...] = grads[:, :-1].reshape(self.grads["W"].shape)
        self.grads["b"][...] = grads[:, -1]
        if not need_input_grad:
            return None
        if self.stride == (1, 1) and out_shape[2:] == tuple(x_shape[2:]):
            return _same_size_input_grad(self.params["W"], g, x_shape, self.padding)
        dcols = np.matmul(self.params["W"].reshape(self.out_channels, -1).T, g)
        return col2im(dcols, x_shape, *self.kernel_size, self.stride, self.padding)

    def output_shape(self, input_shape: tuple) -> tuple:
        shape = tuple(input_shape)
        if len(shape) != 4 or shape[1] != self.in_channels:
            raise ShapeError(
                f"{self!r}: expected input of shape (N, {self.in_channels}, H, W). "
                f"Received: shape={shape}."
            )
        oh, ow = _output_hw(shape, self.kernel_size, self.stride, self.padding, repr(self))
        return (shape[0], self.out_channels, oh, ow)

    def __repr__(self) -> str:
        return (
            f"Conv2D(in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding})"
        )


# --------------------------------------------------------------------- pooling
class _Pool2D(Layer):
    """Shared set-up of the window poolings: kernel, stride (default: the kernel), padding."""

    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__()
        who = type(self).__name__
        self.kernel_size = _pair(kernel_size, who, "kernel_size", 1)
        self.stride = self.kernel_size if stride is None else _pair(stride, who, "stride", 1)
        self.padding = _pair(padding, who, "padding", 0)
        if any(2 * p > k for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ValueError(
                f"{who}: expected padding to be at most half the kernel size (as torch), so "
                f"that no window is all padding. Received: padding={padding!r}, "
                f"kernel_size={kernel_size!r}."
            )
        self._cache: tuple | None = None

    def _unfold(self, x, fill: float):
        """(N, C, kh*kw, OH*OW) copy of every window of x (padded with ``fill``)."""
        x = _check_image(x, repr(self))
        _output_hw(x.shape, self.kernel_size, self.stride, self.padding, repr(self))
        view = _windows(x, self.kernel_size, self.stride, self.padding, fill)
        n, c, kh, kw, oh, ow = view.shape
        return x, view.reshape(n, c, kh * kw, oh * ow), (oh, ow)

    def _fold(self, dcols, x_shape):
        """col2im of per-channel window gradients (N, C, kh*kw, OH*OW) -> (N, C, H, W)."""
        n, c, h, w = x_shape
        dcols = dcols.reshape(n * c, -1, dcols.shape[-1])
        dx = col2im(dcols, (n * c, 1, h, w), *self.kernel_size, self.stride, self.padding)
        return dx.reshape(x_shape)

    def output_shape(self, input_shape: tuple) -> tuple:
        shape = tuple(input_shape)
        if len(shape) != 4:
            raise ShapeError(
                f"{self!r}: expected input of shape (N, C, H, W). Received: shape={shape}."
            )
        oh, ow = _output_hw(shape, self.kernel_size, self.stride, self.padding, repr(self))
        return (*shape[:2], oh, ow)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(kernel_size={self.kernel_size}, stride={self.stride}, "
            f"padding={self.padding})"
        )


class MaxPool2D(_Pool2D):
    """Max pooling, ``torch.nn.MaxPool2d`` (stride defaults to kernel_size; padding is -inf).

    Shapes: x (N, C, H, W) -> y (N, C, OH, OW),
    ``y[n, c, p, q] = max_{i,j} xpad[n, c, p*sh + i, q*sw + j]``.
    Backward: each ``g[n, c, p, q]`` goes to the ONE input that won its window, the first
    maximum in row-major (i, j) order on ties, as torch; overlapping windows add up.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        x, cols, (oh, ow) = self._unfold(x, fill=-np.inf)
        argmax = np.argmax(cols, axis=2)[:, :, None]  # (N, C, 1, OH*OW): first maximum
        self._cache = (x.shape, x.dtype, cols.shape, argmax)
        return np.take_along_axis(cols, argmax, axis=2).reshape(*x.shape[:2], oh, ow)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """g (N, C, OH, OW) -> dx (N, C, H, W): g routed to each window's argmax."""
        x_shape, dtype, cols_shape, argmax = require_cache(self._cache, repr(self))
        g = _grad_like(grad_output, self.output_shape(x_shape), repr(self), dtype)
        dcols = np.zeros(cols_shape, dtype=g.dtype)
        np.put_along_axis(dcols, argmax, g.reshape(argmax.shape), axis=2)
        return self._fold(dcols, x_shape)


class AvgPool2D(_Pool2D):
    """Average pooling, ``torch.nn.AvgPool2d`` with ``count_include_pad=True``.

    Shapes: x (N, C, H, W) -> y (N, C, OH, OW),
    ``y[n, c, p, q] = (1 / (kh*kw)) sum_{i,j} xpad[n, c, p*sh + i, q*sw + j]`` (zero padding
    counts in the average). Backward: every input of a window receives ``g / (kh*kw)``.
    """

    def forward(self, x: np.ndarray) -> np.ndarray:
        x, cols, (oh, ow) = self._unfold(x, fill=0.0)
        self._cache = (x.shape, x.dtype, cols.shape)
        return cols.mean(axis=2).reshape(*x.shape[:2], oh, ow)

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """g (N, C, OH, OW) -> dx (N, C, H, W): g / (kh*kw) spread over each window."""
        x_shape, dtype, cols_shape = require_cache(self._cache, repr(self))
        g = _grad_like(grad_output, self.output_shape(x_shape), repr(self), dtype)
        share = g.reshape(*cols_shape[:2], 1, cols_shape[3]) / g.dtype.type(cols_shape[2])
        return self._fold(np.broadcast_to(share, cols_shape), x_shape)


class GlobalAvgPool2D(Layer):
    """Mean over the spatial axes: x (N, C, H, W) -> y (N, C), ``y = mean_{h,w} x``.

    Same as ``torch.nn.AdaptiveAvgPool2d(1)`` followed by ``flatten(1)``.
    Backward: ``dx[n, c, h, w] = g[n, c] / (H*W)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._cache: tuple | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _check_image(x, repr(self))
        if x.shape[2] * x.shape[3] == 0:
            raise ShapeError(
                f"{self!r}: expected a non-empty image (H, W >= 1). Received: shape={x.shape}."
            )
        self._cache = (x.shape, x.dtype)
        return x.mean(axis=(2, 3))

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """g (N, C) -> dx (N, C, H, W) = g / (H*W) at every pixel."""
        shape, dtype = require_cache(self._cache, repr(self))
        g = _grad_like(grad_output, shape[:2], repr(self), dtype)
        share = g / g.dtype.type(shape[2] * shape[3])
        return np.repeat(share[:, :, None], shape[2] * shape[3], axis=2).reshape(shape)

    def output_shape(self, input_shape: tuple) -> tuple:
        shape = tuple(input_shape)
        if len(shape) != 4:
            raise ShapeError(
                f"{self!r}: expected input of shape (N, C, H, W). Received: shape={shape}."
            )
        return shape[:2]
