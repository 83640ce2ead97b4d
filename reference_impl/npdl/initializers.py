"""Weight initializers: callables ``init(shape, rng=None, dtype=np.float64) -> ndarray``.

Why initialization matters: a layer ``y = x @ W`` with ``fan_in`` inputs has
``Var(y) = fan_in * Var(W) * Var(x)`` (zero-mean, independent entries). If
``fan_in * Var(W)`` is not about 1, activations (and, going backwards,
gradients) shrink or grow geometrically with depth.

* LeCun:  ``Var(W) = 1 / fan_in``              keeps the forward variance.
* Xavier: ``Var(W) = 2 / (fan_in + fan_out)``  compromise between forward (fan_in)
  and backward (fan_out) variance, for tanh/sigmoid nets (Glorot & Bengio, 2010).
* He:     ``Var(W) = 2 / fan_in``              ReLU zeroes half of its inputs and
  halves the variance; the factor 2 puts it back (He et al., 2015).

Shapes use npdl's layout: a Dense weight is ``(fan_in, fan_out)`` (the
transpose of torch's ``(out, in)``). Scales match ``torch.nn.init``.
"""

from __future__ import annotations

import math

import numpy as np


def compute_fans(shape) -> tuple[int, int]:
    """Return ``(fan_in, fan_out)`` for a weight of the given shape.

    * 1-D ``(n,)``                    -> ``(n, n)``
    * 2-D ``(fan_in, fan_out)``       -> ``(shape[0], shape[1])``
    * k-D ``(..., in, out)`` (conv kernel, e.g. ``(kh, kw, in, out)``): with the
      receptive field ``rf = prod(shape[:-2])``, ``(shape[-2] * rf, shape[-1] * rf)``.
    """
    shape = _as_shape(shape, "compute_fans")
    if len(shape) == 0:
        raise ValueError(
            "compute_fans: expected a shape with at least one dimension, e.g. (fan_in, fan_out). "
            "Received: shape=()."
        )
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _as_shape(shape, who: str) -> tuple[int, ...]:
    """Normalize an int or a sequence of ints to a tuple of positive ints."""
    if isinstance(shape, (int, np.integer)):
        shape = (shape,)
    shape = tuple(int(d) for d in shape)
    if any(d < 1 for d in shape):
        raise ValueError(f"{who}: expected positive dimensions. Received: shape={shape}.")
    return shape


def _rng(rng) -> np.random.Generator:
    return np.random.default_rng(rng)


class Initializer:
    """Base class: ``init(shape, rng=None, dtype=np.float64) -> ndarray`` of that shape."""

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        raise NotImplementedError(f"{type(self).__name__}.__call__ is not implemented.")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Zeros(Initializer):
    """All zeros (the usual bias initializer)."""

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        return np.zeros(_as_shape(shape, "Zeros"), dtype=dtype)


class Ones(Initializer):
    """All ones (e.g. BatchNorm's gamma)."""

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        return np.ones(_as_shape(shape, "Ones"), dtype=dtype)


class Constant(Initializer):
    """Every entry equal to ``value``."""

    def __init__(self, value: float = 0.0) -> None:
        self.value = float(value)

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        return np.full(_as_shape(shape, "Constant"), self.value, dtype=dtype)


class RandomNormal(Initializer):
    """Entries drawn from ``N(mean, std**2)``."""

    def __init__(self, mean: float = 0.0, std: float = 0.05) -> None:
        if std < 0:
            raise ValueError(f"RandomNormal: expected std >= 0. Received: std={std}.")
        self.mean = float(mean)
        self.std = float(std)

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        shape = _as_shape(shape, repr(self))
        return _rng(rng).normal(self.mean, self.std, size=shape).astype(dtype, copy=False)


class RandomUniform(Initializer):
    """Entries drawn from ``U(low, high)``."""

    def __init__(self, low: float = -0.05, high: float = 0.05) -> None:
        if not low <= high:
            raise ValueError(
                f"RandomUniform: expected low <= high. Received: low={low}, high={high}."
            )
        self.low = float(low)
        self.high = float(high)

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        shape = _as_shape(shape, repr(self))
        return _rng(rng).uniform(self.low, self.high, size=shape).astype(dtype, copy=False)


def _normal(shape, std: float, rng, dtype) -> np.ndarray:
    return _rng(rng).normal(0.0, std, size=shape).astype(dtype, copy=False)


def _uniform(shape, bound: float, rng, dtype) -> np.ndarray:
    return _rng(rng).uniform(-bound, bound, size=shape).astype(dtype, copy=False)


class XavierNormal(Initializer):
    """Glorot normal: ``std = gain * sqrt(2 / (fan_in + fan_out))``.

    Averages the forward (fan_in) and backward (fan_out) variance conditions.
    """

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = float(gain)

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        fan_in, fan_out = compute_fans(shape)
        std = self.gain * math.sqrt(2.0 / (fan_in + fan_out))
        return _normal(_as_shape(shape, repr(self)), std, rng, dtype)


class XavierUniform(Initializer):
    """Glorot uniform: ``U(-a, a)`` with ``a = gain * sqrt(6 / (fan_in + fan_out))``.

    ``Var(U(-a, a)) = a**2 / 3 = gain**2 * 2 / (fan_in + fan_out)``, as XavierNormal.
    """

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = float(gain)

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        fan_in, fan_out = compute_fans(shape)
        bound = self.gain * math.sqrt(6.0 / (fan_in + fan_out))
        return _uniform(_as_shape(shape, repr(self)), bound, rng, dtype)


class HeNormal(Initializer):
    """Kaiming normal (fan_in, relu): ``std = sqrt(2 / fan_in)``.

    ReLU zeroes half the inputs, halving the variance; the 2 compensates.
    """

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        fan_in, _ = compute_fans(shape)
        return _normal(_as_shape(shape, "HeNormal"), math.sqrt(2.0 / fan_in), rng, dtype)


class HeUniform(Initializer):
    """Kaiming uniform (fan_in, relu): ``U(-a, a)`` with ``a = sqrt(6 / fan_in)``.

    ``Var = a**2 / 3 = 2 / fan_in``, as HeNormal.
    """

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        fan_in, _ = compute_fans(shape)
        return _uniform(_as_shape(shape, "HeUniform"), math.sqrt(6.0 / fan_in), rng, dtype)


class LeCunNormal(Initializer):
    """LeCun normal: ``std = sqrt(1 / fan_in)``, so ``Var(x @ W) = Var(x)`` (linear/SELU nets)."""

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        fan_in, _ = compute_fans(shape)
        return _normal(_as_shape(shape, "LeCunNormal"), math.sqrt(1.0 / fan_in), rng, dtype)


class Orthogonal(Initializer):
    """A (semi-)orthogonal matrix times ``gain``, as ``torch.nn.init.orthogonal_``.

    The shape is viewed as ``(rows, cols) = (prod(shape[:-1]), shape[-1])``.
    ``A ~ N(0, 1)`` of the taller orientation, ``Q, R = qr(A)``, then
    ``Q *= sign(diag(R))`` so Q is uniformly distributed (Haar). Result:
    ``W.T @ W = gain**2 I`` if rows >= cols, ``W @ W.T = gain**2 I`` otherwise.
    Orthogonal maps preserve norms, so signals neither shrink nor grow.
    """

    def __init__(self, gain: float = 1.0) -> None:
        self.gain = float(gain)

    def __call__(self, shape, rng=None, dtype=np.float64) -> np.ndarray:
        shape = _as_shape(shape, repr(self))
        if len(shape) < 2:
            raise ValueError(
                f"{self!r}: expected a shape with at least 2 dimensions. Received: shape={shape}."
            )
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = _rng(rng).standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q *= np.sign(np.diag(r))  # sign fix: without it Q is not uniformly distributed
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).astype(dtype, copy=False)
