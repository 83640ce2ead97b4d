"""Checks of chapter 9 (convolutions): im2col, col2im, Conv2D and MaxPool2D against `npdl.conv`.

Shapes cover stride 2, padding, non-square kernels and strides given as pairs, a batch of one and
float32. `Conv2D` and `MaxPool2D` run with a correct im2col/col2im swapped in for the student's
(``namespace=globals()``; see `stand_ins.unfolding_stand_ins`), so one bug costs one test.

    check_im2col(im2col)
    check_conv2d(Conv2D, parts=("backward",), namespace=globals())
"""

from __future__ import annotations

import math

import numpy as np

from autograder.checks.compare import (
    CheckFailed,
    check_unchanged,
    compare_arrays,
    construct,
    passed,
    run_student,
    tolerance,
    trusted_array,
)
from autograder.checks.layers import check_layer
from autograder.checks.stand_ins import replaced, unfolding_stand_ins

# (x shape, kernel, stride, padding, label); ints and pairs both occur, as students will pass them
_CASES = [
    ((2, 3, 7, 6), 3, 1, 0, "3x3 kernel"),
    ((2, 2, 8, 7), 3, 2, 1, "stride 2, padding 1"),
    ((3, 2, 6, 9), (2, 3), (1, 2), (1, 0), "non-square kernel, stride (1, 2), padding (1, 0)"),
    ((1, 1, 5, 5), 5, 1, 0, "a batch of one, the kernel as large as the image"),
    ((1, 3, 6, 6), 3, 3, 2, "a batch of one, stride 3, padding 2"),
]


def _pair(value) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _cases():
    for shape, kernel, stride, padding, label in _CASES:
        yield shape, kernel, stride, padding, label, np.float64
    shape, kernel, stride, padding, _ = _CASES[1]
    yield shape, kernel, stride, padding, "float32 input, stride 2, padding 1", np.float32


def _npdl_conv():
    import npdl.conv

    return npdl.conv


def _call(kernel, stride, padding) -> str:
    return f"({_pair(kernel)[0]}, {_pair(kernel)[1]}, stride={stride!r}, padding={padding!r})"


def _shape_mistake(got: tuple, x_shape, kernel, stride, padding) -> str | None:
    """Name the mistake behind a wrong im2col shape, from the shapes of known wrong answers."""
    conv = _npdl_conv()
    (kh, kw), zeros = _pair(kernel), np.zeros(x_shape)
    expected = conv.im2col(zeros, kh, kw, stride, padding).shape
    wrong = [
        ((expected[0], expected[2], expected[1]), "rows and columns are swapped: the result is "
         "(N, C*kh*kw, OH*OW), one column per output pixel"),
        (conv.im2col(zeros, kh, kw, 1, padding).shape, "the stride is ignored: output pixel "
         "(p, q) reads the window at (p*stride, q*stride)"),
        (conv.im2col(zeros, kh, kw, stride, 0).shape, "the padding is ignored: pad x with "
         "zeros on the two spatial axes first"),
    ]
    oh, ow = (x_shape[2] + 2 * _pair(padding)[0] - kh), (x_shape[3] + 2 * _pair(padding)[1] - kw)
    wrong.append(((expected[0], expected[1], (oh // _pair(stride)[0]) * (ow // _pair(stride)[1])),
                  "off by one: OH = (H + 2*padding - kh) // stride + 1"))
    for shape, message in wrong:
        if tuple(got) == tuple(shape) and tuple(shape) != tuple(expected):
            return message
    return None


def _im2col_candidates(x, kernel, stride, padding, expected) -> list:
    """Wrong answers with the right shape: padding on one side, rows in (i, j, c) order."""
    conv, (kh, kw), (ph, pw) = _npdl_conv(), _pair(kernel), _pair(padding)
    n, c, length = x.shape[0], x.shape[1], expected.shape[2]
    order = expected.reshape(n, c, kh * kw, length).transpose(0, 2, 1, 3).reshape(expected.shape)
    out = [("the rows are in (i, j, c) order; use (c, i, j), the order of W[o].reshape(-1)",
            order)]
    sh, sw = _pair(stride)
    if sh > 1 or sw > 1:  # stride ignored: the windows at (p, q) instead of (p*sh, q*sw)
        dense = conv.im2col(x, kh, kw, 1, padding)
        full_h = x.shape[2] + 2 * ph - kh + 1
        grid = dense.reshape(n, dense.shape[1], full_h, -1)
        oh = (full_h - 1) // sh + 1
        ow = length // oh
        out.append(("the stride is ignored: output pixel (p, q) reads the window at "
                    "(p*stride, q*stride)", grid[:, :, :oh, :ow].reshape(expected.shape)))
    if ph or pw:
        one_side = np.pad(x, ((0, 0), (0, 0), (0, 2 * ph), (0, 2 * pw)))
        out.append(("the padding is added on one side only; pad both sides of H and W",
                    conv.im2col(one_side, kh, kw, stride, 0)))
    return out


def check_im2col(student_fn) -> None:
    """im2col on every case, against `npdl.conv.im2col`: values, shape, dtype, x untouched."""
    conv, rng, count = _npdl_conv(), np.random.default_rng(0), 0
    for shape, kernel, stride, padding, label, dtype in _cases():
        x = rng.standard_normal(shape).astype(dtype)
        kh, kw = _pair(kernel)
        expected = conv.im2col(x, kh, kw, stride, padding)
        where = f"im2col{_call(kernel, stride, padding)} on x of shape {shape} ({label})"
        saved = x.copy()
        got = trusted_array(run_student(where, student_fn, x, kh, kw, stride, padding),
                            where=where)
        check_unchanged(x, saved, where, "its input x")
        if got.shape != expected.shape:
            mistake = _shape_mistake(got.shape, shape, kernel, stride, padding)
            raise CheckFailed(f"{where}: expected shape {expected.shape} (N, C*kh*kw, OH*OW). "
                              f"Received: shape={got.shape}."
                              + (f" Likely mistake: {mistake}." if mistake else ""))
        rtol, atol = tolerance(dtype)
        compare_arrays(got, expected, where=where, input_shape=shape, rtol=rtol, atol=atol,
                       context={"dtype": np.dtype(dtype),
                                "candidates": _im2col_candidates(x, kernel, stride, padding,
                                                                 expected)})
        count += 1
    passed(f"im2col matches the reference on {count} cases (stride, padding, non-square "
           "kernels, a batch of one, float32)")


def _col2im_overwriting(cols, x_shape, kernel, stride, padding) -> np.ndarray:
    """The classic bug: '=' instead of '+=' where windows overlap."""
    (n, c, h, w), (kh, kw), (sh, sw), (ph, pw) = x_shape, _pair(kernel), _pair(stride), _pair(
        padding)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    blocks = cols.reshape(n, c, kh, kw, oh, ow)
    xpad = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            xpad[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw] = blocks[:, :, i, j]
    return xpad[:, :, ph : ph + h, pw : pw + w]


def check_col2im(student_fn) -> None:
    """col2im on every case, against `npdl.conv.col2im` (the adjoint of im2col)."""
    conv, rng, count = _npdl_conv(), np.random.default_rng(1), 0
    for shape, kernel, stride, padding, label, dtype in _cases():
        kh, kw = _pair(kernel)
        cols_shape = conv.im2col(np.zeros(shape), kh, kw, stride, padding).shape
        cols = rng.standard_normal(cols_shape).astype(dtype)
        expected = conv.col2im(cols, shape, kh, kw, stride, padding)
        where = (f"col2im(cols of shape {cols_shape}, x_shape={shape}, {kh}, {kw}, "
                 f"stride={stride!r}, padding={padding!r}) ({label})")
        saved = cols.copy()
        got = run_student(where, student_fn, cols, shape, kh, kw, stride, padding)
        check_unchanged(cols, saved, where, "its input cols")
        rtol, atol = tolerance(dtype)
        wrong = [("overlapping windows overwrite each other: add them up (+=), col2im is the "
                  "adjoint of im2col", _col2im_overwriting(cols, shape, kernel, stride, padding))]
        compare_arrays(got, expected, where=where, input_shape=cols_shape, rtol=rtol, atol=atol,
                       context={"dtype": np.dtype(dtype), "candidates": wrong})
        count += 1
    passed(f"col2im matches the reference on {count} cases (overlapping windows, stride, "
           "padding, non-square kernels, a batch of one, float32)")


def _index_maps(shapes, kernel, stride, padding) -> dict[str, np.ndarray]:
    """im2col index maps for every call a layer may make on inputs of ``shapes``."""
    conv, (kh, kw), (ph, pw) = _npdl_conv(), _pair(kernel), _pair(padding)
    maps = {}
    for n, c, h, w in shapes:
        variants = [((n, c, h, w), (ph, pw)), ((n, c, h + 2 * ph, w + 2 * pw), (0, 0)),
                    ((n * c, 1, h, w), (ph, pw)), ((n * c, 1, h + 2 * ph, w + 2 * pw), (0, 0))]
        for x_shape, pad in variants:
            ids = np.arange(1, math.prod(x_shape) + 1, dtype=np.float64).reshape(x_shape)
            key = (f"{x_shape}/{kh}x{kw}/{tuple(int(s) for s in _pair(stride))}/"
                   f"{tuple(int(p) for p in pad)}")
            maps[key] = conv.im2col(ids, kh, kw, stride, pad).astype(np.int64)
    return maps


def _correct_unfolding(namespace, shapes, kernel, stride, padding):
    """Swap the notebook's im2col/col2im for correct stand-ins while a layer check runs."""
    im2col, col2im = unfolding_stand_ins(_index_maps(shapes, kernel, stride, padding))
    return replaced(namespace, {"im2col": im2col, "col2im": col2im})


_CONV_LAYERS = [  # (in, out, kernel, stride, padding, input shapes)
    (3, 4, 3, 1, 1, [(2, 3, 6, 5), (1, 3, 4, 4)]),
    (2, 3, (2, 3), (2, 1), (1, 0), [(3, 2, 7, 6), (1, 2, 5, 3)]),
    (1, 2, 3, 2, 0, [(2, 1, 7, 7)]),
]


def check_conv2d(student_cls, *, parts=("forward", "backward"), namespace=None) -> None:
    """Conv2D forward or backward (dx, dW, db; need_input_grad=False) against npdl's."""
    conv = _npdl_conv()
    for c_in, c_out, kernel, stride, padding, shapes in _CONV_LAYERS:
        kwargs = {"stride": stride, "padding": padding}
        with _correct_unfolding(namespace, shapes, kernel, stride, padding):
            check_layer(student_cls, conv.Conv2D, args=(c_in, c_out, kernel), kwargs=kwargs,
                        parts=parts, input_shapes=shapes)
            if "backward" in parts:
                _check_params_only_backward(student_cls, (c_in, c_out, kernel), kwargs, shapes[0])


def _check_params_only_backward(student_cls, args, kwargs, shape) -> None:
    """backward(g, need_input_grad=False) returns None and still fills the parameter grads."""
    conv, rng = _npdl_conv(), np.random.default_rng(5)
    name = getattr(student_cls, "__name__", "Conv2D")
    ref, student = conv.Conv2D(*args, **kwargs, rng=0), construct(student_cls, name, *args,
                                                                  **kwargs, rng=0)
    for key, value in ref.params.items():
        student.params[key][...] = value
    x = rng.standard_normal(shape)
    g = rng.standard_normal(ref.forward(x).shape)
    ref.backward(g, need_input_grad=False)
    where = f"{name}.backward(g, need_input_grad=False)"
    run_student(where, student.forward, x)
    result = run_student(where, student.backward, g, need_input_grad=False)
    if result is not None:
        raise CheckFailed(f"{where}: expected None (the input gradient is not needed). "
                          f"Received: {type(result).__name__}.")
    for key, value in ref.grads.items():
        compare_arrays(student.grads[key], value, where=f"{where}: grads[{key!r}]",
                       input_shape=shape)


_POOL_LAYERS = [  # (kernel, stride, padding, input shapes)
    (2, None, 0, [(2, 3, 6, 6), (1, 2, 4, 5)]),
    (3, 2, 1, [(2, 2, 7, 6), (1, 1, 5, 5)]),
    ((2, 3), (1, 2), 0, [(2, 2, 5, 7)]),
]


def check_max_pool2d(student_cls, *, parts=("forward", "backward"), namespace=None) -> None:
    """MaxPool2D forward or backward against npdl's, on random input and on exact ties."""
    conv = _npdl_conv()
    for kernel, stride, padding, shapes in _POOL_LAYERS:
        kwargs = {"stride": stride, "padding": padding}
        with _correct_unfolding(namespace, shapes, kernel, stride or kernel, padding):
            _check_ties(student_cls, kernel, kwargs, shapes[0], parts)  # first: names the tie bug
            check_layer(student_cls, conv.MaxPool2D, args=(kernel,), kwargs=kwargs, parts=parts,
                        input_shapes=shapes)


def _every_maximum(x, g, kernel, stride, padding) -> np.ndarray:
    """The tie bug: the gradient copied to every maximum of a window instead of the first."""
    conv, (kh, kw), (ph, pw) = _npdl_conv(), _pair(kernel), _pair(padding)
    n, c, h, w = x.shape
    flat = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    flat = flat.reshape(n * c, 1, h + 2 * ph, w + 2 * pw)
    cols = conv.im2col(np.where(np.isinf(flat), -1e300, flat), kh, kw, stride, 0)
    winners = cols == cols.max(axis=1, keepdims=True)
    dcols = winners * g.reshape(n * c, 1, -1)
    dx = conv.col2im(dcols, flat.shape, kh, kw, stride, 0)
    return dx[:, :, ph : ph + h, pw : pw + w].reshape(x.shape)


def _check_ties(student_cls, kernel, kwargs, shape, parts) -> None:
    """Inputs with many equal maxima: torch sends each gradient to the FIRST maximum."""
    conv, rng = _npdl_conv(), np.random.default_rng(7)
    name = getattr(student_cls, "__name__", "MaxPool2D")
    where = f"{name}({kernel!r}, stride={kwargs['stride']!r}, padding={kwargs['padding']!r})"
    x = rng.integers(0, 3, size=shape).astype(np.float64)
    ref, student = conv.MaxPool2D(kernel, **kwargs), construct(student_cls, name, kernel,
                                                               **kwargs)
    expected = ref.forward(x)
    out = run_student(f"{where}.forward", student.forward, x.copy())
    if "forward" in parts:
        compare_arrays(out, expected, where=f"{where}.forward (input with ties)",
                       input_shape=shape)
    if "backward" in parts:
        g = rng.standard_normal(expected.shape)
        got = run_student(f"{where}.backward", student.backward, g.copy())
        stride = ref.stride
        wrong = [("on a tie the gradient goes to every maximum; torch sends it to the first "
                  "one only (np.argmax)", _every_maximum(x, g, kernel, stride, ref.padding))]
        compare_arrays(got, ref.backward(g), where=f"{where}.backward (input with ties)",
                       input_shape=shape, context={"grad_output": g, "candidates": wrong})
