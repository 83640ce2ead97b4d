"""Checks of chapter 5 (losses): value and gradient against `npdl.losses`.

    check_loss(MSELoss, npdl.losses.MSELoss, parts=("backward",))
"""

from __future__ import annotations

import numpy as np

from autograder.checks.compare import (
    CheckFailed,
    check_unchanged,
    compare_arrays,
    construct,
    extreme_values,
    passed,
    run_student,
    tolerance,
    trusted_scalar,
)
from autograder.checks.diagnose import diagnose, likely, mismatch_message


def _softmax_rows(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _loss_data(rng, target: str, pred_kind: str, shape, extreme: bool):
    """(pred, target) for one case; probabilities stay in [1e-6, 1 - 1e-6] (no clipping)."""
    z = extreme_values(rng, shape) if extreme else 2 * rng.standard_normal(shape)
    if pred_kind == "probs" and target in ("onehot", "probs"):
        p = _softmax_rows(z)
        pred = (p + 1e-6) / (1 + 1e-6 * shape[-1])
    elif pred_kind == "probs":
        pred = np.clip(1 / (1 + np.exp(-np.clip(z, -50, 50))), 1e-6, 1 - 1e-6)
    else:
        pred = z
    labels = rng.integers(0, shape[-1], size=shape[0])
    y = {
        "regression": lambda: rng.standard_normal(shape),
        "binary": lambda: rng.integers(0, 2, size=shape).astype(np.float64),
        "pm1": lambda: rng.choice([-1.0, 1.0], size=shape),
        "onehot": lambda: np.eye(shape[-1])[labels],
        "labels": lambda: labels.astype(np.int64),
        "probs": lambda: _softmax_rows(rng.standard_normal(shape)),
    }[target]()
    return pred, y


def _pred_kind(reference_cls, kwargs, target: str) -> str:
    if kwargs.get("from_logits") or target == "labels" or "Softmax" in reference_cls.__name__:
        return "logits"
    return "probs" if target in ("binary", "onehot", "probs") else "scores"


def check_loss(student_cls, reference_cls, *, kwargs=None, target="regression", seed=0,
               parts=("forward", "backward"), pred_kind=None) -> None:
    """Loss value and dL/dpred against the reference.

    ``target``: "regression", "binary" (0/1), "onehot", "labels" (int), "pm1" (+-1) or "probs".
    ``pred_kind`` ("logits", "probs", "scores") is inferred from the loss when not given.
    """
    kwargs = dict(kwargs or {})
    name = getattr(student_cls, "__name__", "the loss")
    kind = pred_kind or _pred_kind(reference_cls, kwargs, target)
    rng = np.random.default_rng(seed)
    wide = target in ("onehot", "labels", "probs")
    shapes = [(4, 3), (1, 3), (6, 5)] if wide else [(4, 3), (1, 1), (5,)]
    cases = [("random input", s, np.float64, False) for s in shapes]
    cases += [("extreme values", shapes[0], np.float64, True),
              ("float32 input", shapes[0], np.float32, False)]
    for label, shape, dtype, extreme in cases:
        pred, y = _loss_data(rng, target, kind, shape, extreme)
        pred = pred.astype(dtype)
        y = y if y.dtype.kind == "i" else y.astype(dtype)
        ref = reference_cls(**kwargs)
        expected = ref.forward(pred.copy(), y.copy())
        expected_grad = ref.backward()
        student = construct(student_cls, name, **kwargs)
        saved = (pred.copy(), y.copy())
        where, on = f"{name}.forward", f" (on {label}, pred shape {shape})"
        value = trusted_scalar(run_student(where + on, student.forward, pred, y), where=where)
        check_unchanged(pred, saved[0], where, "pred")
        check_unchanged(y, saved[1], where, "target")
        rtol, atol = tolerance(dtype)
        ctx = {"dtype": np.dtype(dtype), "batch_size": shape[0], "num_elements": pred.size}
        note = f" ({label}, target {target})"
        if "forward" in parts:
            message = mismatch_message(np.array(value), np.array(expected), where=where + note,
                                       input_shape=shape, dtype=dtype, rtol=rtol, atol=atol)
            if message:
                diagnosis = diagnose(np.array(value), np.array(expected), context=ctx)
                raise CheckFailed(message + likely(diagnosis))
        if "backward" in parts:
            grad = run_student(f"{name}.backward{on}", student.backward)
            check_unchanged(pred, saved[0], f"{name}.backward", "pred")
            scale = max(1.0, float(np.max(np.abs(expected_grad))))
            compare_arrays(grad, expected_grad, where=f"{name}.backward{note}", input_shape=shape,
                           context=ctx, rtol=rtol, atol=atol * scale)
    passed(f"{name}.{'/'.join(parts)} matches the reference on {len(cases)} inputs "
           "(random, batch of one, extreme values, float32)")
