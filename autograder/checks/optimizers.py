"""Checks of chapter 7 (optimizers): update rules over many steps, and gradient clipping.

    check_optimizer(Adam, npdl.optimizers.Adam, kwargs={"lr": 0.01})
"""

from __future__ import annotations

import math

import numpy as np

from autograder.checks.compare import (
    CheckFailed,
    check_unchanged,
    compare_arrays,
    construct,
    passed,
    run_student,
    tolerance,
    trusted_array,
    trusted_scalar,
)
from autograder.checks.diagnose import as_float64, close, diagnose, mismatch_message


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


_SHAPES = [(3, 4), (4,), (3, 4), (2, 1)]


def _runs(reference_cls, kwargs, steps, seed):
    """Per dtype: (start params, [(grads, reference params after the step)] for every step).
    Each step's gradient points from the reference's parameters to a target, plus noise."""
    for dtype in (np.float64, np.float32):
        rng = np.random.default_rng(seed)
        start = [rng.standard_normal(s).astype(dtype) for s in _SHAPES]
        targets = [rng.standard_normal(s).astype(dtype) for s in _SHAPES]
        ref, ref_params, run = reference_cls(**kwargs), [p.copy() for p in start], []
        for _ in range(steps):
            grads = [(p - c + 0.3 * rng.standard_normal(p.shape)).astype(dtype)
                     for p, c in zip(ref_params, targets, strict=True)]
            ref.step(ref_params, [g.copy() for g in grads])
            run.append((grads, [p.copy() for p in ref_params]))
        yield dtype, start, run


def check_optimizer(student_cls, reference_cls, *, kwargs=None, steps=20, seed=0,
                    decoupled_from=None) -> None:
    """``step(params, grads)`` over several steps and parameters (two of the same shape,
    float64 and float32): in-place updates, untouched grads, state per position.

    ``decoupled_from`` (AdamW: the student's ``Adam``): AdamW's own logic is the decoupled
    weight decay, p *= 1 - lr * weight_decay, then the Adam step without the L2 term. It is
    also accepted when it follows that rule with the student's OWN Adam, whatever that Adam's
    own mistakes (they cost the Adam test only: no cascade).
    """
    kwargs = dict(kwargs or {})
    try:
        _check_optimizer(student_cls, reference_cls, kwargs, steps, seed)
    except CheckFailed:
        if decoupled_from is None or not _follows_own_base(student_cls, reference_cls,
                                                           decoupled_from, kwargs, steps, seed):
            raise
        name = getattr(student_cls, "__name__", "the optimizer")
        base = getattr(decoupled_from, "__name__", "the base optimizer")
        passed(f"{name}.step is the decoupled weight decay followed by your own {base}.step "
               f"for {steps} steps on 4 parameters (float64, float32); {base} itself is graded "
               f"by its own test")


def _follows_own_base(student_cls, reference_cls, base_cls, kwargs, steps, seed) -> bool:
    """True if the student's AdamW equals: p *= 1 - lr * wd, then the student's Adam (wd = 0)."""
    settings = reference_cls(**kwargs)
    lr, decay = float(settings.lr), float(settings.weight_decay)
    base_kwargs = {**kwargs, "weight_decay": 0.0}
    try:
        for dtype, start, run in _runs(reference_cls, kwargs, steps, seed):
            student = construct(student_cls, "AdamW", **kwargs)
            base = construct(base_cls, "Adam", **base_kwargs)
            params, own = [p.copy() for p in start], [p.copy() for p in start]
            rtol, atol = tolerance(dtype)
            for grads, _ in run:
                mine, theirs = [g.copy() for g in grads], [g.copy() for g in grads]
                run_student("AdamW.step", student.step, params, mine)
                for p in own:
                    p *= dtype(1 - lr * decay)
                run_student("Adam.step", base.step, own, theirs)
                # the same parameters, and the gradients left as the student's Adam leaves them
                pairs = [*zip(params, own, strict=True), *zip(mine, theirs, strict=True)]
                if any(a.dtype != b.dtype or mismatch_message(a, b, where="", rtol=rtol, atol=atol)
                       for a, b in pairs):
                    return False
    except CheckFailed:
        return False
    return True


def _check_optimizer(student_cls, reference_cls, kwargs, steps, seed) -> None:
    name = getattr(student_cls, "__name__", "the optimizer")
    for dtype, start, run in _runs(reference_cls, kwargs, steps, seed):
        student = construct(student_cls, name, **kwargs)
        params = [p.copy() for p in start]
        history = []
        rtol, atol = tolerance(dtype)
        for t, (grads, ref_params) in enumerate(run, start=1):
            grads = [g.copy() for g in grads]
            history.append([g.copy() for g in grads])
            before = [p.copy() for p in params]
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
    passed(f"{name}.step matches the reference for {steps} steps on 4 parameters "
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


def adam_without_bias_correction(params, grads_history, kwargs: dict, decoupled: bool) -> list:
    """Adam/AdamW run without bias correction: the trusted 'likely mistake' answer."""
    lr, eps = kwargs.get("lr", 1e-3), kwargs.get("eps", 1e-8)
    beta1, beta2 = kwargs.get("betas", (0.9, 0.999))
    decay = kwargs.get("weight_decay", 1e-2 if decoupled else 0.0)
    params = [as_float64(p).copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    for grads in grads_history:
        for i, (p, g) in enumerate(zip(params, map(as_float64, grads), strict=True)):
            if decoupled:
                p *= 1 - lr * decay
            else:
                g = g + decay * p
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            p -= lr * m[i] / (np.sqrt(v[i]) + eps)
    return params


def check_clip_grad_norm(student_fn, seed=0) -> None:
    """Global-norm clipping in place, the returned norm, no change below max_norm, float32 kept."""
    from npdl.optimizers import clip_grad_norm

    rng = np.random.default_rng(seed)
    shapes = [(3, 4), (4,), (2, 1)]
    for max_norm, dtype in [
        (1.0, np.float64),
        (100.0, np.float64),
        (0.5, np.float32),
        (2.0, np.float64),
    ]:
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        ref = [g.copy() for g in grads]
        expected_total = clip_grad_norm(ref, max_norm)
        where = f"clip_grad_norm(grads of shapes {shapes}, max_norm={max_norm}) ({np.dtype(dtype)})"
        before = [g.copy() for g in grads]
        total = trusted_scalar(
            run_student(where, student_fn, grads, max_norm), where=where, what="the returned norm"
        )
        after = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in ref))
        compare_arrays(
            np.array(total),
            np.array(expected_total),
            where=f"{where}: the returned norm",
            context={
                "candidates": [
                    (
                        "it returns the norm AFTER clipping; return the total norm "
                        "computed before scaling",
                        np.array(after),
                    )
                ]
            },
            rtol=1e-5 if dtype == np.float32 else 1e-9,
        )
        got = np.concatenate(
            [trusted_array(g, where=where, what="each gradient").ravel() for g in grads]
        )
        flat_ref = np.concatenate([g.ravel() for g in ref])
        flat_before = np.concatenate([g.ravel() for g in before])
        each = np.concatenate(
            [(g * min(1.0, max_norm / (np.linalg.norm(g) + 1e-6))).ravel() for g in before]
        )
        always = flat_before * (max_norm / (expected_total + 1e-6))
        candidates = [
            (
                "the gradients are not changed in place: g *= scale "
                "(g = g * scale only rebinds a name)",
                flat_before,
            ),
            (
                "each gradient is clipped by its own norm; use ONE global norm over all of them",
                each,
            ),
            (
                "the gradients are scaled even when the norm is below max_norm: "
                "scale = min(1, ...)",
                always,
            ),
        ]
        compare_arrays(
            got,
            flat_ref,
            where=f"{where}: the gradients afterwards (flattened)",
            context={"candidates": candidates, "dtype": np.dtype(dtype)},
            rtol=1e-4 if dtype == np.float32 else 1e-9,
            atol=1e-6 if dtype == np.float32 else 1e-12,
        )
        if any(g.dtype != dtype for g in grads):
            raise CheckFailed(
                f"{where}: a gradient's dtype changed. Likely mistake: keep float32 float32."
            )
    passed(
        "clip_grad_norm matches torch's clip_grad_norm_ "
        "(global norm, in place, float32, returned norm)"
    )
