"""Hidden-test checks of assignment 06_models's `Sequential` that `autograder.checks` lacks.

The student's `Sequential` (forward, backward, params/grads, fit_epoch) runs next to
`npdl.models.Sequential` on seeded data (`autograder.checks.training` covers fit_epoch and
evaluate/predict). Models are built from `npdl` layers of earlier chapters only (no cascade).

    check_sequential_forward(Sequential)
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
)


def npdl_modules():
    import npdl.activations as act
    import npdl.layers as lay
    import npdl.losses as losses
    import npdl.models as models

    return act, lay, losses, models


def layer_stack(kind: str, seed: int = 0, dtype=np.float64) -> list:
    """Small npdl layer stacks: (layers, input shape without the batch dimension)."""
    act, lay, _, _ = npdl_modules()
    rng = np.random.default_rng(seed)
    if kind == "mlp":
        return [
            lay.Dense(5, 8, rng=rng, dtype=dtype),
            act.Tanh(),
            lay.Dense(8, 3, rng=rng, dtype=dtype),
        ]
    if kind == "flatten":
        return [lay.Flatten(), lay.Dense(6, 4, rng=rng), act.Sigmoid(), lay.Dense(4, 3, rng=rng)]
    if kind == "batchnorm":
        return [lay.Dense(5, 8, rng=rng), lay.BatchNorm(8), act.ReLU(), lay.Dense(8, 3, rng=rng)]
    if kind == "dropout":
        return [
            lay.Dense(5, 8, rng=rng),
            lay.BatchNorm(8),
            act.ReLU(),
            lay.Dropout(0.5, rng=seed),
            lay.Dense(8, 3, rng=rng),
        ]
    raise ValueError(kind)


STACK_INPUT = {"mlp": (5,), "flatten": (2, 3), "batchnorm": (5,), "dropout": (5,)}


def model_pair(student_cls, kind: str, seed: int = 0, dtype=np.float64):
    """(student model, reference model, student's layers) on equal deep copies of one stack."""
    layers = layer_stack(kind, seed, dtype)
    _, _, _, models = npdl_modules()
    student_layers = copy.deepcopy(layers)
    model = construct(student_cls, "Sequential", student_layers)
    return model, models.Sequential(copy.deepcopy(layers)), student_layers


def check_untouched(array, saved, where, what):
    if not np.array_equal(array, saved):
        raise CheckFailed(
            f"{where} modified {what} in place. Likely mistake: shuffling or scaling the "
            f"caller's array (rng.shuffle(x), x -= ...); index with a permutation instead, "
            f"x[order], which makes a new array."
        )


def layer_outputs(layers, x):
    outputs = []
    for layer in layers:
        x = layer.forward(x)
        outputs.append(x)
    return outputs


def check_sequential_forward(student_cls, seed=0) -> None:
    """forward(x) applies every layer in order (several stacks, a batch of one, float32)."""
    cases = [
        ("mlp", 4, np.float64),
        ("mlp", 1, np.float64),
        ("flatten", 3, np.float64),
        ("batchnorm", 6, np.float64),
        ("mlp", 4, np.float32),
    ]
    rng = np.random.default_rng(seed)
    for kind, n, dtype in cases:
        model, ref, _ = model_pair(student_cls, kind, seed, dtype)
        x = rng.standard_normal((n, *STACK_INPUT[kind])).astype(dtype)
        saved = x.copy()
        expected = ref.forward(x.copy())
        where = f"Sequential.forward ({len(ref.layers)} layers: {', '.join(map(repr, ref.layers))})"
        out = trusted_array(run_student(where, model.forward, x), where=where)
        check_untouched(x, saved, where, "its input x")
        if out.shape != expected.shape:
            inner = layer_outputs(copy.deepcopy(ref.layers), saved.copy())
            hits = [i for i, o in enumerate(inner) if o.shape == out.shape]
            hint = (
                f" That is the shape after layer {hits[0]} ({ref.layers[hits[0]]!r}): the loop "
                f"stops "
                f"early (a `return` inside the loop?); apply every layer, x = layer.forward(x)."
                if hits
                else " Apply the layers in order, feeding each output into the next layer."
            )
            raise CheckFailed(
                f"{where} is wrong for input shape {x.shape}: expected an output of shape "
                f"{expected.shape}. Received: shape={out.shape}.{hint}"
            )
        compare_arrays(
            out,
            expected,
            where=where,
            input_shape=x.shape,
            context={"dtype": np.dtype(dtype)},
            rtol=1e-6 if dtype == np.float64 else 1e-4,
            atol=1e-8 if dtype == np.float64 else 1e-5,
        )
    passed(
        "Sequential.forward matches npdl on 5 models "
        "(Dense/Tanh, Flatten, BatchNorm, batch of one, float32)"
    )


def check_sequential_backward(student_cls, seed=0) -> None:
    """backward(g) runs the layers in reverse, returns dL/dx and fills every layer's grads."""
    cases = [("mlp", 4), ("mlp", 1), ("flatten", 3), ("batchnorm", 6)]
    rng = np.random.default_rng(seed)
    for kind, n in cases:
        model, ref, layers = model_pair(student_cls, kind, seed)
        x = rng.standard_normal((n, *STACK_INPUT[kind]))
        ref.forward(x.copy())
        run_student("Sequential.forward", model.forward, x.copy())
        g = rng.standard_normal((n, 3))
        saved = g.copy()
        expected = ref.backward(g.copy())
        where = "Sequential.backward"
        try:
            grad = run_student(where, model.backward, g)
        except CheckFailed as exc:
            if "ShapeError" not in str(exc):
                raise
            raise CheckFailed(
                f"{exc} Likely mistake: run the layers in reverse order and feed each "
                f"layer's result into the next, g = layer.backward(g)."
            ) from None
        check_untouched(g, saved, where, "grad_output")
        for i, (mine, theirs) in reversed(list(enumerate(zip(layers, ref.layers, strict=True)))):
            for key, value in theirs.grads.items():
                got = mine.grads[key]
                if np.array_equal(got, np.zeros_like(got)) and not np.array_equal(value, 0 * value):
                    raise CheckFailed(
                        f"{where}: layer {i} ({theirs!r}) has grads[{key!r}] all zero after "
                        f"backward: its backward was never called. Likely mistake: loop over "
                        f"every layer, for layer in reversed(self.layers): g = layer.backward(g)."
                    )
                compare_arrays(
                    got,
                    value,
                    where=f"{where}: layer {i} ({theirs!r}) grads[{key!r}]",
                    input_shape=x.shape,
                    context={"grad_output": g},
                )
        grad = trusted_array(grad, where=where, what="the returned input gradient")
        if grad.shape != expected.shape:
            raise CheckFailed(
                f"{where} is wrong for input shape {x.shape}: expected to return dL/dx of shape "
                f"{expected.shape} (the input's shape). Received: shape={grad.shape}. Likely "
                f"mistake: return the gradient after the FIRST layer's backward, at the end."
            )
        compare_arrays(grad, expected, where=f"{where} (the returned dL/dx)", input_shape=x.shape)
    passed("Sequential.backward matches npdl: dL/dx and every layer's grads on 4 models")


def check_sequential_params(student_cls, seed=0) -> None:
    """params() and grads(): the layers' own arrays, layer by layer, key by key, aligned."""
    model, _, layers = model_pair(student_cls, "batchnorm", seed)
    wanted = [(i, key) for i, layer in enumerate(layers) for key in layer.params]
    names = ", ".join(f"layers[{i}].params[{k!r}]" for i, k in wanted)
    for method, attr in (("params", "params"), ("grads", "grads")):
        where = f"Sequential.{method}()"
        got = run_student(where, getattr(model, method))
        if not isinstance(got, list):
            raise CheckFailed(
                f"{where}: expected a list of arrays. Received: {type(got).__name__}."
            )
        expected = [getattr(layers[i], attr)[key] for i, key in wanted]
        if len(got) != len(expected):
            hint = (
                " Likely mistake: it returns the dicts; return the arrays in them (dict.values())."
                if any(isinstance(a, dict) for a in got)
                else ""
            )
            raise CheckFailed(
                f"{where}: expected {len(expected)} arrays ({names}). Received: {len(got)} "
                f"items.{hint}"
            )
        for j, (array, want) in enumerate(zip(got, expected, strict=True)):
            if array is want:
                continue
            i, key = wanted[j]
            if any(array is other for other in expected):
                raise CheckFailed(
                    f"{where}[{j}] is the right kind of array in the wrong place: expected "
                    f"layers[{i}].{attr}[{key!r}]. The order is layer by layer, and within a "
                    f"layer the order of layer.params (W before b)."
                )
            if (
                isinstance(array, np.ndarray)
                and array.shape == want.shape
                and np.array_equal(array, want)
            ):
                raise CheckFailed(
                    f"{where}[{j}] has the values of layers[{i}].{attr}[{key!r}] but is a copy. "
                    f"Return the arrays themselves, not copies (no .copy(), no np.array(...)): "
                    f"the optimizer "
                    f"updates them in place, and a copy never reaches the layer."
                )
            raise CheckFailed(
                f"{where}[{j}]: expected the array layers[{i}].{attr}[{key!r}] "
                f"(shape {want.shape}). Received: {type(array).__name__} "
                f"{getattr(array, 'shape', '')}."
            )
    again = run_student("Sequential.params()", model.params)
    if any(
        a is not b
        for a, b in zip(again, run_student("Sequential.params()", model.params), strict=False)
    ):
        raise CheckFailed(
            "Sequential.params(): two calls return different arrays. Return the same objects."
        )
    passed(
        "Sequential.params() and grads() are the layers' own arrays, aligned, "
        "in layer and key order"
    )
