"""Checks of chapter 6's callbacks: ``EarlyStopping`` against `npdl.callbacks.EarlyStopping`.

    check_early_stopping(EarlyStopping)
"""

from __future__ import annotations

import numpy as np

from autograder.checks.compare import (
    CheckFailed,
    construct,
    passed,
    run_student,
)
from autograder.checks.models import layer_stack, npdl_modules
from autograder.checks.stand_ins import WeightsOnly

_SCENARIOS = [
    ({"monitor": "val_loss", "patience": 2}, [1.0, 0.8, 0.85, 0.7, 0.75, 0.72, 0.9, 0.6]),
    (
        {"monitor": "val_loss", "patience": 3, "min_delta": 0.05},
        [1.0, 0.9, 0.87, 0.86, 0.8, 0.79, 0.78, 0.5],
    ),
    ({"monitor": "val_accuracy", "patience": 1}, [0.5, 0.7, 0.65, 0.8, 0.8, 0.9]),
    ({"monitor": "loss", "patience": 2, "restore_best": False}, [2.0, 1.5, 1.6, 1.7, 1.0]),
    ({"monitor": "val_loss", "patience": 0}, [1.0, 0.9, 0.95, 0.5]),
]


def check_early_stopping(student_cls) -> None:
    """Stop decisions epoch by epoch and the weights restored at the end, against npdl's."""
    from npdl.callbacks import EarlyStopping

    for kwargs, values in _SCENARIOS:
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        name = f"EarlyStopping({args})"
        student, ref = construct(student_cls, "EarlyStopping", **kwargs), EarlyStopping(**kwargs)
        for run in (1, 2):  # the second run checks that on_train_begin resets the state
            ref_model = npdl_modules()[3].Sequential(layer_stack("batchnorm"))
            model = WeightsOnly(layer_stack("batchnorm"))
            layers = model.layers
            arrays = [a for layer in layers for a in {**layer.params, **layer.buffers}.values()]
            run_student(f"{name}.on_train_begin", student.on_train_begin, model)
            ref.on_train_begin(ref_model)
            for epoch, value in enumerate(values):
                for m in (model, ref_model):  # epoch e's weights: every value is e
                    for a in m.state_dict().values():
                        a[...] = epoch
                logs = {kwargs["monitor"]: value, "other": 0.0}
                expected = ref.on_epoch_end(epoch, dict(logs), ref_model)
                got = run_student(
                    f"{name}.on_epoch_end", student.on_epoch_end, epoch, dict(logs), model
                )
                if bool(got) != expected:
                    raise CheckFailed(_stop_message(name, values, epoch, bool(got), run))
                if expected:
                    break
            else:
                epoch = len(values) - 1
            run_student(f"{name}.on_train_end", student.on_train_end, model)
            ref.on_train_end(ref_model)
            _check_restored(name, layers, arrays, ref_model, epoch, ref.best_epoch)
    passed(
        "EarlyStopping stops at the right epoch and restores the best weights "
        "(5 scenarios, run twice)"
    )


def _stop_message(name, values, epoch, got, run) -> str:
    seen = ", ".join(f"{v:g}" for v in values[: epoch + 1])
    again = (
        " in a second training run (on_train_begin must reset best, wait and the saved state)"
        if run == 2
        else ""
    )
    if got:
        hint = (
            "it stops too early: count the epochs without improvement "
            "(reset the count on an improvement) "
            "and stop when the count reaches patience"
        )
    else:
        hint = (
            "it does not stop when the number of epochs without improvement reaches patience "
            "(wait >= patience)"
        )
    return (
        f"{name}.on_epoch_end returned {got} at epoch {epoch}{again} after the monitored "
        f"values [{seen}]; expected {not got}. Likely mistake: {hint}. An improvement means "
        f"lower by more than min_delta "
        f"(higher for a monitor containing 'acc')."
    )


def _check_restored(name, layers, arrays, ref_model, last_epoch, best_epoch) -> None:
    now = [a for layer in layers for a in {**layer.params, **layer.buffers}.values()]
    if any(a is not b for a, b in zip(now, arrays, strict=True)):
        raise CheckFailed(
            f"{name}.on_train_end replaced the model's arrays with new objects. Likely mistake: "
            f"copy the saved values INTO the existing arrays, array[...] = saved (the optimizer "
            f"holds references to them)."
        )
    expected = ref_model.state_dict()
    for key, array in zip(expected, now, strict=True):
        if np.array_equal(array, expected[key]):
            continue
        value = float(array.flat[0])
        if value == last_epoch and best_epoch is not None:
            hint = (
                f"the weights of the last epoch ({last_epoch}) are left in place instead of "
                f"the best epoch's "
                f"({best_epoch}). Save copies when the monitor improves, {{k: v.copy() for k, v in "
                f"model.state_dict().items()}} (without .copy() the saved arrays keep "
                f"changing), and copy "
                f"them back in on_train_end"
            )
        elif best_epoch is None or not expected[key].flat[0] == best_epoch:
            hint = "restore_best=False: on_train_end must leave the weights alone"
        else:
            hint = f"restored the weights of epoch {value:g}, but the best epoch was {best_epoch}"
        raise CheckFailed(
            f"{name}.on_train_end: model.state_dict()[{key!r}] is wrong after training stopped at "
            f"epoch {last_epoch}. Likely mistake: {hint}."
        )
