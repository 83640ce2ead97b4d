"""Checks of chapter 2 (activations): forward and backward against `npdl.activations`.

    check_activation(ReLU, npdl.activations.ReLU, parts=("backward",))
"""

from __future__ import annotations

import numpy as np

from autograder.checks.compare import (
    accepts,
    check_unchanged,
    compare_arrays,
    construct,
    extreme_values,
    passed,
    run_reference,
    run_student,
    tolerance,
)
from autograder.checks.stand_ins import replaced, sigmoid_layer

# The student's components another activation may build on, and what stands in for them.
_STAND_INS = {"Sigmoid": sigmoid_layer}

_LOCAL_DERIVATIVE = {
    "ReLU": "a 0/1 mask (x > 0)", "LeakyReLU": "the slope (1 or alpha)",
    "Sigmoid": "s * (1 - s)", "Tanh": "1 - tanh(x)**2",
}


def _activation_cases(rng):
    yield "random input", rng.standard_normal((4, 3))
    yield "a batch of one", rng.standard_normal((1, 5))
    yield "a 3-D input", rng.standard_normal((2, 3, 4))
    yield "extreme values up to ±1e4", extreme_values(rng, (3, 6))
    yield "float32 input", rng.standard_normal((4, 3)).astype(np.float32)


def _activation_candidates(reference_cls, kwargs, x, g, out_expected, part):
    """Wrong answers worth naming: softmax over another axis, derivative mistakes."""
    found = []
    axis = kwargs.get("axis", -1)
    if accepts(reference_cls, "axis") and x.ndim >= 2:
        wrong_axis = 0 if axis in (-1, x.ndim - 1) else -1
        wrong = reference_cls(**{**kwargs, "axis": wrong_axis})
        y = run_reference(wrong.forward, x.copy())
        if part == "backward" and y is not None:
            y = run_reference(wrong.backward, g.copy())
        if y is not None:
            found.append((f"softmax over the wrong axis: normalise along self.axis = {axis}, "
                          f"i.e. np.sum(..., axis=self.axis, keepdims=True)", y))
    if part == "backward":
        local = _LOCAL_DERIVATIVE.get(reference_cls.__name__, "the derivative of the activation")
        found.append((f"the gradient is multiplied by the input instead of {local}", g * x))
        found.append((f"the gradient is multiplied by the forward output instead of {local}",
                      g * out_expected))
    return found


def check_activation(student_cls, reference_cls, *, kwargs=None, seed=0,
                     parts=("forward", "backward"), namespace=None, uses=()) -> None:
    """Forward and/or backward of an activation class against the reference.

    float32 input is compared (with float32 tolerances) against the reference in float64.
    ``uses``: the student's other activations this one calls (Swish and Softplus: ``Sigmoid``);
    with ``namespace=globals()`` they are replaced by stand-ins while the check runs, so only
    this class's own logic counts (no cascade).
    """
    with replaced(namespace, {name: _STAND_INS[name] for name in uses}):
        _check_activation(student_cls, reference_cls, dict(kwargs or {}), seed, parts)


def _check_activation(student_cls, reference_cls, kwargs, seed, parts) -> None:
    name = getattr(student_cls, "__name__", "the activation")
    rng = np.random.default_rng(seed)
    count = 0
    for label, x in _activation_cases(rng):
        ref = reference_cls(**kwargs)
        x64 = x.astype(np.float64)
        expected = run_reference(ref.forward, x64.copy())
        if expected is None:
            continue
        g = rng.standard_normal(expected.shape).astype(x.dtype)
        g64 = g.astype(np.float64)
        expected_grad = run_reference(ref.backward, g64.copy())
        rtol, atol = tolerance(x.dtype)
        student = construct(student_cls, name, **kwargs)
        x_student, g_student = x.copy(), g.copy()
        on = f" (on {label}, shape {x.shape})"
        out = run_student(f"{name}.forward{on}", student.forward, x_student)
        check_unchanged(x_student, x, f"{name}.forward", "its input x")
        ctx = {"dtype": x.dtype}
        if "forward" in parts:
            ctx["candidates"] = _activation_candidates(reference_cls, kwargs, x64, g64, expected,
                                                       "forward")
            compare_arrays(out, expected.astype(x.dtype), where=f"{name}.forward",
                           input_shape=x.shape, context=ctx, rtol=rtol, atol=atol)
        if "backward" in parts:
            grad = run_student(f"{name}.backward{on}", student.backward, g_student)
            check_unchanged(g_student, g, f"{name}.backward", "grad_output")
            check_unchanged(x_student, x, f"{name}.backward", "the forward input x")
            ctx.update(grad_output=g, input=x, candidates=_activation_candidates(
                reference_cls, kwargs, x64, g64, expected, "backward"))
            compare_arrays(grad, expected_grad.astype(x.dtype), where=f"{name}.backward",
                           input_shape=x.shape, context=ctx, rtol=rtol, atol=atol)
        count += 1
    passed(f"{name}.{'/'.join(parts)} matches the reference on {count} inputs "
           "(random, batch of one, 3-D, extreme values, float32)")
