"""Checks of chapter 4 (layers): forward, backward and parameter gradients against `npdl.layers`.

    check_layer(Dense, npdl.layers.Dense, args=(4, 3), parts=("backward",))
"""

from __future__ import annotations

import numpy as np

from autograder.checks.compare import (
    CheckFailed,
    accepts,
    check_unchanged,
    compare_arrays,
    construct,
    extreme_values,
    passed,
    run_reference,
    run_student,
    tolerance,
    trusted_array,
)
from autograder.checks.diagnose import as_float64, diagnose, likely


def _set_mode(layer, training: bool, where: str) -> None:
    method = getattr(layer, "train" if training else "eval", None)
    if callable(method):
        run_student(f"{where}.{'train' if training else 'eval'}", method)
    else:
        layer.training = training


def _sync_params(student, ref, name: str) -> None:
    """Check params/grads/buffers keys, shapes and dtypes; copy the reference's values in."""
    for attr in ("params", "grads", "buffers"):
        wanted, theirs = getattr(ref, attr, {}), getattr(student, attr, None)
        if not wanted:
            continue
        if not isinstance(theirs, dict):
            raise CheckFailed(f"{name}.__init__: expected self.{attr} to be a dict with keys "
                              f"{sorted(wanted)}. Received: {type(theirs).__name__}.")
        for key, value in wanted.items():
            where = f"{name}.__init__: self.{attr}[{key!r}]"
            if key not in theirs:
                raise CheckFailed(f"{name}.__init__: expected self.{attr} to have the key {key!r} "
                                  f"(keys {sorted(wanted)}). "
                                  f"Received: keys={sorted(map(str, theirs))}.")
            arr = trusted_array(theirs[key], where=where, what="it")
            if arr.shape != value.shape:
                raise CheckFailed(f"{where} should have shape {value.shape}. Received: "
                                  f"shape={arr.shape}.{likely(diagnose(arr, value))}")
            if arr.dtype != value.dtype:
                raise CheckFailed(f"{where} should have dtype {value.dtype}. "
                                  f"Received: dtype={arr.dtype}.")
            if attr != "grads":
                theirs[key][...] = value


def _layer_cases(ref, input_shapes):
    width = getattr(ref, "in_features", None) or getattr(ref, "num_features", None)
    shapes = input_shapes or ([(4, width), (1, width)] if width else [(4, 2, 3), (1, 5)])
    yield "random input", shapes[0], np.float64, False, True
    for shape in shapes[1:]:
        label = "a batch of one" if shape[0] == 1 else "random input"
        yield label, shape, np.float64, False, True
    yield "extreme values up to ±1e4", shapes[0], np.float64, True, True
    yield "float32 input", shapes[0], np.float32, False, True
    yield "eval mode", shapes[0], np.float64, False, False


def _run_layer(layer, x0, g0, x, g, training, who, student, backward=True):
    """Warm-up pass (x0, g0) in train mode, then (x, g) in the given mode.

    Returns the output, the input gradient and (reference only) the warm-up's grads.
    """
    def call(what, fn, *args):
        return run_student(f"{who}.{what}", fn, *args) if student else fn(*args)

    _set_mode(layer, True, who)
    call("forward", layer.forward, x0)
    if backward:
        call("backward", layer.backward, g0)
    first = {} if student else {k: v.copy() for k, v in layer.grads.items()}
    _set_mode(layer, training, who)
    out = call("forward", layer.forward, x)
    grad = call("backward", layer.backward, g) if backward else None
    return out, grad, first


def check_layer(student_cls, reference_cls, *, args=(), kwargs=None, seed=0,
                parts=("forward", "backward"), input_shapes=None) -> None:
    """Forward (and running statistics), backward (input and parameter gradients) and,
    with ``"init"`` in ``parts``, the initial parameters drawn from the same rng.

    Input shapes come from ``in_features``/``num_features`` of the reference, or ``input_shapes``.
    """
    kwargs = dict(kwargs or {})
    name = getattr(student_cls, "__name__", "the layer")
    if reference_cls.__name__ == "Dropout":
        return _check_dropout(student_cls, args, kwargs, seed, parts, name)
    rng = np.random.default_rng(seed)
    count = 0
    for label, shape, dtype, extreme, training in _layer_cases(reference_cls(*args, **kwargs),
                                                             input_shapes):
        kw = dict(kwargs)
        if dtype != np.float64 and accepts(reference_cls, "dtype"):
            kw["dtype"] = dtype
        same_rng = "init" in parts and accepts(reference_cls, "rng")
        fresh = (lambda: {"rng": np.random.default_rng(seed)}) if same_rng else dict
        ref = reference_cls(*args, **kw, **fresh())
        student = construct(student_cls, name, *args, **kw, **fresh())
        if "init" in parts:
            for key, value in ref.params.items():
                compare_arrays(getattr(student, "params", {}).get(key), value,
                               where=f"{name}.__init__: params[{key!r}]")
        for value in ref.params.values():  # random values, so gamma = 1 hides nothing
            value += (0.5 * rng.standard_normal(value.shape)).astype(value.dtype)
        _sync_params(student, ref, name)
        make = (lambda s: extreme_values(rng, s)) if extreme else rng.standard_normal
        x0, x = make(shape).astype(dtype), make(shape).astype(dtype)
        probe = run_reference(reference_cls(*args, **kw).forward, x.copy())
        if probe is None:  # the reference rejects this case (e.g. BatchNorm on one sample)
            continue
        g0, g = (rng.standard_normal(probe.shape).astype(dtype) for _ in range(2))
        exp_out, exp_grad, first = _run_layer(ref, x0.copy(), g0.copy(), x.copy(), g.copy(),
                                              training, name, False)
        saved = [a.copy() for a in (x0, g0, x, g)]
        out, grad, _ = _run_layer(student, x0, g0, x, g, training, name, True, "backward" in parts)
        names = ("x", "grad_output", "x", "grad_output")
        for array, copy, what in zip((x0, g0, x, g), saved, names, strict=True):
            check_unchanged(array, copy, f"{name}.forward/backward", f"its input {what}")
        rtol, atol = tolerance(dtype)
        atol *= max(1.0, float(np.max(np.abs(exp_out))))
        ctx = {"dtype": np.dtype(dtype), "batch_size": shape[0]}
        mode = f"{'training' if training else 'eval'} mode, {label}"
        if "forward" in parts:
            compare_arrays(out, exp_out, where=f"{name}.forward ({mode})", input_shape=shape,
                           context=ctx, rtol=rtol, atol=atol)
            for key, value in ref.buffers.items():
                batches = [x0, x] if training else [x0]
                wrong_stats = batchnorm_candidates(ref, key, batches)
                compare_arrays(getattr(student, "buffers", {}).get(key), value, input_shape=shape,
                               where=f"{name}.forward: buffers[{key!r}] after {len(batches)} "
                                     f"training batch(es) ({mode})", rtol=rtol, atol=atol,
                               context=dict(ctx, candidates=wrong_stats))
        if "backward" in parts:
            where = f"{name}.backward ({mode})"
            wrong = batchnorm_candidates(ref, "dx", [x], g) if training else []
            weight = ref.params.get("W")
            if weight is not None and weight.ndim == 2 and weight.shape[0] == weight.shape[1]:
                wrong.append(("W is used where W.T belongs: dx = grad_output @ W.T", g @ weight))
            compare_arrays(grad, exp_grad, where=where, input_shape=shape, rtol=rtol, atol=atol,
                           context=dict(ctx, grad_output=g, candidates=wrong))
            for key, value in ref.grads.items():
                accumulated = [("grads accumulate across backward calls (+=): backward must "
                                "overwrite them (self.grads[k][...] = ...)", first[key] + value)]
                if value.ndim == 2 and value.shape[0] == value.shape[1]:
                    accumulated.append(("the weight gradient is transposed: dW = x.T @ "
                                        "grad_output, shape (in_features, out_features)", value.T))
                compare_arrays(getattr(student, "grads", {}).get(key), value,
                               where=f"{where}: grads[{key!r}]", input_shape=shape, rtol=rtol,
                               atol=atol, context=dict(ctx, grad_output=g, candidates=accumulated))
        count += 1
    if tuple(parts) == ("init",):
        return passed(f"{name}.__init__ creates the reference's parameters ({count} cases)")
    passed(f"{name}.{'/'.join(parts)} matches the reference on {count} inputs "
           "(random, batch of one, extreme values, float32, eval mode)")


_NO_RESCALE = ("dropout without rescaling: multiply the kept units by 1 / (1 - rate) "
               "(inverted dropout)")


def _check_dropout(student_cls, args, kwargs, seed, parts, name) -> None:
    """Dropout draws its own mask, so check its structure instead of exact values."""
    rate = float(kwargs.get("rate", args[0] if args else 0.5))
    rng = np.random.default_rng(seed)
    for x in (rng.standard_normal((200, 50)), rng.standard_normal((10, 20, 10)).astype(np.float32)):
        kw = dict(kwargs)
        if accepts(student_cls, "rng"):
            kw["rng"] = np.random.default_rng(seed)
        layer, saved = construct(student_cls, name, *args, **kw), x.copy()
        _set_mode(layer, True, name)
        where = f"{name}(rate={rate}).forward (training mode)"
        out = trusted_array(run_student(where, layer.forward, x), where=where)
        check_unchanged(x, saved, where, "its input x")
        rtol, atol = tolerance(x.dtype)
        kept = out != 0
        if "forward" in parts:
            check_dropout_output(out, x, rate, where)
            scaled = x[kept] / x.dtype.type(1 - rate)
            compare_arrays(out[kept], scaled, where=f"{where}, kept units",
                           input_shape=x.shape, rtol=rtol, atol=atol,
                           context={"dtype": x.dtype, "candidates": [(_NO_RESCALE, x[kept])]})
            again = trusted_array(run_student(where, layer.forward, x), where=where)
            if rate > 0 and np.array_equal(again != 0, kept):
                raise CheckFailed(f"{where} drops the same units on every call. Likely mistake: "
                                  "the mask is drawn once; draw a new one in every training "
                                  "forward.")
            _set_mode(layer, False, name)
            out_eval = run_student(f"{name}.forward (eval mode)", layer.forward, x)
            compare_arrays(out_eval, x, where=f"{name}.forward (eval mode)", input_shape=x.shape,
                           context={"candidates": [("eval mode still drops units: in eval mode "
                                                    "Dropout is the identity", out)]})
            _set_mode(layer, True, name)
            out = trusted_array(run_student(where, layer.forward, x), where=where)
            kept = out != 0
        if "backward" in parts:
            g = rng.standard_normal(x.shape).astype(x.dtype)
            grad = run_student(f"{name}.backward", layer.backward, g.copy())
            expected = np.where(kept, g / x.dtype.type(1 - rate), x.dtype.type(0))
            compare_arrays(grad, expected, where=f"{name}(rate={rate}).backward (training mode)",
                           input_shape=x.shape, rtol=rtol, atol=atol,
                           context={"dtype": x.dtype, "grad_output": g, "candidates": [
                               (_NO_RESCALE, np.where(kept, g, 0)),
                               ("backward uses a different mask than forward: reuse the mask "
                                "saved in forward", g * (rng.random(x.shape) >= rate) / (1 - rate)),
                           ]})
    passed(f"{name}.{'/'.join(parts)}: mask, 1/(1 - rate) scaling, eval mode and dtypes are right")


def batchnorm_candidates(ref, key: str, batches, grad_output=None) -> list:
    """Known BatchNorm mistakes, computed from the inputs (never from the student's values).

    key "dx": the input gradient for ``batches[0]``; "running_mean"/"running_var": the
    running statistics after training on ``batches`` from the initial 0 / 1.
    """
    momentum, eps = getattr(ref, "momentum", None), getattr(ref, "eps", None)
    if type(ref).__name__ != "BatchNorm" or momentum is None or eps is None:
        return []
    if key == "dx":
        x, gamma = as_float64(batches[0]), as_float64(ref.params["gamma"])
        return [("backward treats the batch mean and variance as constants: add the terms from "
                 "their dependence on x, dx = gamma / (N std) (N g - sum(g) - xhat sum(g xhat))",
                 as_float64(grad_output) * gamma / np.sqrt(x.var(axis=0) + eps))]
    if key not in ("running_mean", "running_var"):
        return []

    def running(biased: bool, flipped: bool) -> np.ndarray:
        r = np.full(ref.buffers[key].shape, 0.0 if key == "running_mean" else 1.0)
        for x in map(as_float64, batches):
            n = x.shape[0]
            if key == "running_mean":
                stat = x.mean(axis=0)
            else:
                stat = x.var(axis=0) * (1 if biased else n / (n - 1))
            old, new = (1 - momentum, momentum) if not flipped else (momentum, 1 - momentum)
            r = old * r + new * stat
        return r

    found = [("the running statistics are not updated in training mode",
              np.full(ref.buffers[key].shape, 0.0 if key == "running_mean" else 1.0)),
             ("momentum is applied the other way round: torch uses running = "
              "(1 - momentum) * running + momentum * batch_statistic", running(False, True))]
    if key == "running_var":
        found.insert(0, ("running_var must be updated with the UNBIASED batch variance "
                         "x.var(axis=0) * N / (N - 1), like torch", running(True, False)))
    return found


def check_dropout_output(out: np.ndarray, x: np.ndarray, rate: float, where: str) -> None:
    """The fraction of dropped units is about ``rate``."""
    dropped = float(np.mean(out == 0))
    if abs(dropped - rate) <= 0.05:
        return
    if abs(dropped - (1 - rate)) <= 0.05:
        likely = ("units are KEPT with probability rate; rate is the probability of dropping "
                  "a unit: keep = rng.random(x.shape) >= rate")
    elif dropped == 0:
        likely = "nothing is dropped in training mode"
    else:
        likely = "the mask is not drawn with probability rate per unit"
    raise CheckFailed(f"{where} dropped {dropped:.1%} of {out.size} units; expected about "
                      f"{rate:.0%}. Likely mistake: {likely}.")
