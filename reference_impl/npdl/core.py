"""The `Layer` base class and the input checks every component shares.

Every building block of a network (a Dense layer, an activation, a BatchNorm)
is a `Layer`: it owns `params` and `grads` dictionaries with the same keys and
shapes, a `training` flag, and a `forward`/`backward` pair.

Errors follow one style: say what was expected, then ``Received: ...``.
"""

from __future__ import annotations

import numpy as np


class ShapeError(ValueError):
    """An array has the wrong shape for the component that received it."""


class NotReadyError(RuntimeError):
    """A method was called out of order (e.g. ``backward`` before ``forward``)."""


def float_array(x, who, dtype=None, what: str = "input") -> np.ndarray:
    """Return ``x`` as a floating-point ndarray, rejecting integers and bools.

    With ``dtype`` given, float input of another precision is cast to it;
    otherwise its own float dtype is kept (float32 stays float32).
    ``who`` names the caller in errors: a string, or the component itself
    (then its repr is built only when an error is raised, not on every call).
    """
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)
    if x.dtype.kind != "f":  # same test as np.issubdtype(dtype, np.floating), but cheaper
        raise TypeError(
            f"{who}: expected a floating-point {what} (float32 or float64). "
            f"Received: dtype={x.dtype}. Convert it first, e.g. x.astype(np.float64)."
        )
    if dtype is not None and x.dtype != dtype:
        x = x.astype(dtype)
    return x


def check_ndim(x: np.ndarray, ndim: int, who, what: str = "input", hint: str = "") -> None:
    """Raise `ShapeError` unless ``x.ndim == ndim``."""
    if x.ndim != ndim:
        raise ShapeError(
            f"{who}: expected a {ndim}-D {what}{hint}. Received: shape={x.shape}."
        )


def check_same_shape(a: np.ndarray, b: np.ndarray, who, a_name: str, b_name: str) -> None:
    """Raise `ShapeError` unless two arrays have exactly the same shape (no broadcasting)."""
    if a.shape != b.shape:
        raise ShapeError(
            f"{who}: expected {b_name} to have the same shape as {a_name}, {a.shape}. "
            f"Received: {b_name}.shape={b.shape}."
        )


def require_cache(value, who):
    """Return a cached value, or explain that ``forward`` must run first."""
    if value is None:
        raise NotReadyError(
            f"{who}: backward() was called before forward(). Call forward(x) first."
        )
    return value


class Layer:
    """Base class of every network component.

    Attributes:
        params: name -> parameter array (e.g. ``{"W": ..., "b": ...}``).
        grads: name -> gradient array, same keys and shapes as ``params``.
            ``backward`` overwrites them in place (no accumulation), so the
            array objects stay the same for the whole life of the layer.
        buffers: name -> non-trainable state saved with the model
            (e.g. BatchNorm's running statistics).
        training: True in training mode, False in evaluation mode.
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.buffers: dict[str, np.ndarray] = {}
        self.training: bool = True

    @property
    def name(self) -> str:
        return type(self).__name__

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name}.forward is not implemented.")

    def backward(self, grad_output: np.ndarray) -> np.ndarray:
        raise NotImplementedError(f"{self.name}.backward is not implemented.")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def train(self) -> Layer:
        self.training = True
        return self

    def eval(self) -> Layer:
        self.training = False
        return self

    def output_shape(self, input_shape: tuple) -> tuple:
        """Shape of ``forward``'s output for an input of ``input_shape`` (batch dim included)."""
        return tuple(input_shape)

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def __repr__(self) -> str:
        return f"{self.name}()"
