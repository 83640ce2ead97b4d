"""Finite-difference gradient checks: the test every backward pass must pass.

The central difference

    df/dx_i ~= (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)

has error O(eps^2), so in float64 with eps=1e-6 a correct analytic gradient
agrees with it to a relative error of about 1e-8 or better.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from npdl.core import ShapeError

__all__ = ["numerical_gradient", "relative_error", "gradient_check", "GradCheckResult"]


def numerical_gradient(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central-difference gradient of a scalar function ``f()`` with respect to ``x``.

    ``f`` takes no arguments: it reads ``x``, which is perturbed in place one
    element at a time and restored exactly, so ``x`` is unchanged on return.

    Args:
        f: callable returning a scalar that depends on the contents of ``x``.
        x: float ndarray of any shape (modified temporarily, restored).
        eps: step size.

    Returns:
        ndarray of ``x.shape`` and ``x.dtype``: ``(f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``.
    """
    if not isinstance(x, np.ndarray) or not np.issubdtype(x.dtype, np.floating):
        raise TypeError(
            "numerical_gradient: expected x to be a floating-point ndarray (perturbed in place). "
            f"Received: {type(x).__name__} with dtype={getattr(x, 'dtype', None)}."
        )
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        original = x[index].copy()
        x[index] = original + eps
        f_plus = float(f())
        x[index] = original - eps
        f_minus = float(f())
        x[index] = original  # exact restore: no x + eps - eps round-off
        grad[index] = (f_plus - f_minus) / (2.0 * eps)
    return grad


def _elementwise_relative_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return np.abs(a - b) / np.maximum(1e-12, np.abs(a) + np.abs(b))


def relative_error(a, b) -> float:
    """Largest elementwise relative error ``|a - b| / max(1e-12, |a| + |b|)``.

    Args:
        a, b: arrays of the same shape (or scalars).

    Returns:
        A Python float; 0.0 for empty arrays.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ShapeError(
            f"relative_error: expected a and b to have the same shape. "
            f"Received: a.shape={a.shape}, b.shape={b.shape}."
        )
    if a.size == 0:
        return 0.0
    return float(np.max(_elementwise_relative_error(a, b)))


@dataclass(frozen=True)
class GradCheckResult:
    """Outcome of `gradient_check`: the worst element and whether it is within tolerance."""

    max_relative_error: float
    worst_index: tuple
    analytic_value: float
    numeric_value: float
    passed: bool

    def __str__(self) -> str:
        where = f"max relative error {self.max_relative_error:.2g} at index {self.worst_index}"
        if self.passed:
            return f"gradient check passed: {where}"
        return (
            f"gradient check FAILED: {where}: "
            f"analytic {self.analytic_value:.6g} vs numeric {self.numeric_value:.6g}"
        )


def gradient_check(f, x: np.ndarray, analytic_grad, eps: float = 1e-6, tol: float = 1e-6):
    """Compare ``analytic_grad`` with `numerical_gradient` of ``f`` at ``x``.

    Args:
        f: scalar function of the contents of ``x`` (no arguments).
        x: float ndarray of any shape.
        analytic_grad: the gradient to check, same shape as ``x``.
        eps: finite-difference step; tol: largest accepted relative error.

    Returns:
        `GradCheckResult` naming the element with the largest relative error.
    """
    analytic_grad = np.asarray(analytic_grad)
    if analytic_grad.shape != np.shape(x):
        raise ShapeError(
            f"gradient_check: expected analytic_grad to have the shape of x, {np.shape(x)}. "
            f"Received: analytic_grad.shape={analytic_grad.shape}."
        )
    numeric = numerical_gradient(f, x, eps)
    if numeric.size == 0:
        return GradCheckResult(0.0, (), 0.0, 0.0, True)
    errors = _elementwise_relative_error(analytic_grad, numeric)
    worst = tuple(int(i) for i in np.unravel_index(int(np.argmax(errors)), errors.shape))
    max_error = float(errors[worst])
    return GradCheckResult(
        max_relative_error=max_error,
        worst_index=worst,
        analytic_value=float(analytic_grad[worst]),
        numeric_value=float(numeric[worst]),
        passed=max_error < tol,
    )
