"""Checks of chapter 6's training loop: ``Sequential.fit_epoch`` and ``evaluate``/``predict``.

The student's method runs next to `npdl.models.Sequential` on seeded data, with models built from
npdl layers, losses and stand-in optimizers only (no cascade); where a method calls the student's
own ``batches``, the check replaces it for its duration (``namespace=globals()``) by the batches
npdl's ``batches`` gives for this check's calls, recorded as data (`stand_ins.recorded_batches`):
npdl.data is this chapter's answer and never goes to student code.

    check_fit_epoch(Sequential, namespace=globals())
"""

from __future__ import annotations

import copy

import numpy as np

from autograder.checks.compare import (
    CheckFailed,
    compare_arrays,
    construct,
    passed,
    run_student,
    trusted_array,
    trusted_scalar,
)
from autograder.checks.models import (
    STACK_INPUT,
    check_untouched,
    layer_outputs,
    layer_stack,
    model_pair,
    npdl_modules,
)
from autograder.checks.stand_ins import MomentumSGD, recorded_batches, replaced


def _reference_epoch(
    layers,
    x,
    y,
    loss,
    optimizer,
    batch_size,
    rng,
    *,
    train=True,
    shuffle=True,
    drop_last=False,
    weighted=True,
):
    """One trusted epoch (and the variants that name a mistake): (params, mean loss)."""
    from npdl.data import batches

    _, _, _, models = npdl_modules()
    model = models.Sequential(layers)
    model.train() if train else model.eval()
    total, count, losses = 0.0, 0, []
    for xb, yb in batches(x, y, batch_size, shuffle=shuffle, rng=np.random.default_rng(rng)):
        if drop_last and len(xb) < batch_size:
            continue
        value = float(loss.forward(model.forward(xb), yb))
        total, count = total + value * len(xb), count + len(xb)
        losses.append(value)
        model.backward(loss.backward())
        optimizer.step(model.params(), model.grads())
    mean = (total / max(count, 1)) if weighted else float(np.mean(losses or [0.0]))
    return np.concatenate([p.ravel() for p in model.params()]), mean


def _batches_of_this_check(n: int, batch_size: int, seed: int) -> dict:
    """The stand-in for the student's ``batches``: npdl's mini-batches of ``n`` samples for
    ``batch_size`` with ``rng=seed`` (or a fresh default_rng(seed)), in order without shuffling,
    and another order for any other rng."""
    from npdl.data import batches

    index = np.arange(n)
    shuffled = list(batches(index, batch_size=batch_size, shuffle=True,
                            rng=np.random.default_rng(seed)))
    plays = {
        f"seed/{batch_size}": shuffled,
        f"in order/{batch_size}": list(batches(index, batch_size=batch_size)),
        f"other/{batch_size}": list(batches(np.concatenate(shuffled)[::-1].copy(),
                                            batch_size=batch_size)),
    }
    fresh = str(np.random.default_rng(seed).bit_generator.state["state"])
    return {"batches": recorded_batches(plays, seed, fresh)}


def check_fit_epoch(student_cls, *, namespace=None, seed=0) -> None:
    """One epoch of fit: train mode, shuffled batches, forward, loss, backward, optimizer step.

    Compared with npdl given identical models, data, optimizer and rng seed: every parameter
    after the epoch, and the returned sample-weighted mean training loss.
    """
    from npdl.optimizers import SGD

    _, _, losses, _ = npdl_modules()
    rng = np.random.default_rng(seed)
    cases = [
        ("batchnorm", 22, 4, losses.SoftmaxCrossEntropy, "labels"),
        ("mlp", 20, 8, losses.MSE, "regression"),
        ("mlp", 5, 16, losses.SoftmaxCrossEntropy, "labels"),
    ]
    for kind, n, batch_size, loss_cls, target in cases:
        layers = layer_stack(kind, seed)
        x = rng.standard_normal((n, *STACK_INPUT[kind]))
        y = rng.integers(0, 3, n) if target == "labels" else rng.standard_normal((n, 3))
        model = construct(student_cls, "Sequential", copy.deepcopy(layers))
        run_student("Sequential.eval", model.eval)  # fit_epoch must switch to training mode itself
        expected_params, expected_loss = _reference_epoch(
            copy.deepcopy(layers), x, y, loss_cls(), SGD(lr=0.1, momentum=0.9), batch_size, seed
        )
        where = (
            f"Sequential.fit_epoch(x, y, loss={loss_cls.__name__}(), "
            f"optimizer=SGD(lr=0.1, momentum=0.9), "
            f"batch_size={batch_size}, rng={seed}) with x of shape {x.shape}"
        )
        saved = x.copy(), y.copy()
        with replaced(namespace, _batches_of_this_check(n, batch_size, seed)):
            value = run_student(
                where,
                model.fit_epoch,
                x,
                y,
                loss=loss_cls(),
                optimizer=MomentumSGD(lr=0.1, momentum=0.9),
                batch_size=batch_size,
                shuffle=True,
                rng=seed,
            )
        check_untouched(x, saved[0], where, "x")
        check_untouched(y, saved[1], where, "y")
        params = run_student("Sequential.params", model.params)
        got = np.concatenate(
            [trusted_array(p, where=where, what="each parameter").ravel() for p in params]
        )
        variants = [
            ("the model is not in training mode: call self.train() first", {"train": False}),
            (
                "the data is not shuffled: batches(x, y, batch_size, shuffle=True, rng=rng)",
                {"shuffle": False},
            ),
            ("the last partial batch is skipped", {"drop_last": True}),
        ]
        candidates = [
            (
                msg,
                _reference_epoch(
                    copy.deepcopy(layers),
                    x,
                    y,
                    loss_cls(),
                    SGD(lr=0.1, momentum=0.9),
                    batch_size,
                    seed,
                    **kw,
                )[0],
            )
            for msg, kw in variants
        ]
        initial = np.concatenate([p.ravel() for layer in layers for p in layer.params.values()])
        candidates.append(
            (
                "the parameters never change: call optimizer.step(self.params(), self.grads()) "
                "after every backward, with params() returning the layers' own arrays, not copies",
                initial,
            )
        )
        compare_arrays(
            got,
            expected_params,
            where=f"{where}: the parameters after the epoch (all of them, "
            f"flattened in params() order)",
            context={"candidates": candidates},
            rtol=1e-6,
            atol=1e-9,
        )
        loss_value = trusted_scalar(value, where=where, what="the returned mean training loss")
        unweighted = _reference_epoch(
            copy.deepcopy(layers),
            x,
            y,
            loss_cls(),
            SGD(lr=0.1, momentum=0.9),
            batch_size,
            seed,
            weighted=False,
        )[1]
        compare_arrays(
            np.array(loss_value),
            np.array(expected_loss),
            where=f"{where}: the returned loss",
            context={
                "candidates": [
                    (
                        "the plain mean of the batch losses: weight each batch's loss "
                        "by its size (the last batch is smaller) and divide by n",
                        np.array(unweighted),
                    )
                ]
            },
            rtol=1e-7,
            atol=1e-12,
        )
    passed(
        "Sequential.fit_epoch matches npdl's training loop for 3 models "
        "(parameters and loss after one epoch)"
    )


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
    _, _, losses, _ = npdl_modules()
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
            model, ref, layers = model_pair(student_cls, "dropout", seed)
            warm = rng.standard_normal((8, 5))  # non-trivial running statistics, same in both
            layer_outputs(layers, warm.copy())
            layer_outputs(ref.layers, warm.copy())
            for layer, ref_layer, mode in zip(layers, ref.layers, modes, strict=True):
                layer.training = ref_layer.training = mode
            running = layers[1].buffers["running_mean"].copy()
            expected = ref.evaluate(x, y, loss_cls())
            where = (
                f"Sequential.evaluate(x, y, {loss_cls.__name__}()) with {label}, "
                f"x of shape {x.shape}"
            )
            with replaced(namespace, _batches_of_this_check(len(x), 4, seed)):
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
                with replaced(namespace, _batches_of_this_check(len(x), 4, seed)):
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
