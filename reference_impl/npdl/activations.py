"""Activation functions: stable pure functions, then the layers built on them.

The pure functions (`sigmoid`, `softplus`, `softmax`, `log_softmax`) are
numerically stable (finite and warning-free for inputs up to +-1e4) and keep
the input's float dtype. Constants are Python floats on purpose: a NumPy
float64 scalar would silently upcast float32 arrays.

Every activation is a parameter-free `Layer`: ``forward(x)`` caches what
``backward`` needs, ``backward(grad_output)`` returns ``grad_output * f'(x)``
(elementwise, except `Softmax`). Shapes: input, output and both gradients all
have the same shape, any number of dimensions.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import erf

from npdl.core import Layer, ShapeError, float_array, require_cache

__all__ = [
    "sigmoid", "softplus", "softmax", "log_softmax",
    "Activation", "Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "ELU",
    "Softplus", "Swish", "SiLU", "GELU", "Softmax",
]

_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715


# ----------------------------------------------------------------------------- pure functions

def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic sigmoid ``1 / (1 + exp(-x))``, any shape, dtype preserved.

    Stable form: with ``e = exp(-|x|)`` (never overflows),
    ``sigmoid(x) = 1 / (1 + e)`` for x >= 0 and ``e / (1 + e)`` for x < 0.
    """
    x = np.asarray(x)
    e = np.exp(-np.abs(x))
    numerator = np.where(x >= 0, 1.0, e)
    return np.divide(numerator, 1.0 + e, out=numerator)


def softplus(x: np.ndarray) -> np.ndarray:
    """Softplus ``log(1 + exp(x))``, any shape, dtype preserved.

    Stable form: ``max(x, 0) + log1p(exp(-|x|))``.
    """
    x = np.asarray(x)
    out = np.log1p(np.exp(-np.abs(x)))
    out += np.maximum(x, 0)
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along ``axis``: ``exp(x_i) / sum_j exp(x_j)``, shape and dtype preserved.

    Subtracting the maximum first keeps every exponent <= 0 (no overflow).
    """
    x = np.asarray(x)
    out = np.subtract(x, np.max(x, axis=axis, keepdims=True))
    np.exp(out, out=out)
    out /= np.sum(out, axis=axis, keepdims=True)
    return out


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Log-softmax along ``axis``: ``x_i - log(sum_j exp(x_j))``, shape and dtype preserved.

    Computed as ``s_i - log(sum_j exp(s_j))`` with ``s = x - max(x)``: the sum is
    at least 1, so the log is finite.
    """
    x = np.asarray(x)
    shifted = np.subtract(x, np.max(x, axis=axis, keepdims=True))
    log_sum = np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
    shifted -= log_sum
    return shifted


# ----------------------------------------------------------------------------- layers

class Activation(Layer):
    """Base class: validates input, remembers its shape, checks ``grad_output``.

    Subclasses implement ``_forward(x)`` (cache what the derivative needs) and
    ``_backward(grad_output)``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._input_shape: tuple | None = None
        self._dtype = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x: any shape, float32 or float64 -> f(x), same shape and dtype."""
        x = float_array(x, self)
        y = self._forward(x)
        self._input_shape, self._dtype = x.shape, x.dtype
        return y

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        """grad_output: dL/dy, shape of the forward input -> dL/dx, same shape."""
        shape = require_cache(self._input_shape, self)
        grad = float_array(grad_output, self, dtype=self._dtype, what="grad_output")
        if grad.shape != shape:
            raise ShapeError(
                f"{self!r}: expected grad_output of shape {shape} (the forward input's). "
                f"Received: shape={grad.shape}."
            )
        return self._backward(grad)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name}._forward is not implemented.")

    def _backward(self, grad: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name}._backward is not implemented.")


class Identity(Activation):
    """y = x;  dy/dx = 1. Returns copies, so callers never share arrays."""

    def _forward(self, x):
        return x.copy()

    def _backward(self, grad):
        return grad.copy()


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x));  dy/dx = y (1 - y)."""

    def _forward(self, x):
        self._y = sigmoid(x)
        return self._y

    def _backward(self, grad):
        return grad * self._y * (1.0 - self._y)


class Tanh(Activation):
    """y = tanh(x);  dy/dx = 1 - y^2."""

    def _forward(self, x):
        self._y = np.tanh(x)
        return self._y

    def _backward(self, grad):
        return grad * (1.0 - self._y * self._y)


class ReLU(Activation):
    """y = max(x, 0);  dy/dx = 1 if x > 0 else 0 (0 at the kink, like torch)."""

    def _forward(self, x):
        # dy/dx as 0.0/1.0 in x's dtype: float * float in backward is faster than float * bool
        self._slope = (x > 0).astype(x.dtype)
        return np.maximum(x, 0)

    def _backward(self, grad):
        return grad * self._slope


class LeakyReLU(Activation):
    """y = x if x > 0 else alpha x;  dy/dx = 1 if x > 0 else alpha (torch's negative_slope)."""

    def __init__(self, alpha: float = 0.01) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def _forward(self, x):
        self._mask = x > 0
        return np.where(self._mask, x, x * self.alpha)

    def _backward(self, grad):
        return np.where(self._mask, grad, grad * self.alpha)

    def __repr__(self):
        return f"LeakyReLU(alpha={self.alpha})"


class ELU(Activation):
    """y = x if x > 0 else alpha (exp(x) - 1);  dy/dx = 1 if x > 0 else alpha exp(x)."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)

    def _forward(self, x):
        self._mask = x > 0
        # exp only of min(x, 0): exp(1e4) would overflow in the unused branch.
        self._negative_part = self.alpha * np.expm1(np.minimum(x, 0))
        return np.where(self._mask, x, self._negative_part)

    def _backward(self, grad):
        # alpha exp(x) = alpha (exp(x) - 1) + alpha
        return np.where(self._mask, grad, grad * (self._negative_part + self.alpha))

    def __repr__(self):
        return f"ELU(alpha={self.alpha})"


class Softplus(Activation):
    """y = log(1 + exp(x));  dy/dx = sigmoid(x). (torch's beta=1; its threshold=20
    shortcut y = x changes results by less than 1e-8 relative.)"""

    def _forward(self, x):
        self._x = x
        return softplus(x)

    def _backward(self, grad):
        return grad * sigmoid(self._x)


class Swish(Activation):
    """y = x sigmoid(x) (SiLU);  dy/dx = s + x s (1 - s) = s (1 + x (1 - s)), s = sigmoid(x)."""

    def _forward(self, x):
        self._x = x
        self._s = sigmoid(x)
        return x * self._s

    def _backward(self, grad):
        s = self._s
        return grad * s * (1.0 + self._x * (1.0 - s))


SiLU = Swish


class GELU(Activation):
    """Gaussian error linear unit, y = x Phi(x) with Phi the standard normal CDF.

    approximate="none":  Phi(x) = (1 + erf(x / sqrt 2)) / 2,
                         dy/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi).
    approximate="tanh":  y = x (1 + t) / 2,  t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3),
                         dy/dx = (1 + t) / 2 + x (1 - t^2) / 2 * sqrt(2/pi) (1 + 3 * 0.044715 x^2).
    """

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(
                f'GELU: expected approximate to be "none" or "tanh". Received: {approximate!r}.'
            )
        self.approximate = approximate

    def _forward(self, x):
        self._x = x
        if self.approximate == "tanh":
            self._t = np.tanh(_SQRT_2_OVER_PI * (x + _GELU_CUBIC * x**3))
            return 0.5 * x * (1.0 + self._t)
        self._cdf = 0.5 * (1.0 + erf(x / _SQRT_2))
        return x * self._cdf

    def _backward(self, grad):
        x = self._x
        if self.approximate == "tanh":
            t = self._t
            du_dx = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_CUBIC * x * x)
            return grad * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)
        pdf = _INV_SQRT_2PI * np.exp(-0.5 * x * x)
        return grad * (self._cdf + x * pdf)

    def __repr__(self):
        return f'GELU(approximate="{self.approximate}")'


class Softmax(Activation):
    """y = softmax(x) along ``axis``.

    The Jacobian is dy_i/dx_j = y_i (delta_ij - y_j), so the vector-Jacobian product is
    dL/dx = y * (g - sum(g * y, axis)), computed for the whole batch at once.
    """

    def __init__(self, axis: int = -1) -> None:
        super().__init__()
        self.axis = int(axis)

    def _forward(self, x):
        if x.ndim == 0 or not -x.ndim <= self.axis < x.ndim:
            raise ShapeError(
                f"{self!r}: expected an input with axis {self.axis}. Received: shape={x.shape}."
            )
        self._y = softmax(x, axis=self.axis)
        return self._y

    def _backward(self, grad):
        y = self._y
        return y * (grad - np.sum(grad * y, axis=self.axis, keepdims=True))

    def __repr__(self):
        return f"Softmax(axis={self.axis})"
