"""Hidden-test checks around the training loop: batches, evaluate/predict, EarlyStopping, clipping.

Companions of `autograder.model_checks` (assignments 06_models and 07_optimizers): the student's
function or class runs next to its `npdl` reference on seeded data, and a mismatch raises
`CheckFailed` naming the call, the inputs and the likely mistake.

    check_early_stopping(EarlyStopping)
"""

from __future__ import annotations

import math

import numpy as np

from autograder.checks import CheckFailed, compare_arrays, passed
from autograder.diagnose import construct, run_student, trusted_array, trusted_scalar
from autograder.model_checks import (
    _layer_outputs,
    _npdl,
    _pair,
    _reference_helpers,
    _stack,
    _unchanged,
)
from autograder.stand_ins import WeightsOnly

# ------------------------------------------------------------------ batches


def check_batches(student_fn, seed=0) -> None:
    """Coverage, order, the last partial batch, x/y alignment, and the rng.permutation shuffle."""
    from npdl.data import batches as reference

    x = np.arange(23 * 2, dtype=np.float64).reshape(23, 2)
    y = np.arange(23)
    for batch_size, shuffle, rng in [
        (5, False, None),
        (23, False, None),
        (40, False, None),
        (1, False, None),
        (5, True, seed),
        (8, True, seed + 1),
    ]:
        call = (
            f"batches(x, y, batch_size={batch_size}, shuffle={shuffle}, rng={rng}) with 23 samples"
        )
        saved = x.copy(), y.copy()
        got = run_student(
            call,
            lambda b=batch_size, s=shuffle, r=rng: list(
                student_fn(x, y, batch_size=b, shuffle=s, rng=r)
            ),
        )
        _unchanged(x, saved[0], call, "x")
        _unchanged(y, saved[1], call, "y")
        expected = list(reference(x, y, batch_size=batch_size, shuffle=shuffle, rng=rng))
        _compare_batches(got, expected, call, batch_size, with_y=True)
    got = run_student("batches(x, batch_size=10)", lambda: list(student_fn(x, batch_size=10)))
    _compare_batches(
        got, list(reference(x, batch_size=10)), "batches(x, batch_size=10) without y", 10, False
    )
    gen, ref_gen = np.random.default_rng(seed), np.random.default_rng(seed)
    for epoch in range(2):
        call = (
            f"batches(x, y, batch_size=5, shuffle=True, rng=<the same Generator>), pass {epoch + 1}"
        )
        got = run_student(call, lambda: list(student_fn(x, y, batch_size=5, shuffle=True, rng=gen)))
        _compare_batches(
            got, list(reference(x, y, batch_size=5, shuffle=True, rng=ref_gen)), call, 5, True
        )
    passed(
        "batches: every sample once, the last partial batch, x/y aligned, the same shuffle as "
        "rng.permutation(n)"
    )


def _compare_batches(got, expected, call, batch_size, with_y) -> None:
    sizes = [len(b[0] if with_y else b) for b in expected]
    if with_y and any(not (isinstance(b, tuple) and len(b) == 2) for b in got):
        raise CheckFailed(
            f"{call}: expected (xb, yb) pairs when y is given. Received: {type(got[0]).__name__}."
        )
    if not with_y and got and isinstance(got[0], tuple):
        raise CheckFailed(f"{call}: expected the x batches alone when y is None. Received: tuples.")
    got_x = [trusted_array(b[0] if with_y else b, where=call, what="each x batch") for b in got]
    got_sizes = [len(b) for b in got_x]
    if got_sizes != sizes:
        n = sum(sizes)
        hint = (
            "the last partial batch is missing: range(0, n, batch_size) keeps it"
            if got_sizes == sizes[:-1]
            else "slice x[start:start + batch_size] for start in range(0, n, batch_size)"
        )
        raise CheckFailed(
            f"{call}: expected batch sizes {sizes} ({n} samples). Received: {got_sizes}. "
            f"Likely mistake: {hint}."
        )
    seen = np.concatenate(got_x)[:, 0] // 2
    order = np.concatenate([b[0] if with_y else b for b in expected])[:, 0] // 2
    if sorted(seen.tolist()) != list(range(len(order))):
        raise CheckFailed(
            f"{call}: every sample must appear exactly once per pass. Received the sample "
            f"indices {seen.astype(int).tolist()}."
        )
    if not np.array_equal(seen, order):
        shuffled = "shuffle=True" in call
        hint = (
            "draw the order with one call order = rng.permutation(n) "
            "(rng = np.random.default_rng(rng) "
            "unless it already is a Generator) and yield x[order[start:start + batch_size]]"
            if shuffled
            else "without shuffle the samples keep their order"
        )
        raise CheckFailed(
            f"{call}: the samples come in the order {seen.astype(int).tolist()[:12]}..., "
            f"expected {order.astype(int).tolist()[:12]}.... Likely mistake: {hint}."
        )
    if with_y:
        for xb, yb in got:
            if not np.array_equal(np.asarray(yb), xb[:, 0] // 2):
                raise CheckFailed(
                    f"{call}: yb does not belong to xb (x and y shuffled differently). Index "
                    f"both with the same permutation: x[part], y[part]."
                )


# ------------------------------------------------------------------ evaluate / predict


def _modes(layers):
    return [layer.training for layer in layers]


def _check_modes(layers, before, where):
    after = _modes(layers)
    if after != before:
        changed = [i for i, (a, b) in enumerate(zip(after, before, strict=True)) if a != b]
        raise CheckFailed(
            f"{where} changed the mode of layer(s) {changed}: training={before} before the call, "
            f"{after} after. Likely mistake: evaluate/predict must give every layer its previous "
            f"mode back: save [layer.training for layer in self.layers] first, "
            f"restore it at the end."
        )


def check_evaluate(student_cls, *, namespace=None, seed=0) -> None:
    """evaluate(x, y, loss) and predict(x, batch_size): eval mode, each layer's mode restored."""
    _, _, losses, _ = _npdl()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((13, 5))
    labels = rng.integers(0, 3, 13)
    targets = [
        ("integer labels", labels, losses.SoftmaxCrossEntropy),
        ("one-hot targets", np.eye(3)[labels], losses.SoftmaxCrossEntropy),
        ("regression targets", rng.standard_normal((13, 3)), losses.MSE),
    ]
    for modes in ([True] * 5, [True, False, True, True, False]):
        for label, y, loss_cls in targets:
            model, ref, layers = _pair(student_cls, "dropout", seed)
            warm = rng.standard_normal((8, 5))  # non-trivial running statistics, same in both
            _layer_outputs(layers, warm.copy())
            _layer_outputs(ref.layers, warm.copy())
            for layer, ref_layer, mode in zip(layers, ref.layers, modes, strict=True):
                layer.training = ref_layer.training = mode
            running = layers[1].buffers["running_mean"].copy()
            expected = ref.evaluate(x, y, loss_cls())
            where = (
                f"Sequential.evaluate(x, y, {loss_cls.__name__}()) with {label}, "
                f"x of shape {x.shape}"
            )
            with _reference_helpers(namespace):
                got = run_student(where, model.evaluate, x, y, loss_cls())
            if not np.array_equal(layers[1].buffers["running_mean"], running):
                raise CheckFailed(
                    f"{where} ran the model in training mode: BatchNorm updated its running "
                    f"statistics (and Dropout drops units). Likely mistake: call self.eval() "
                    f"before the forward pass."
                )
            _check_modes(layers, modes, where)
            if not isinstance(got, dict) or "loss" not in got:
                raise CheckFailed(
                    f"{where}: expected a dict {{'loss': ..., 'accuracy': ...}}. Received: {got!r}."
                )
            for key, value in expected.items():
                if key not in got:
                    raise CheckFailed(
                        f"{where}: expected the key {key!r} in the result. Received: {sorted(got)}."
                    )
                number = trusted_scalar(got[key], where=f"{where}[{key!r}]", what=key)
                compare_arrays(
                    np.array(number),
                    np.array(value),
                    where=f"{where}[{key!r}]",
                    rtol=1e-7,
                    atol=1e-12,
                )
            for batch_size in (None, 4):
                call = f"Sequential.predict(x, batch_size={batch_size}) with x of shape {x.shape}"
                with _reference_helpers(namespace):
                    out = run_student(call, model.predict, x, batch_size=batch_size)
                _check_modes(layers, modes, call)
                if not np.array_equal(layers[1].buffers["running_mean"], running):
                    raise CheckFailed(
                        f"{call} ran the model in training mode: BatchNorm updated its running "
                        f"statistics. Likely mistake: call self.eval() before the forward pass."
                    )
                compare_arrays(
                    out, ref.predict(x, batch_size=batch_size), where=call, input_shape=x.shape
                )
    passed("Sequential.evaluate and predict match npdl in eval mode and restore every layer's mode")


# ------------------------------------------------------------------ EarlyStopping

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
            ref_model = _npdl()[3].Sequential(_stack("batchnorm"))
            model = WeightsOnly(_stack("batchnorm"))
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


# ------------------------------------------------------------------ clip_grad_norm


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
