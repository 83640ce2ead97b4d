"""Loss functions: a scalar score of predictions against targets, and its gradient.

Every loss has ``forward(pred, target) -> float`` and ``backward() -> dL/dpred``
(shape and dtype of ``pred``). Shapes are checked strictly: a ``(N,)``
prediction against a ``(N, 1)`` target is an error, never a silent broadcast
to ``(N, N)``. Reductions follow torch's defaults: the mean over all elements
for elementwise losses, the mean over the batch for the cross-entropies, and
"batchmean" for KL divergence.
"""

from __future__ import annotations

import numpy as np

from npdl.activations import sigmoid
from npdl.core import ShapeError, check_ndim, check_same_shape, float_array, require_cache

__all__ = [
    "Loss", "MSE", "MAE", "Huber", "BinaryCrossEntropy", "CategoricalCrossEntropy",
    "SoftmaxCrossEntropy", "Hinge", "KLDivergence",
]

_LOG_FLOOR = -100.0  # torch clamps log(p) at -100 in binary_cross_entropy
_PROB_FLOOR = 1e-12  # torch's epsilon in the BCE backward denominator


def _clamped_log(p: np.ndarray) -> np.ndarray:
    """max(log p, -100), with log 0 = -100 and no divide-by-zero warning."""
    out = np.full_like(p, _LOG_FLOOR)
    np.log(p, out=out, where=p > 0)
    return np.maximum(out, _LOG_FLOOR, out=out)


class Loss:
    """Base class: validates ``pred`` and ``target``, then calls ``_forward``/``_backward``.

    Subclasses implement ``_forward(pred, target) -> scalar`` (caching what the
    gradient needs) and ``_backward() -> dL/dpred``; they may override
    ``_check_target`` to validate target values or accept integer labels.
    """

    def __init__(self) -> None:
        self._pred: np.ndarray | None = None
        self._target: np.ndarray | None = None

    @property
    def name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{self.name}()"

    def __call__(self, pred, target) -> float:
        return self.forward(pred, target)

    def forward(self, pred, target) -> float:
        """pred, target: arrays of the same shape -> the loss as a Python float."""
        pred = float_array(pred, self, what="pred")
        if pred.size == 0:
            raise ShapeError(f"{self!r}: expected a non-empty pred. Received: shape={pred.shape}.")
        target = self._check_target(pred, np.asarray(target))
        value = float(self._forward(pred, target))
        self._pred, self._target = pred, target
        return value

    def backward(self) -> np.ndarray:
        """dL/dpred for the last ``forward`` call: shape and dtype of ``pred``."""
        require_cache(self._pred, self)
        return self._backward()

    def _check_target(self, pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        """Default: a numeric target of pred's shape, cast to pred's dtype."""
        if target.dtype.kind not in "biuf":  # bool, signed/unsigned int, float
            raise TypeError(
                f"{self!r}: expected a real numeric target. Received: dtype={target.dtype}."
            )
        check_same_shape(pred, target, self, "pred", "target")
        return target.astype(pred.dtype, copy=False)

    def _check_range(self, a: np.ndarray, what: str, low: float = 0.0, high: float = 1.0) -> None:
        if not (np.all(a >= low) and np.all(a <= high)):  # also False for NaN
            raise ValueError(
                f"{self!r}: expected {what} values in [{low}, {high}]. "
                f"Received: min={np.min(a)}, max={np.max(a)}."
            )

    def _check_one_hot(self, target: np.ndarray) -> None:
        row_ok = np.all((target == 0) | (target == 1), axis=-1) & (target.sum(axis=-1) == 1)
        if not np.all(row_ok):
            bad_row = int(np.argmin(row_ok))
            raise ValueError(
                f"{self!r}: expected one-hot target rows (a single 1, the rest 0). "
                f"Received: row {bad_row} = {target[bad_row]}."
            )

    def _forward(self, pred, target):
        raise NotImplementedError(f"{self.name}._forward is not implemented.")

    def _backward(self):
        raise NotImplementedError(f"{self.name}._backward is not implemented.")


class MSE(Loss):
    """Mean squared error. pred, target: any shape (same), n elements.

    L = mean((pred - target)^2);  dL/dpred = 2 (pred - target) / n.
    """

    def _forward(self, pred, target):
        self._diff = pred - target
        return np.mean(self._diff * self._diff)

    def _backward(self):
        return self._diff * (2.0 / self._diff.size)


class MAE(Loss):
    """Mean absolute error. pred, target: any shape (same), n elements.

    L = mean(|pred - target|);  dL/dpred = sign(pred - target) / n  (0 where equal, like torch).
    """

    def _forward(self, pred, target):
        self._diff = pred - target
        return np.mean(np.abs(self._diff))

    def _backward(self):
        return np.sign(self._diff) * (1.0 / self._diff.size)


class Huber(Loss):
    """Huber loss (torch's huber_loss). pred, target: any shape (same), n elements.

    With d = pred - target:
    L = mean(0.5 d^2 if |d| < delta else delta (|d| - 0.5 delta));
    dL/dpred = clip(d, -delta, delta) / n.
    """

    def __init__(self, delta: float = 1.0) -> None:
        super().__init__()
        if not delta > 0:
            raise ValueError(f"Huber: expected delta > 0. Received: delta={delta}.")
        self.delta = float(delta)

    def __repr__(self) -> str:
        return f"Huber(delta={self.delta})"

    def _forward(self, pred, target):
        self._diff = pred - target
        abs_diff = np.abs(self._diff)
        quadratic = 0.5 * self._diff * self._diff
        linear = self.delta * (abs_diff - 0.5 * self.delta)
        return np.mean(np.where(abs_diff < self.delta, quadratic, linear))

    def _backward(self):
        return np.clip(self._diff, -self.delta, self.delta) * (1.0 / self._diff.size)


class BinaryCrossEntropy(Loss):
    """Binary cross-entropy. pred, target: any shape (same), n elements, targets in [0, 1].

    Probabilities p (from_logits=False), like torch's binary_cross_entropy:
        L = -mean(y max(log p, -100) + (1 - y) max(log(1 - p), -100)),
        dL/dp = (p - y) / max(p (1 - p), 1e-12) / n.
    Logits z (from_logits=True), the stable form of BCE-with-logits:
        L = mean(max(z, 0) - z y + log(1 + exp(-|z|))),   dL/dz = (sigmoid(z) - y) / n.
    """

    def __init__(self, from_logits: bool = False) -> None:
        super().__init__()
        self.from_logits = bool(from_logits)

    def __repr__(self) -> str:
        return f"BinaryCrossEntropy(from_logits={self.from_logits})"

    def _check_target(self, pred, target):
        target = super()._check_target(pred, target)
        self._check_range(target, "target")
        if not self.from_logits:
            self._check_range(pred, "pred (probabilities; use from_logits=True for logits)")
        return target

    def _forward(self, pred, target):
        if self.from_logits:
            z, y = pred, target
            return np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
        p, y = pred, target
        return -np.mean(y * _clamped_log(p) + (1.0 - y) * _clamped_log(1.0 - p))

    def _backward(self):
        p, y, n = self._pred, self._target, self._pred.size
        if self.from_logits:
            return (sigmoid(p) - y) * (1.0 / n)
        return (p - y) / np.maximum(p * (1.0 - p), _PROB_FLOOR) * (1.0 / n)


class CategoricalCrossEntropy(Loss):
    """Cross-entropy of probabilities against one-hot targets. pred, target: (N, C).

    L = -sum(y max(log p, -100)) / N;  dL/dp = -y / max(p, 1e-12) / N.
    """

    def _check_target(self, pred, target):
        check_ndim(pred, 2, self, "pred", " of shape (batch, classes)")
        target = super()._check_target(pred, target)
        self._check_range(pred, "pred (probabilities; use SoftmaxCrossEntropy for logits)")
        self._check_one_hot(target)
        return target

    def _forward(self, pred, target):
        return -np.sum(target * _clamped_log(pred)) / pred.shape[0]

    def _backward(self):
        p, y = self._pred, self._target
        return -y / np.maximum(p, _PROB_FLOOR) * (1.0 / p.shape[0])


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, fused (torch's CrossEntropyLoss). logits z: (N, C).

    target: one-hot (N, C) or integer class labels (N,) in [0, C).
    L = -sum(y log_softmax(z)) / N;  dL/dz = (softmax(z) - y) / N.
    The softmax is computed once in forward and reused by backward.
    """

    def _check_target(self, pred, target):
        check_ndim(pred, 2, self, "logits", " of shape (batch, classes)")
        if np.issubdtype(target.dtype, np.integer) and target.ndim == 1:
            return self._check_labels(pred, target)
        target = super()._check_target(pred, target)
        self._check_one_hot(target)
        return target

    def _check_labels(self, pred, labels):
        n, classes = pred.shape
        if labels.shape != (n,):
            raise ShapeError(
                f"{self!r}: expected integer labels of shape ({n},) for logits {pred.shape}. "
                f"Received: labels.shape={labels.shape}."
            )
        if labels.min() < 0 or labels.max() >= classes:
            raise ValueError(
                f"{self!r}: expected integer labels in [0, {classes}). "
                f"Received: min={labels.min()}, max={labels.max()}."
            )
        return labels

    def _forward(self, pred, target):
        shifted = pred - pred.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        sums = probs.sum(axis=1, keepdims=True)
        probs /= sums
        self._probs = probs
        log_sums = np.log(sums)
        if target.ndim == 1:
            picked = shifted[np.arange(len(target)), target]
            return (log_sums.sum() - picked.sum()) / pred.shape[0]
        return -np.sum(target * (shifted - log_sums)) / pred.shape[0]

    def _backward(self):
        n = self._probs.shape[0]
        if self._target.ndim == 1:
            grad = self._probs.copy()
            grad[np.arange(n), self._target] -= 1.0
        else:
            grad = self._probs - self._target
        grad *= 1.0 / n
        return grad


class Hinge(Loss):
    """Hinge loss with targets in {-1, +1}. pred, target: any shape (same), n elements.

    L = mean(max(0, 1 - y pred));  dL/dpred = -y / n where 1 - y pred > 0, else 0.
    """

    def _check_target(self, pred, target):
        target = super()._check_target(pred, target)
        if not np.all((target == 1) | (target == -1)):
            raise ValueError(
                f"{self!r}: expected target values in {{-1, +1}}. "
                f"Received: values {np.unique(target)[:5]}."
            )
        return target

    def _forward(self, pred, target):
        self._margin = 1.0 - target * pred
        return np.mean(np.maximum(self._margin, 0))

    def _backward(self):
        return np.where(self._margin > 0, -self._target, 0.0) * (1.0 / self._margin.size)


class KLDivergence(Loss):
    """KL divergence KL(target || pred) of probability rows, "batchmean". pred, target: (N, C).

    L = sum(y (log y - log p)) / N with 0 log 0 = 0 (torch's kl_div(log p, y, "batchmean"));
    dL/dp = -y / max(p, 1e-12) / N.  Logs are clamped at -100, so L stays finite when p = 0.
    """

    def _check_target(self, pred, target):
        check_ndim(pred, 2, self, "pred", " of shape (batch, classes)")
        target = super()._check_target(pred, target)
        self._check_range(pred, "pred (probabilities)")
        self._check_range(target, "target (probabilities)")
        return target

    def _forward(self, pred, target):
        y_log_y = target * _clamped_log(target)  # clamped log(0) = -100, so 0 log 0 = 0
        return np.sum(y_log_y - target * _clamped_log(pred)) / pred.shape[0]

    def _backward(self):
        p, y = self._pred, self._target
        return -y / np.maximum(p, _PROB_FLOOR) * (1.0 / p.shape[0])
