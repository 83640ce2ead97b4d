"""Shared comparison helpers of every chapter's checks: run, copy, compare, report.

Everything here runs on the trusted side. A student's value is first turned into a plain float
ndarray copy (`trusted_array`), so ndarray subclasses or objects with a rigged ``__eq__`` cannot
fool a comparison; after that it is only ever compared, never used to compute an expectation.
A failed comparison raises `CheckFailed`, whose message is the student's feedback.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

from autograder.checks.diagnose import diagnose, dtype_message, likely, mismatch_message

# (rtol, atol) per dtype: float32 results are compared with float32 round-off in mind.
_TOL = {np.dtype(np.float64): (1e-6, 1e-8), np.dtype(np.float32): (1e-4, 1e-5)}


class CheckFailed(AssertionError):
    """A check found a mistake. Its message IS the student's feedback."""


def passed(what: str) -> None:
    """Print the line a student sees when a check passes."""
    print(f"✔ {what}")


def run_student(where: str, fn, *args, **kwargs):
    """Call student code; any exception or floating-point warning becomes `CheckFailed`.

    Overflow, division by zero and invalid operations raise here (underflow to 0 is
    fine), because a warning in a correct-looking result is a numerical bug.
    """
    try:
        with warnings.catch_warnings(), np.errstate(over="raise", divide="raise",
                                                    invalid="raise", under="ignore"):
            warnings.simplefilter("error", RuntimeWarning)
            return fn(*args, **kwargs)
    except CheckFailed:
        raise
    except NotImplementedError:
        raise CheckFailed(f"{where} is not implemented yet: replace `raise NotImplementedError()` "
                          "with your code.") from None
    except (FloatingPointError, RuntimeWarning) as exc:
        raise CheckFailed(
            f"{where} hit a floating-point error ({exc}). Likely mistake: exp of a large number "
            "overflows, or a log/division meets 0; use a numerically stable formula "
            "(shift by the max, np.logaddexp, log1p, clip)."
        ) from exc
    except Exception as exc:
        raise CheckFailed(f"{where} raised {type(exc).__name__}: {exc}") from exc


def run_reference(fn, *args):
    """Run the trusted reference quietly; None if it rejects the input (the case is skipped)."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return fn(*args)
    except (ValueError, TypeError, ArithmeticError):
        return None


def extreme_values(rng, shape) -> np.ndarray:
    """Magnitudes from 0.5 to 1e4, both signs, shuffled (no exact 0: no kinks)."""
    size = int(np.prod(shape))
    magnitudes = np.array([1e4, 1e3, 50.0, 5.0, 0.5, 30.0])
    values = np.resize(np.concatenate([magnitudes, -magnitudes]), size)
    return rng.permutation(values).reshape(shape)


def trusted_array(value, *, where: str, what: str = "the result") -> np.ndarray:
    """A plain float ndarray copy of a student's ``value``, or `CheckFailed`."""
    if type(value) is not np.ndarray:
        kind = "an ndarray subclass" if isinstance(value, np.ndarray) else "an object"
        raise CheckFailed(
            f"{where}: expected {what} to be a plain NumPy array (np.ndarray). "
            f"Received: {kind} of type {type(value).__name__}."
        )
    if value.dtype.kind != "f":
        raise CheckFailed(
            f"{where}: expected {what} to be a floating-point array. Received: dtype={value.dtype}."
        )
    return np.array(value, copy=True)


def trusted_scalar(value, *, where: str, what: str = "the loss") -> float:
    """A Python float from a student's scalar (float, NumPy float or 0-d array)."""
    if type(value) in (float, int, np.float64, np.float32, np.float16):
        return float(value)
    if type(value) is np.ndarray and value.ndim == 0 and value.dtype.kind in "fi":
        return float(value)
    shape = f" of shape {value.shape}" if type(value) is np.ndarray else ""
    raise CheckFailed(
        f"{where}: expected {what} to be a single number (a Python float, e.g. float(loss)). "
        f"Received: {type(value).__name__}{shape}."
    )






def tolerance(dtype) -> tuple[float, float]:
    return _TOL.get(np.dtype(dtype), _TOL[np.dtype(np.float64)])


def compare_arrays(actual, expected, *, where: str, input_shape=None, context: dict | None = None,
                   rtol=1e-6, atol=1e-8, check_dtype: bool = True) -> None:
    """Raise `CheckFailed` unless the student's ``actual`` matches the trusted ``expected``.

    The message gives the max abs/rel error, the worst element's index and, from
    `diagnose`, the likely mistake. ``context`` may also carry ``dtype``, the
    input dtype shown in the message.
    """
    ctx = dict(context or {})
    a = trusted_array(actual, where=where)
    e = np.asarray(expected)
    shown = ctx.get("dtype", e.dtype)
    details = {"where": where, "input_shape": input_shape, "dtype": shown,
               "rtol": rtol, "atol": atol}
    if mismatch_message(a, e, **details) is not None:
        diagnosis = diagnose(a, e, context=ctx)
        raise CheckFailed(mismatch_message(a, e, **details, diagnosis=diagnosis))
    if check_dtype and a.dtype != e.dtype:
        shape = f" for input shape {tuple(input_shape)}" if input_shape is not None else ""
        raise CheckFailed(f"{where} returned dtype {a.dtype}{shape}; expected {e.dtype}. "
                          f"Likely mistake: {dtype_message(a.dtype, e.dtype)}.")


def accepts(cls, name: str) -> bool:
    try:
        return name in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def construct(cls, where: str, *args, **kwargs):
    return run_student(f"{where}.__init__", cls, *args, **kwargs)


def check_unchanged(array, saved, where: str, what: str) -> None:
    if not np.array_equal(array, saved, equal_nan=True):
        raise CheckFailed(
            f"{where} modified {what} in place (shape {saved.shape}). Likely mistake: an in-place "
            f"operation on the caller's array (x[mask] = ..., x *= ..., np.exp(x, out=x)); "
            f"compute a new array instead, e.g. np.maximum(x, 0) or x * mask."
        )


def _numerical_gradient(f, x: np.ndarray, eps: float) -> np.ndarray:
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        old = x[i].copy()
        x[i] = old + eps
        plus = f()
        x[i] = old - eps
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def check_gradient(f, x, analytic, *, where: str, eps=1e-6, tol=1e-6) -> None:
    """Finite differences of the student's own scalar ``f()`` (it reads ``x``) vs ``analytic``.

    ``x`` is perturbed in place and restored. An element fails when
    ``|a - n| > tol * (|a| + |n|) + 1e-9 * scale`` (the absolute floor absorbs round-off).
    """
    if type(x) is not np.ndarray or x.dtype != np.float64:
        raise CheckFailed(f"{where}: the gradient check needs a float64 ndarray x. "
                          f"Received: {type(x).__name__} {getattr(x, 'dtype', '')}.")
    a = trusted_array(analytic, where=where, what="the analytic gradient")
    f_value = lambda: trusted_scalar(run_student(where, f), where=where, what="f()")  # noqa: E731
    numeric = _numerical_gradient(f_value, x, eps)
    scale = max(1.0, float(np.max(np.abs(numeric), initial=0.0)))
    message = mismatch_message(a, numeric, where=f"{where} (vs finite differences)",
                               input_shape=x.shape, rtol=tol, atol=1e-9 * scale)
    if message is not None and a.shape == numeric.shape:
        diff = np.abs(a - numeric) - tol * (np.abs(a) + np.abs(numeric))
        message = None if np.all(diff <= 1e-9 * scale) else message
    if message is not None:
        raise CheckFailed(message + likely(diagnose(a, numeric)))
    passed(f"{where} matches finite differences (input shape {x.shape})")
