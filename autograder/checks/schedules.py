"""Checks of chapter 7's learning-rate schedules against `npdl.schedules`.

    check_schedule(StepLR, npdl.schedules.StepLR, kwargs={"step_size": 3})
"""

from __future__ import annotations

import inspect

import numpy as np

from autograder.checks.compare import (
    CheckFailed,
    construct,
    passed,
    run_student,
    trusted_scalar,
)
from autograder.checks.diagnose import likely


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
    passed(f"{name}: the learning rate matches the reference for {steps} epochs")


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
