"""Layers with parameters and the shape/regularization layers around them.

Every layer follows the `Layer` contract of `npdl.core`: ``forward(x)`` caches
what ``backward`` needs, ``backward(grad_output)`` returns ``dL/dx`` and
overwrites (never accumulates) the arrays in ``grads``, which stay the same
objects for the life of the layer.

Layers with parameters (`Dense`, `BatchNorm`) accept
``backward(grad_output, need_input_grad=False)``: they then only compute their
parameter gradients and return None (the first layer of a network never needs
``dL/dx``).
"""

from __future__ import annotations

import math

import numpy as np

from npdl.core import Layer, NotReadyError, ShapeError, float_array, require_cache
from npdl.initializers import HeNormal, Initializer, Zeros

__all__ = ["Layer", "Dense", "Dropout", "Flatten", "BatchNorm", "ShapeError", "NotReadyError"]


def _positive_int(value, who: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{who}: expected {name} to be a positive integer. Received: {value!r}.")
    return int(value)


def _float_dtype(dtype, who: str) -> np.dtype:
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(
            f"{who}: expected a floating dtype (float32 or float64). Received: {dtype}."
        )
    return dtype


def _grad_like(grad_output, expected_shape: tuple, who, dtype=None) -> np.ndarray:
    """Check that ``grad_output`` is a float array shaped like the forward output."""
    g = float_array(grad_output, who, dtype=dtype, what="grad_output")
    if g.shape != tuple(expected_shape):
        raise ShapeError(
            f"{who}: expected grad_output of shape {tuple(expected_shape)} (the shape of "
            f"forward's output). Received: shape={g.shape}."
        )
    return g


class Dense(Layer):
    """Fully connected layer: ``y = x @ W + b``.

    Shapes: x (batch, in_features) -> y (batch, out_features);
    ``W`` (in_features, out_features), ``b`` (out_features,).
    Backward, with ``g = dL/dy``: ``dW = x^T g``, ``db = sum_batch g``, ``dx = g W^T``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        weight_init: Initializer = HeNormal(),  # noqa: B008 (initializers are stateless)
        bias_init: Initializer = Zeros(),  # noqa: B008
        rng=None,
        dtype=np.float64,
    ) -> None:
        super().__init__()
        self.in_features = _positive_int(in_features, "Dense", "in_features")
        self.out_features = _positive_int(out_features, "Dense", "out_features")
        self.dtype = _float_dtype(dtype, repr(self))
        rng = np.random.default_rng(rng)
        shape_w, shape_b = (self.in_features, self.out_features), (self.out_features,)
        self.params["W"] = np.asarray(weight_init(shape_w, rng=rng, dtype=self.dtype))
        self.params["b"] = np.asarray(bias_init(shape_b, rng=rng, dtype=self.dtype))
        for name, shape in (("W", shape_w), ("b", shape_b)):
            if self.params[name].shape != shape or self.params[name].dtype != self.dtype:
                raise ValueError(
                    f"{self!r}: the initializer for {name} must return shape {shape} and dtype "
                    f"{self.dtype}. Received: shape={self.params[name].shape}, "
                    f"dtype={self.params[name].dtype}."
                )
        self.grads["W"] = np.zeros(shape_w, dtype=self.dtype)
        self.grads["b"] = np.zeros(shape_b, dtype=self.dtype)
        self._x: np.ndarray | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (batch, in_features) -> x @ W + b, (batch, out_features)."""
        x = float_array(x, self, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ShapeError(
                f"{self!r}: expected input of shape (batch, {self.in_features}). "
                f"Received: shape={x.shape}."
            )
        self._x = x  # no copy: backward needs x as it was, like torch's saved tensors
        out = x @ self.params["W"]
        out += self.params["b"]
        return out

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True):
        """g (batch, out_features) -> dx = g @ W^T (batch, in_features), or None.

        Overwrites ``grads["W"] = x^T g`` and ``grads["b"] = sum over the batch of g``.
        """
        x = require_cache(self._x, self)
        g = _grad_like(grad_output, (x.shape[0], self.out_features), self, self.dtype)
        np.matmul(x.T, g, out=self.grads["W"])
        g.sum(axis=0, out=self.grads["b"])
        if not need_input_grad:
            return None
        return g @ self.params["W"].T

    def output_shape(self, input_shape: tuple) -> tuple:
        input_shape = tuple(input_shape)
        if len(input_shape) != 2 or input_shape[-1] != self.in_features:
            raise ShapeError(
                f"{self!r}: expected input of shape (batch, {self.in_features}). "
                f"Received: shape={input_shape}."
            )
        return (input_shape[0], self.out_features)

    def __repr__(self) -> str:
        return f"Dense(in_features={self.in_features}, out_features={self.out_features})"


class Dropout(Layer):
    """Inverted dropout: zero each entry with probability ``rate`` while training.

    Train mode: ``mask = (u >= rate) / (1 - rate)`` with ``u ~ U[0, 1)``, ``y = x * mask``,
    so ``E[y] = x`` and eval mode needs no rescaling. Eval mode (or rate 0): ``y = x``.
    Shapes: any -> same. Backward: ``dx = g * mask`` (``dx = g`` in eval mode).
    """

    def __init__(self, rate: float, rng=None) -> None:
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(
                "Dropout: expected rate in [0, 1) (the probability of dropping a unit; "
                "rate 1 would drop everything and divide by 1 - rate = 0). "
                f"Received: rate={rate!r}."
            )
        self.rate = float(rate)
        self.rng = np.random.default_rng(rng)
        self._mask: np.ndarray | None = None  # None means identity
        self._shape: tuple | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = float_array(x, self)
        self._shape = x.shape
        if not self.training or self.rate == 0.0:
            self._mask = None
            return x
        keep = self.rng.random(x.shape, dtype=x.dtype) >= self.rate
        self._mask = keep * x.dtype.type(1.0 / (1.0 - self.rate))  # stays in x's dtype
        return x * self._mask

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        shape = require_cache(self._shape, self)
        dtype = None if self._mask is None else self._mask.dtype
        g = _grad_like(grad_output, shape, self, dtype)
        return g if self._mask is None else g * self._mask

    def __repr__(self) -> str:
        return f"Dropout(rate={self.rate})"


class Flatten(Layer):
    """Flatten all but the batch axis: (N, d1, d2, ...) -> (N, d1*d2*...).

    Backward reshapes the gradient back to (N, d1, d2, ...).
    """

    def __init__(self) -> None:
        super().__init__()
        self._shape: tuple | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = float_array(x, self)
        if x.ndim < 2:
            raise ShapeError(
                f"{self!r}: expected input of shape (batch, d1, ...) with at least 2 dimensions. "
                f"Received: shape={x.shape}."
            )
        self._shape = x.shape
        return x.reshape(self.output_shape(x.shape))

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        shape = require_cache(self._shape, self)
        g = _grad_like(grad_output, self.output_shape(shape), self)
        return g.reshape(shape)

    def output_shape(self, input_shape: tuple) -> tuple:
        input_shape = tuple(input_shape)
        if len(input_shape) < 2:
            raise ShapeError(
                f"{self!r}: expected input of shape (batch, d1, ...) with at least 2 dimensions. "
                f"Received: shape={input_shape}."
            )
        return (input_shape[0], math.prod(input_shape[1:]))


class BatchNorm(Layer):
    """Batch normalization over the batch axis, as ``torch.nn.BatchNorm1d`` on (N, C) input.

    Shapes: x (N, num_features) -> y (N, num_features); gamma, beta (num_features,).
    Train mode: ``mu, var = mean(x), mean((x - mu)**2)`` over the batch (biased variance),
    ``xhat = (x - mu) / sqrt(var + eps)``, ``y = gamma * xhat + beta``; running stats
    ``running = (1 - momentum) * running + momentum * batch_stat`` with the UNBIASED
    variance ``var * N / (N - 1)`` for running_var. Eval mode uses the running stats.

    Backward (train), with ``std = sqrt(var + eps)``:
    ``dx = gamma / (N * std) * (N * g - sum(g) - xhat * sum(g * xhat))``,
    ``dgamma = sum(g * xhat)``, ``dbeta = sum(g)``. Eval: ``dx = g * gamma / std``.
    """

    def __init__(
        self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, dtype=np.float64
    ) -> None:
        super().__init__()
        self.num_features = _positive_int(num_features, "BatchNorm", "num_features")
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNorm: expected momentum in [0, 1]. Received: {momentum!r}.")
        if not eps > 0.0:
            raise ValueError(f"BatchNorm: expected eps > 0. Received: {eps!r}.")
        self.momentum = float(momentum)
        self.eps = float(eps)
        self.dtype = _float_dtype(dtype, repr(self))
        c = self.num_features
        self.params["gamma"] = np.ones(c, dtype=self.dtype)
        self.params["beta"] = np.zeros(c, dtype=self.dtype)
        self.grads["gamma"] = np.zeros(c, dtype=self.dtype)
        self.grads["beta"] = np.zeros(c, dtype=self.dtype)
        self.buffers["running_mean"] = np.zeros(c, dtype=self.dtype)
        self.buffers["running_var"] = np.ones(c, dtype=self.dtype)
        self._cache: tuple | None = None  # (xhat, std, batch statistics used?)

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = float_array(x, self, dtype=self.dtype)
        if x.ndim != 2 or x.shape[1] != self.num_features:
            raise ShapeError(
                f"{self!r}: expected input of shape (batch, {self.num_features}). "
                f"Received: shape={x.shape}."
            )
        if self.training:
            mean, var = self._batch_stats(x)
        else:
            mean, var = self.buffers["running_mean"], self.buffers["running_var"]
        std = np.sqrt(var + self.eps)
        xhat = (x - mean) / std
        self._cache = (xhat, std, self.training)
        return self.params["gamma"] * xhat + self.params["beta"]

    def _batch_stats(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Biased batch mean/variance; updates the running stats in place."""
        n = x.shape[0]
        if n < 2:
            raise ValueError(
                f"{self!r}: expected more than 1 sample per batch in training mode (the batch "
                f"variance of one sample is 0). Received: shape={x.shape}. Use eval() to predict "
                "one sample."
            )
        mean = x.mean(axis=0)
        var = x.var(axis=0)
        m = self.momentum
        running_mean, running_var = self.buffers["running_mean"], self.buffers["running_var"]
        running_mean *= 1.0 - m
        running_mean += m * mean
        running_var *= 1.0 - m
        running_var += (m * n / (n - 1)) * var  # unbiased, as torch
        return mean, var

    def backward(self, grad_output: np.ndarray, need_input_grad: bool = True):
        """g (N, num_features) -> dx (N, num_features), or None; overwrites dgamma, dbeta."""
        xhat, std, batch_stats = require_cache(self._cache, self)
        g = _grad_like(grad_output, xhat.shape, self, self.dtype)
        np.sum(g * xhat, axis=0, out=self.grads["gamma"])
        np.sum(g, axis=0, out=self.grads["beta"])
        if not need_input_grad:
            return None
        scale = self.params["gamma"] / std
        if not batch_stats:  # eval mode: the statistics are constants
            return g * scale
        n = g.shape[0]
        return (scale / n) * (n * g - self.grads["beta"] - xhat * self.grads["gamma"])

    def output_shape(self, input_shape: tuple) -> tuple:
        input_shape = tuple(input_shape)
        if len(input_shape) != 2 or input_shape[-1] != self.num_features:
            raise ShapeError(
                f"{self!r}: expected input of shape (batch, {self.num_features}). "
                f"Received: shape={input_shape}."
            )
        return input_shape

    def __repr__(self) -> str:
        return (
            f"BatchNorm(num_features={self.num_features}, eps={self.eps}, momentum={self.momentum})"
        )
