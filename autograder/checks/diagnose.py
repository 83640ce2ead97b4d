"""Diagnosis of a wrong array: how far off it is, where, and the likely mistake.

`mismatch_message` writes the feedback for one failed comparison; `diagnose` recognises the
mistakes learners make most (a sign flip, a missing 1/N, a transpose, a constant factor).
"""

from __future__ import annotations

import numpy as np


def as_float64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)

def close(a, b, rtol: float = 1e-5) -> bool:
    """Same shape and equal up to ``rtol`` of the larger array's scale."""
    a, b = as_float64(a), as_float64(b)
    if a.shape != b.shape or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return False
    scale = max(np.max(np.abs(a), initial=0.0), np.max(np.abs(b), initial=0.0), 1e-300)
    return bool(np.all(np.abs(a - b) <= rtol * scale + 1e-12))


def _scale_factor(actual: np.ndarray, expected: np.ndarray) -> float | None:
    """The c with actual = c * expected, if there is one (least squares, then verified)."""
    norm = float(np.sum(expected * expected))
    if norm == 0.0 or not np.all(np.isfinite(actual)):
        return None
    c = float(np.sum(actual * expected)) / norm
    return c if close(actual, c * expected) else None


def _scale_message(c: float, ctx: dict) -> str:
    """Name a known factor between the answer and the expected value."""
    n, size, rate = ctx.get("batch_size"), ctx.get("num_elements"), ctx.get("rate")
    known = []
    if n and n > 1:
        known += [
            (n, f"missing the 1/N average over the batch (N = {n}): divide by the batch size"),
            (1 / n, f"divided by the batch size N = {n} one time too many "
                    "(or a mean where a sum belongs)"),
        ]
    if size and n and size != n:
        known += [
            (size, f"missing the mean over all {size} elements: divide by pred.size, not 1"),
            (size / n, f"divided by the batch size N = {n}, but this mean runs over all "
                       f"pred.size = {size} elements"),
            (n / size, f"divided by pred.size = {size}, but this loss averages over the batch "
                       f"only: divide by N = {n}"),
        ]
    if rate:
        known.append((1 - rate, "dropout without rescaling: multiply the kept units by "
                                "1 / (1 - rate) (inverted dropout)"))
    known += [(2.0, "a factor of 2 too many"),
              (0.5, "a missing factor of 2 (e.g. d/dp (p - t)^2 = 2 (p - t))")]
    for value, message in known:
        if abs(abs(c) - value) <= 1e-4 * value:
            return message if c > 0 else f"the sign is flipped and {message}"
    return f"the answer is {c:.4g} times the expected one: a constant factor is wrong"


def _shape_message(a: np.ndarray, e: np.ndarray) -> str:
    if a.ndim == 2 and a.shape == e.shape[::-1]:
        hint = " and its transpose is correct" if close(a.T, e) else ""
        return (f"the result is transposed{hint}: a weight gradient is dW = x.T @ grad_output, "
                f"shape (in_features, out_features) = {e.shape}")
    if a.ndim == e.ndim + 1 and a.shape[1:] == e.shape:
        summed = " (its sum over axis 0 is correct)" if close(a.sum(axis=0), e) else ""
        return (f"not summed over the batch{summed}: a bias gradient is "
                f"grad_output.sum(axis=0), shape {e.shape}")
    if a.size == e.size:
        return f"right number of elements, wrong layout: reshape to {e.shape}"
    return (f"wrong shape: expected {e.shape}, got {a.shape} "
            "(check axis=/keepdims= and broadcasting)")


def diagnose(actual, expected, *, context: dict | None = None) -> str | None:
    """The likely mistake that turns ``expected`` into ``actual``, or None if not recognised.

    ``context`` (all optional): ``candidates`` [(message, array)] wrong answers the trusted
    side computed (e.g. softmax over the wrong axis, Adam without bias correction);
    ``grad_output`` and ``input``; ``batch_size``, ``num_elements``, ``rate``;
    ``dtype`` (the expected dtype, when ``actual`` is the raw student array).
    """
    ctx = context or {}
    a, e = as_float64(actual), as_float64(expected)
    if a.shape != e.shape:
        return _shape_message(a, e)
    for message, candidate in ctx.get("candidates", ()):
        if close(a, candidate) and not close(e, candidate):
            return message
    if not np.all(np.isfinite(a)) and np.all(np.isfinite(e)):
        return ("NaN or inf: something overflows (exp of a large number) or divides by zero; "
                "use a numerically stable formula (e.g. shift by the max, np.logaddexp, clip)")
    g = ctx.get("grad_output")
    if g is not None and close(a, g) and not close(e, g):
        return ("the gradient is passed through unchanged: "
                "multiply grad_output by the local derivative")
    x = ctx.get("input")
    if (g is not None and x is not None and np.shape(x) == a.shape
            and close(a, as_float64(g) * as_float64(x))):
        return "the gradient is multiplied by the input instead of the local derivative"
    if close(a, -e) and not close(e, 0 * e):
        return "the sign is flipped"
    c = _scale_factor(a, e)
    if c is not None and not abs(c - 1) < 1e-4:
        return _scale_message(c, ctx)
    dtype = ctx.get("dtype")
    actual_dtype = getattr(actual, "dtype", None)
    if dtype is not None and actual_dtype is not None and actual_dtype != dtype:
        return dtype_message(actual_dtype, dtype)
    return None


def dtype_message(actual_dtype, expected_dtype) -> str:
    if np.dtype(expected_dtype) == np.float32 and np.dtype(actual_dtype) == np.float64:
        return ("float32 input was upcast to float64: a float64 array or np.float64 constant is "
                "mixed in (plain Python floats are fine); keep float32 in -> float32 out")
    return f"the dtype should be {np.dtype(expected_dtype)}, as the input's"


def fmt_index(index) -> str:
    return "(" + ", ".join(str(int(i)) for i in index) + ("," if len(index) == 1 else "") + ")"


def _header(where: str, input_shape, dtype) -> str:
    shape = f" for input shape {tuple(input_shape)}" if input_shape is not None else ""
    kind = f" ({np.dtype(dtype)})" if dtype is not None else ""
    return f"{where} is wrong{shape}{kind}"


def mismatch_message(actual, expected, *, where, input_shape=None, dtype=None,
                     rtol=1e-6, atol=1e-8, diagnosis=None) -> str | None:
    """The feedback for two arrays that differ, or None if they match.

    ``actual`` must already be trusted (`trusted_array`). Shape first, then
    non-finite values, then the worst element by ``|a - e| / (atol + rtol |e|)``.
    """
    a, e = as_float64(actual), as_float64(expected)
    if dtype is None:
        dtype = getattr(expected, "dtype", None)
    head = _header(where, input_shape, dtype)
    likely = f" Likely mistake: {diagnosis}." if diagnosis else ""
    if a.shape != e.shape:
        return f"{head}: expected an array of shape {e.shape}. Received: shape={a.shape}.{likely}"
    with np.errstate(all="ignore"):
        bad_value = ~np.isfinite(a) & np.isfinite(e)
        if bad_value.any():
            i = tuple(np.argwhere(bad_value)[0])
            return (f"{head}: got {a[i]} at index {fmt_index(i)} where {e[i]:.6g} was expected."
                    f"{likely}")
        diff = np.array(np.abs(a - e), dtype=np.float64)
        diff[np.isnan(diff) & np.isnan(a) & np.isnan(e)] = 0.0
        diff[(a == e)] = 0.0  # equal infinities
        allowed = atol + rtol * np.abs(e)
        if np.all(diff <= allowed):
            return None
        i = np.unravel_index(np.argmax(diff / allowed), a.shape) if a.ndim else ()
        rel = diff / np.maximum(np.abs(a) + np.abs(e), 1e-12)
    if a.ndim == 0:
        return (f"{head}: expected {float(e):.8g}, got {float(a):.8g} "
                f"(abs error {float(diff):.3g}, rel error {float(rel):.3g}).{likely}")
    return (f"{head}: max abs error {np.max(diff):.3g}, max rel error {np.max(rel):.3g} at index "
            f"{fmt_index(i)} (expected {e[i]:.6g}, got {a[i]:.6g}).{likely}")


def likely(diagnosis: str | None) -> str:
    return f" Likely mistake: {diagnosis}." if diagnosis else ""
