"""Classification accuracy, and how to tell a classification target from a regression one.

Three kinds of classification targets are understood:

* multi-class, integer labels ``(N,)`` against outputs ``(N, C)``: argmax of the outputs;
* multi-class, one-hot (or probability) targets ``(N, C)``: argmax of both;
* binary, one output column ``(N, 1)`` or ``(N,)`` against 0/1 (or -1/+1)
  targets: the prediction is ``output > threshold``. Use ``threshold=0.5``
  for probabilities (sigmoid outputs) and ``threshold=0.0`` for logits or
  hinge scores.
"""

from __future__ import annotations

import numpy as np

from npdl.core import ShapeError

__all__ = ["accuracy", "count_correct", "is_classification_target"]


def is_classification_target(y) -> bool:
    """True for integer labels, one-hot rows, or a single column of 0/1 or -1/+1 values."""
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer) or y.dtype == bool:
        return True
    if y.size == 0 or not np.issubdtype(y.dtype, np.floating):
        return False
    if y.ndim == 2 and y.shape[1] > 1:
        return bool(np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1))
    values = np.unique(y)
    return bool(np.isin(values, (0, 1)).all() or np.isin(values, (-1, 1)).all())


def count_correct(outputs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> int:
    """Number of correctly classified samples in a batch (see the module docstring)."""
    outputs = np.asarray(outputs)
    targets = np.asarray(targets)
    if len(outputs) != len(targets):
        raise ShapeError(
            f"accuracy: expected outputs and targets with the same number of samples. "
            f"Received: outputs.shape={outputs.shape}, targets.shape={targets.shape}."
        )
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        predicted = outputs.argmax(axis=1)
        if targets.ndim == 2:
            if targets.shape != outputs.shape:
                raise ShapeError(
                    f"accuracy: expected one-hot targets of shape {outputs.shape}. "
                    f"Received: targets.shape={targets.shape}."
                )
            targets = targets.argmax(axis=1)
        return int(np.count_nonzero(predicted == targets.reshape(len(targets))))
    # binary: one score per sample
    if outputs.size != len(outputs) or targets.size != len(targets):
        raise ShapeError(
            f"accuracy: expected one output and one target per sample for binary accuracy. "
            f"Received: outputs.shape={outputs.shape}, targets.shape={targets.shape}."
        )
    predicted = outputs.reshape(-1) > threshold
    return int(np.count_nonzero(predicted == (targets.reshape(-1) > 0)))


def accuracy(outputs: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> float:
    """Fraction of correctly classified samples, in [0, 1].

    outputs: (N, C) scores/probabilities, or (N, 1)/(N,) for binary problems.
    targets: (N,) integer labels, (N, C) one-hot, or (N, 1)/(N,) with 0/1 or -1/+1.
    """
    n = len(outputs)
    if n == 0:
        raise ValueError("accuracy: expected at least one sample. Received: 0.")
    return count_correct(outputs, targets, threshold) / n
