"""Checks for losses, initializers, optimizers and schedules.

Re-exported by `autograder.checks`, the module hidden tests import.
"""

from __future__ import annotations

import inspect

import numpy as np

from autograder.diagnose import (
    CheckFailed,
    adam_without_bias_correction,
    check_unchanged,
    close,
    compare_arrays,
    construct,
    diagnose,
    extreme_values,
    init_statistics_message,
    likely,
    mismatch_message,
    run_student,
    tolerance,
    trusted_array,
    trusted_scalar,
)


def _passed(what: str) -> None:
    print(f"✔ {what}")


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
    _passed(f"{name}.{'/'.join(parts)} matches the reference on {len(cases)} inputs "
           "(random, batch of one, extreme values, float32)")


# ------------------------------------------------------------------ initializers

def check_function(student_fn, reference_fn, *, inputs, where=None) -> None:
    """A plain function on each argument tuple in ``inputs``: equal ints/tuples, close arrays."""
    where = where or getattr(student_fn, "__name__", "the function")
    for args in inputs:
        call = f"{where}({', '.join(map(repr, args))})"
        expected = reference_fn(*args)
        got = run_student(call, student_fn, *args)
        if isinstance(expected, np.ndarray):
            compare_arrays(got, expected, where=call)
            continue
        ok = type(got) in (tuple, list) and len(got) == len(expected) and all(
            type(g) in (int, float, np.int64) and g == e
            for g, e in zip(got, expected, strict=False))
        if not ok:
            swapped = type(got) in (tuple, list) and list(got) == list(expected)[::-1]
            hint = " Likely mistake: the two values are swapped." if swapped else ""
            raise CheckFailed(f"{call} returned {got!r}; expected {expected!r}.{hint}")
    _passed(f"{where} matches the reference on {len(inputs)} inputs")


def _instance(obj, where: str):
    """An initializer instance from a class (local, or a sandbox proxy of one) or an instance."""
    is_class = isinstance(obj, type) or type(obj).__name__ == "RemoteClass"
    return run_student(f"{where}.__init__", obj) if is_class else obj


def _is_orthogonal(w: np.ndarray) -> bool:
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    return bool(np.allclose(gram, gram[0, 0] * np.eye(len(gram)), atol=1e-8)) and gram[0, 0] > 0


def check_initializer(student_init, reference_init, *, seed=0) -> None:
    """Shapes, dtype, use of ``rng``; then the same values as the reference for the same rng,
    or else the same statistics (mean, std, normal vs uniform; orthogonality)."""
    name = getattr(student_init, "__name__", type(student_init).__name__)
    init, ref = _instance(student_init, name), _instance(reference_init, name)
    where = f"{name}.__call__"

    def draw(shape, rng):
        return trusted_array(run_student(where, init, shape, rng=rng), where=f"{where}{shape}")

    for shape in [(3, 5), (20, 10), (1, 7), (10, 20)]:
        w = draw(shape, np.random.default_rng(seed))
        expected = ref(shape, rng=np.random.default_rng(seed))
        if w.shape != expected.shape:
            raise CheckFailed(f"{where} returned shape {w.shape} for shape={shape}. "
                              f"Expected: {shape}.")
        if w.dtype != np.float64:
            raise CheckFailed(f"{where} returned dtype {w.dtype}; expected float64 by default.")
        again = draw(shape, np.random.default_rng(seed))
        if not np.array_equal(w, again):
            raise CheckFailed(f"{where} gives different values for the same rng seed. Likely "
                              "mistake: it ignores the rng argument; draw from rng (rng.normal, "
                              "rng.uniform), "
                              "never np.random.* directly.")
        draw(shape, None)  # rng=None must work too
        if np.allclose(w, expected, rtol=1e-10, atol=1e-12):
            continue
        if np.all(expected == expected.flat[0]):  # a constant initializer: exact values matter
            compare_arrays(w, expected, where=f"{where}({shape})")
        if _is_orthogonal(expected):
            if not _is_orthogonal(w) or not np.isclose(np.sum(w * w), np.sum(expected * expected)):
                raise CheckFailed(f"{where}({shape}) is not (semi-)orthogonal with the right gain: "
                                  f"expected W.T @ W = gain**2 I (or W @ W.T when rows < cols). "
                                  f"Likely mistake: use the Q of np.linalg.qr of the taller shape, "
                                  f"transpose it back, multiply by gain.")
            continue
        big = draw((400, 300), np.random.default_rng(seed + 1))
        big_ref = ref((400, 300), rng=np.random.default_rng(seed + 1))
        problem = init_statistics_message(big, big_ref)
        if problem:
            raise CheckFailed(f"{where}((400, 300)): {problem}.")
    _passed(f"{name}: shapes, dtype, rng use and the distribution match the reference")


# ------------------------------------------------------------------ optimizers

def _optimizer_variants(reference_cls, kwargs: dict) -> list:
    """(message, kwargs) for the reference run with a setting silently ignored."""
    variants = []
    if kwargs.get("nesterov"):
        variants.append(("nesterov=True is ignored (plain momentum is applied)",
                         {"nesterov": False}))
    if kwargs.get("momentum"):
        variants.append(("momentum is ignored", {"momentum": 0.0, "nesterov": False}))
    if kwargs.get("weight_decay"):
        variants.append(("weight_decay is ignored", {"weight_decay": 0.0}))
    return [(msg, dict(kwargs, **change)) for msg, change in variants]


def check_optimizer(student_cls, reference_cls, *, kwargs=None, steps=20, seed=0) -> None:
    """``step(params, grads)`` over several steps and parameters (two of the same shape,
    float64 and float32): in-place updates, untouched grads, state per position."""
    kwargs = dict(kwargs or {})
    name = getattr(student_cls, "__name__", "the optimizer")
    shapes = [(3, 4), (4,), (3, 4), (2, 1)]
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(seed)
        start = [rng.standard_normal(s).astype(dtype) for s in shapes]
        targets = [rng.standard_normal(s).astype(dtype) for s in shapes]
        ref, student = reference_cls(**kwargs), construct(student_cls, name, **kwargs)
        ref_params, params = [p.copy() for p in start], [p.copy() for p in start]
        history = []
        rtol, atol = tolerance(dtype)
        for t in range(1, steps + 1):
            grads = [(p - c + 0.3 * rng.standard_normal(p.shape)).astype(dtype)
                     for p, c in zip(ref_params, targets, strict=True)]
            history.append([g.copy() for g in grads])
            before = [p.copy() for p in params]
            ref.step(ref_params, [g.copy() for g in grads])
            run_student(f"{name}.step", student.step, list(params), grads)
            for g, saved in zip(grads, history[-1], strict=True):
                check_unchanged(g, saved, f"{name}.step", "a gradient")
            for i, (p, expected) in enumerate(zip(params, ref_params, strict=True)):
                where = f"{name}.step (step {t}, params[{i}] of shape {p.shape}, {np.dtype(dtype)})"
                if p.dtype != dtype:
                    raise CheckFailed(f"{where}: the parameter's dtype changed.")
                if mismatch_message(p, expected, where=where, rtol=rtol, atol=atol) is None:
                    continue
                likely = _optimizer_mistake(student_cls, reference_cls, kwargs, start, history,
                                            params, before, ref_params, i)
                raise CheckFailed(mismatch_message(p - before[i], expected - before[i],
                                                   where=where + " (the update p_new - p_old)",
                                                   rtol=rtol, atol=atol, diagnosis=likely))
    _passed(f"{name}.step matches the reference for {steps} steps on 4 parameters "
            "(float64, float32)")


def _optimizer_mistake(student_cls, reference_cls, kwargs, start, history, params, before,
                       ref_params, i) -> str | None:
    if np.array_equal(params[i], before[i]) and not np.array_equal(ref_params[i], before[i]):
        return ("the parameters are not updated in place: `p = p - ...` or `params[i] = ...` "
                "only rebinds a name; write p -= ... or p[...] = ...")
    alone = []
    try:
        for j, p0 in enumerate(start):  # the student's own optimizer, one parameter each
            solo, p = student_cls(**kwargs), p0.copy()
            for grads in history:
                solo.step([p], [grads[j].copy()])
            alone.append(p)
    except Exception:  # noqa: BLE001 (no diagnosis then; the mismatch itself is reported)
        alone = []
    if alone and all(close(a, r, rtol=1e-4) for a, r in zip(alone, ref_params, strict=True)):
        return ("the state is shared between parameters (e.g. keyed by shape or name): keep one "
                "state per position in the params list")
    candidates = []
    for message, variant_kwargs in _optimizer_variants(reference_cls, kwargs):
        variant, p = reference_cls(**variant_kwargs), [q.copy() for q in start]
        for grads in history:
            variant.step(p, [g.copy() for g in grads])
        candidates.append((message, p[i]))
    if reference_cls.__name__ in ("Adam", "AdamW"):
        decoupled = reference_cls.__name__ == "AdamW"
        biased = adam_without_bias_correction(start, history, kwargs, decoupled)
        candidates.append(("Adam without bias correction: divide m by (1 - beta1**t) and v by "
                           "(1 - beta2**t), with t counting steps from 1", biased[i]))
    delta = {"candidates": [(m, c - before[i]) for m, c in candidates]}
    return diagnose(params[i] - before[i], ref_params[i] - before[i], context=delta)


# ------------------------------------------------------------------ schedules

class _Optimizer:
    """The optimizer a schedule drives: only ``lr`` matters."""

    def __init__(self, lr: float) -> None:
        self.lr = lr


def check_schedule(student_cls, reference_cls, *, kwargs=None, steps=30) -> None:
    """The learning rate after construction and after each ``step()`` (``step(metric)`` for
    ReduceLROnPlateau, fed a loss that improves, then plateaus)."""
    kwargs = dict(kwargs or {})
    name = getattr(student_cls, "__name__", "the schedule")
    params = inspect.signature(reference_cls.step).parameters
    metrics = [1.0 / (1 + t) if t < 8 else 0.1 + 0.01 * (t % 3) for t in range(steps)]
    opt_ref, opt = _Optimizer(0.1), _Optimizer(0.1)
    ref = reference_cls(opt_ref, **kwargs)
    expected = [float(opt_ref.lr)]
    for t in range(steps + 1):
        ref.step(*((metrics[t % steps],) if len(params) > 1 else ()))
        expected.append(float(opt_ref.lr))
    sched, got = construct(student_cls, name, opt, **kwargs), []
    # A sandboxed schedule holds its own copy of the optimizer: read the lr there.
    holder = sched.optimizer if type(sched).__name__ == "RemoteObject" else opt
    for t in range(steps + 1):
        got.append(trusted_scalar(holder.lr, where=f"{name}: optimizer.lr", what="optimizer.lr"))
        if t < steps:
            run_student(f"{name}.step", sched.step, *((metrics[t],) if len(params) > 1 else ()))
    wrong = ~np.isclose(got, expected[:-1], rtol=1e-9, atol=1e-15)
    if wrong.any():
        t = int(np.argmax(wrong))
        raise CheckFailed(f"{name}: optimizer.lr is {got[t]:.6g} after {t} step() calls; expected "
                          f"{expected[t]:.6g}. Expected so far {_fmt(expected[:t + 1])}, yours "
                          f"{_fmt(got[:t + 1])}.{likely(_schedule_mistake(got, expected))}")
    _passed(f"{name}: the learning rate matches the reference for {steps} epochs")


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values[-6:]) + "]"


def _schedule_mistake(got, expected) -> str | None:
    """Recognise a constant lr or a sequence shifted by one epoch."""
    got, expected = np.array(got), np.array(expected)
    if np.all(got == got[0]) and not np.all(expected == expected[0]):
        return "step() never changes optimizer.lr: assign the new value to self.optimizer.lr"
    if np.allclose(got, expected[1:], rtol=1e-9):
        return "one epoch ahead: the epoch counter starts one too high (torch counts from 0)"
    if np.allclose(got[1:], expected[:-2], rtol=1e-9):
        return "one epoch behind: update the epoch counter before computing the new lr"
    return None
