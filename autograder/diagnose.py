"""Feedback for a wrong answer: how far off it is, where, and the likely mistake.

Everything here runs on the trusted side. A student's value is first turned
into a plain float ndarray copy (`trusted_array`), so ndarray subclasses or
objects with a rigged ``__eq__`` cannot fool a comparison; after that it is
only ever compared, never used to compute an expectation.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np

# (rtol, atol) per dtype: float32 results are compared with float32 round-off in mind.
_TOL = {np.dtype(np.float64): (1e-6, 1e-8), np.dtype(np.float32): (1e-4, 1e-5)}


class CheckFailed(AssertionError):
    """A check found a mistake. Its message IS the student's feedback."""


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


def _as64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)


def close(a, b, rtol: float = 1e-5) -> bool:
    """Same shape and equal up to ``rtol`` of the larger array's scale."""
    a, b = _as64(a), _as64(b)
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
    a, e = _as64(actual), _as64(expected)
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
    if g is not None and x is not None and np.shape(x) == a.shape and close(a, _as64(g) * _as64(x)):
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
    a, e = _as64(actual), _as64(expected)
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


# ------------------------------------------------------- running student and reference code

def likely(diagnosis: str | None) -> str:
    return f" Likely mistake: {diagnosis}." if diagnosis else ""


def accepts(cls, name: str) -> bool:
    try:
        return name in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def construct(cls, where: str, *args, **kwargs):
    return run_student(f"{where}.__init__", cls, *args, **kwargs)


def run_reference(fn, *args):
    """Run the trusted reference quietly; None if it rejects the input (the case is skipped)."""
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            return fn(*args)
    except (ValueError, TypeError, ArithmeticError):
        return None


def check_unchanged(array, saved, where: str, what: str) -> None:
    if not np.array_equal(array, saved, equal_nan=True):
        raise CheckFailed(
            f"{where} modified {what} in place (shape {saved.shape}). Likely mistake: an in-place "
            f"operation on the caller's array (x[mask] = ..., x *= ..., np.exp(x, out=x)); "
            f"compute a new array instead, e.g. np.maximum(x, 0) or x * mask."
        )


def tolerance(dtype) -> tuple[float, float]:
    return _TOL.get(np.dtype(dtype), _TOL[np.dtype(np.float64)])


# ------------------------------------------------------- component-specific wrong answers

def batchnorm_candidates(ref, key: str, batches, grad_output=None) -> list:
    """Known BatchNorm mistakes, computed from the inputs (never from the student's values).

    key "dx": the input gradient for ``batches[0]``; "running_mean"/"running_var": the
    running statistics after training on ``batches`` from the initial 0 / 1.
    """
    momentum, eps = getattr(ref, "momentum", None), getattr(ref, "eps", None)
    if type(ref).__name__ != "BatchNorm" or momentum is None or eps is None:
        return []
    if key == "dx":
        x, gamma = _as64(batches[0]), _as64(ref.params["gamma"])
        return [("backward treats the batch mean and variance as constants: add the terms from "
                 "their dependence on x, dx = gamma / (N std) (N g - sum(g) - xhat sum(g xhat))",
                 _as64(grad_output) * gamma / np.sqrt(x.var(axis=0) + eps))]
    if key not in ("running_mean", "running_var"):
        return []

    def running(biased: bool, flipped: bool) -> np.ndarray:
        r = np.full(ref.buffers[key].shape, 0.0 if key == "running_mean" else 1.0)
        for x in map(_as64, batches):
            n = x.shape[0]
            if key == "running_mean":
                stat = x.mean(axis=0)
            else:
                stat = x.var(axis=0) * (1 if biased else n / (n - 1))
            old, new = (1 - momentum, momentum) if not flipped else (momentum, 1 - momentum)
            r = old * r + new * stat
        return r

    found = [("the running statistics are not updated in training mode",
              np.full(ref.buffers[key].shape, 0.0 if key == "running_mean" else 1.0)),
             ("momentum is applied the other way round: torch uses running = "
              "(1 - momentum) * running + momentum * batch_statistic", running(False, True))]
    if key == "running_var":
        found.insert(0, ("running_var must be updated with the UNBIASED batch variance "
                         "x.var(axis=0) * N / (N - 1), like torch", running(True, False)))
    return found


def check_dropout_output(out: np.ndarray, x: np.ndarray, rate: float, where: str) -> None:
    """The fraction of dropped units is about ``rate``."""
    dropped = float(np.mean(out == 0))
    if abs(dropped - rate) <= 0.05:
        return
    if abs(dropped - (1 - rate)) <= 0.05:
        likely = ("units are KEPT with probability rate; rate is the probability of dropping "
                  "a unit: keep = rng.random(x.shape) >= rate")
    elif dropped == 0:
        likely = "nothing is dropped in training mode"
    else:
        likely = "the mask is not drawn with probability rate per unit"
    raise CheckFailed(f"{where} dropped {dropped:.1%} of {out.size} units; expected about "
                      f"{rate:.0%}. Likely mistake: {likely}.")


def init_statistics_message(sample: np.ndarray, reference: np.ndarray) -> str | None:
    """Compare two large initializer samples: mean, std, and normal vs uniform (kurtosis).

    Both are drawn for a (fan_in, fan_out) = (400, 300) weight.
    """
    mean_r, std_r = float(reference.mean()), float(reference.std())
    mean_s, std_s = float(sample.mean()), float(sample.std())
    if abs(mean_s - mean_r) > 6 * std_r / np.sqrt(sample.size) + 1e-12:
        return (f"the mean is {mean_s:.4g}, expected {mean_r:.4g}: "
                "the weights should be centred on 0")
    if std_r > 0 and abs(std_s / std_r - 1) > 0.02:
        ratio = std_s / std_r
        layout = "(a 2-D shape is (fan_in, fan_out))"
        known = [(np.sqrt(2), "an extra gain of sqrt(2)"),
                 (1 / np.sqrt(2), "a missing gain of sqrt(2)"),
                 (np.sqrt(400 / 300), f"fan_out is used where fan_in belongs {layout}"),
                 (np.sqrt(300 / 400), f"fan_in is used where fan_out belongs {layout}"),
                 (np.sqrt(3), "the uniform bound is sqrt(3) times too big: a = sqrt(3) * std"),
                 (1 / np.sqrt(3), "the uniform bound is sqrt(3) * std, not std"),
                 (std_r, "the variance is used as the std (take the square root)"),
                 (1 / std_r, "the variance is used as the std (take the square root)")]
        likely = next((msg for value, msg in known if abs(ratio / value - 1) < 0.02), None)
        likely = likely or f"the scale is {ratio:.3g} times the expected one"
        return (f"the standard deviation is {std_s:.4g}, expected {std_r:.4g}; "
                f"likely mistake: {likely}")
    kurt_r, kurt_s = _kurtosis(reference), _kurtosis(sample)
    if abs(kurt_s - kurt_r) > 0.2:
        shape = {True: "normal", False: "uniform"}
        return (f"the values look {shape[kurt_s > 2.4]}ly distributed, expected "
                f"{shape[kurt_r > 2.4]}ly (kurtosis {kurt_s:.2f} vs {kurt_r:.2f}): use "
                f"rng.{'normal' if kurt_r > 2.4 else 'uniform'}")
    return None


def _kurtosis(a: np.ndarray) -> float:
    centred = a - a.mean()
    var = float(np.mean(centred**2))
    return float(np.mean(centred**4)) / var**2 if var > 0 else 0.0


def adam_without_bias_correction(params, grads_history, kwargs: dict, decoupled: bool) -> list:
    """Adam/AdamW run without bias correction: the trusted 'likely mistake' answer."""
    lr, eps = kwargs.get("lr", 1e-3), kwargs.get("eps", 1e-8)
    beta1, beta2 = kwargs.get("betas", (0.9, 0.999))
    decay = kwargs.get("weight_decay", 1e-2 if decoupled else 0.0)
    params = [_as64(p).copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for grads in grads_history:
        for i, (p, g) in enumerate(zip(params, map(_as64, grads), strict=True)):
            if decoupled:
                p *= 1 - lr * decay
            else:
                g = g + decay * p
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            p -= lr * m[i] / (np.sqrt(v[i]) + eps)
    return params
