"""Chapter 9's hidden checks: the solution passes, realistic bugs fail with the likely mistake,
and the im2col/col2im stand-ins that keep the layer checks free of cascades are exact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import npdl.conv
from autograder.checks import CheckFailed
from autograder.checks.conv import (
    _index_maps,
    check_col2im,
    check_conv2d,
    check_im2col,
    check_max_pool2d,
)
from autograder.checks.stand_ins import unfolding_stand_ins
from autograder.notebooks import build_notebook

SOURCE = Path(__file__).resolve().parents[1] / "solutions" / "09_convolutions" / "convolutions.md"


def student(cell: str | None = None, old: str = "", new: str = "") -> dict:
    """The notebook namespace after its setup and solution cells, ``old -> new`` in ``cell``."""
    namespace = {"__name__": "__main__"}
    for nb_cell in build_notebook(SOURCE).cells:
        meta = nb_cell.get("metadata", {}).get("nbgrader", {})
        if nb_cell.cell_type != "code" or meta.get("grade"):
            continue
        source = nb_cell.source
        if meta.get("grade_id") == cell:
            assert source.count(old) == 1, f"{old!r} not found once in cell {cell}"
            source = source.replace(old, new)
        exec(compile(source, meta.get("grade_id", "cell"), "exec"), namespace)
    return namespace


def test_the_solution_passes_every_check(capsys):
    ns = student()
    check_im2col(ns["im2col"])
    check_col2im(ns["col2im"])
    for part in ("forward", "backward"):
        check_conv2d(ns["Conv2D"], parts=(part,), namespace=ns)
        check_max_pool2d(ns["MaxPool2D"], parts=(part,), namespace=ns)
    assert capsys.readouterr().out.count("✔") >= 8


@pytest.mark.parametrize(
    ("cell", "old", "new", "check", "expected"),
    [
        ("im2col", "xpad[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw]",
         "xpad[:, :, i : i + oh, j : j + ow]", "im2col", "stride is ignored"),
        ("im2col", "return cols.reshape(n, c * kh * kw, oh * ow)",
         "return cols.reshape(n, c * kh * kw, oh * ow).transpose(0, 2, 1)", "im2col",
         "rows and columns are swapped"),
        ("im2col", "cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)",
         "cols = np.empty((n, c, kh, kw, oh, ow))", "im2col", "float32"),
        ("im2col", "xpad = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))",
         "xpad = np.pad(x, ((0, 0), (0, 0), (0, 2 * ph), (0, 2 * pw)))", "im2col",
         "one side only"),
        ("col2im", "] += cols[:, :, i, j]", "] = cols[:, :, i, j]", "col2im",
         "overwrite each other"),
        ("max_pool2d",
         "np.put_along_axis(dwindows, self.argmax, grad_output.reshape(n, c, 1, -1), axis=2)",
         "dwindows = (windows == windows.max(axis=2, keepdims=True)) * "
         "grad_output.reshape(n, c, 1, -1)", "max_pool2d_backward", "every maximum"),
        ("conv2d", "np.sum(g @ cols.transpose(0, 2, 1), axis=0)",
         "(g @ cols.transpose(0, 2, 1))[0]", "conv2d_backward", "grads['W']"),
        ("conv2d", 'self.grads["b"][...] = g.sum(axis=(0, 2))',
         'self.grads["b"][...] = g.sum(axis=2)[0]', "conv2d_backward", "grads['b']"),
    ],
)
def test_a_bug_fails_its_check_with_the_likely_mistake(cell, old, new, check, expected):
    ns = student(cell, old, new)
    run = {
        "im2col": lambda: check_im2col(ns["im2col"]),
        "col2im": lambda: check_col2im(ns["col2im"]),
        "conv2d_backward": lambda: check_conv2d(ns["Conv2D"], parts=("backward",), namespace=ns),
        "max_pool2d_backward": lambda: check_max_pool2d(ns["MaxPool2D"], parts=("backward",),
                                                        namespace=ns),
    }[check]
    with pytest.raises(CheckFailed) as failure:
        run()
    assert expected in str(failure.value)


@pytest.mark.parametrize(
    ("cell", "old", "new"),
    [
        ("im2col", "xpad[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw]",
         "xpad[:, :, i : i + oh, j : j + ow]"),
        ("col2im", "] += cols[:, :, i, j]", "] = cols[:, :, i, j]"),
        ("im2col", "return cols.reshape(n, c * kh * kw, oh * ow)",
         "raise NotImplementedError()"),
    ],
)
def test_layer_checks_do_not_depend_on_the_students_unfolding(cell, old, new):
    """A wrong im2col or col2im costs only its own test: the layer checks swap in stand-ins."""
    ns = student(cell, old, new)
    for part in ("forward", "backward"):
        check_conv2d(ns["Conv2D"], parts=(part,), namespace=ns)
        check_max_pool2d(ns["MaxPool2D"], parts=(part,), namespace=ns)
    assert ns["im2col"].__module__ != "autograder.checks.stand_ins"  # restored afterwards


@pytest.mark.parametrize("shape", [(2, 3, 7, 6), (1, 2, 5, 8)])
@pytest.mark.parametrize(("kernel", "stride", "padding"), [(3, 1, 1), ((2, 3), (2, 1), (1, 0))])
def test_unfolding_stand_ins_equal_npdl(shape, kernel, stride, padding):
    im2col, col2im = unfolding_stand_ins(_index_maps([shape], kernel, stride, padding))
    kh, kw = kernel if isinstance(kernel, tuple) else (kernel, kernel)
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        x = rng.standard_normal(shape).astype(dtype)
        cols = im2col(x, kh, kw, stride, padding)
        assert cols.dtype == dtype
        np.testing.assert_array_equal(cols, npdl.conv.im2col(x, kh, kw, stride, padding))
        c = rng.standard_normal(cols.shape)
        np.testing.assert_allclose(col2im(c, shape, kh, kw, stride, padding),
                                   npdl.conv.col2im(c, shape, kh, kw, stride, padding),
                                   rtol=1e-12, atol=1e-12)


def test_unfolding_stand_ins_refuse_calls_they_do_not_cover():
    im2col, col2im = unfolding_stand_ins(_index_maps([(2, 3, 6, 6)], 3, 1, 0))
    with pytest.raises(ValueError, match=r"Received: a call for x_shape.*\(2, 3, 7, 6\)"):
        im2col(np.zeros((2, 3, 7, 6)), 3, 3)
    with pytest.raises(ValueError, match=r"expected cols of shape .*Received: shape=\(2, 5, 16\)"):
        col2im(np.zeros((2, 5, 16)), (2, 3, 6, 6), 3, 3)
