"""Hidden-test checks of 01_backprop: numerical gradient, relative error, a two-layer network.

The references are `npdl.gradcheck` and the plain NumPy two-layer network below; the comparison
and the feedback come from `autograder.checks`.
"""

from __future__ import annotations

import functools

import numpy as np

from autograder.checks.compare import (
    CheckFailed,
    compare_arrays,
    passed,
    run_student,
    trusted_array,
    trusted_scalar,
)


def _functions(rng):
    """(label, f(x) reading x, x) cases: several shapes, a 1-element input, a non-quadratic f."""
    w = rng.standard_normal((2, 3))
    yield "f = sum(x**2), x of shape (3,)", lambda x: np.sum(x**2), rng.standard_normal(3)
    yield (
        "f = sum(w * sin(x)), x of shape (2, 3)",
        lambda x: np.sum(w * np.sin(x)),
        rng.standard_normal((2, 3)),
    )
    yield (
        "f = prod(exp(x / 4)), x of shape (2, 2, 2)",
        lambda x: np.prod(np.exp(x / 4)),
        rng.standard_normal((2, 2, 2)),
    )
    yield "f = x**3, x of shape (1, 1)", lambda x: float(x[0, 0] ** 3), rng.standard_normal((1, 1))


def check_numerical_gradient(student_fn) -> None:
    """The student's numerical_gradient(f, x, eps) against npdl.gradcheck.numerical_gradient."""
    from npdl.gradcheck import numerical_gradient

    where = "numerical_gradient"
    for label, fx, x in _functions(np.random.default_rng(0)):
        x_student, x_saved = x.copy(), x.copy()
        got = run_student(where, student_fn, functools.partial(fx, x_student), x_student)
        if not np.array_equal(x_student, x_saved):
            raise CheckFailed(
                f"{where}: x was not restored after the perturbations ({label}). Likely "
                "mistake: put the saved value back (x[i] = saved) after the two calls to f()."
            )
        got = trusted_array(got, where=where)
        x_ref = x.copy()
        expected = numerical_gradient(functools.partial(fx, x_ref), x_ref)
        x_fwd = x.copy()
        forward_diff = np.zeros_like(x)
        for i in np.ndindex(x.shape):  # the one-sided difference, a classic slip
            base = fx(x_fwd)
            x_fwd[i] += 1e-6
            forward_diff[i] = (fx(x_fwd) - base) / 1e-6
            x_fwd[i] = x[i]
        context = {
            "candidates": [
                (
                    "a one-sided difference (f(x + eps) - f(x)) / eps; use the central "
                    "difference (f(x + eps) - f(x - eps)) / (2 eps)",
                    forward_diff,
                )
            ]
        }
        compare_arrays(
            got,
            expected,
            where=f"{where} with {label}",
            input_shape=x.shape,
            context=context,
            rtol=1e-5,
            atol=1e-7,
        )
    passed(
        "numerical_gradient matches the reference on 4 functions "
        "(shapes (3,), (2, 3), (2, 2, 2), (1, 1))"
    )


def check_relative_error(student_fn) -> None:
    """The student's relative_error(a, b) against npdl.gradcheck.relative_error."""
    from npdl.gradcheck import relative_error

    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 4))
    cases = [
        ("random arrays of shape (3, 4)", a, a + 1e-3 * rng.standard_normal((3, 4))),
        (
            "arrays with zeros in the same places",
            np.array([0.0, 1.0, 0.0]),
            np.array([0.0, 1.5, 0.0]),
        ),
        ("all-zero arrays", np.zeros((2, 2)), np.zeros((2, 2))),
        ("opposite signs", np.array([1.0, -2.0]), np.array([-1.0, 2.0])),
        ("one element", np.array([[3.0]]), np.array([[1.0]])),
    ]
    for label, x, y in cases:
        xs, ys = x.copy(), y.copy()
        got = trusted_scalar(
            run_student("relative_error", student_fn, xs, ys),
            where="relative_error",
            what="the relative error",
        )
        if not (np.array_equal(xs, x) and np.array_equal(ys, y)):
            raise CheckFailed(f"relative_error modified its inputs in place ({label}).")
        expected = relative_error(x, y)
        mean_version = float(np.mean(np.abs(x - y) / np.maximum(1e-12, np.abs(x) + np.abs(y))))
        context = {
            "candidates": [
                (
                    "the mean of the elementwise errors; take the largest one (np.max)",
                    np.array(mean_version),
                )
            ]
        }
        compare_arrays(
            np.array(got),
            np.array(expected),
            where=f"relative_error on {label}",
            input_shape=x.shape,
            context=context,
            rtol=1e-9,
            atol=1e-15,
        )
    passed(
        "relative_error matches the reference on 5 cases "
        "(random, zeros, opposite signs, one element)"
    )


def _network(rng, n, d, h, c):
    params = {
        "W1": rng.standard_normal((d, h)),
        "b1": rng.standard_normal(h),
        "W2": rng.standard_normal((h, c)),
        "b2": rng.standard_normal(c),
    }
    return params, rng.standard_normal((n, d)), rng.standard_normal((n, c))


def _reference(params, x, y):
    """(loss, grads) of z = x W1 + b1, h = tanh z, out = h W2 + b2, L = sum((out - y)^2) / (2N)."""
    n = x.shape[0]
    hidden = np.tanh(x @ params["W1"] + params["b1"])
    diff = hidden @ params["W2"] + params["b2"] - y
    d_out = diff / n
    d_z = (d_out @ params["W2"].T) * (1 - hidden**2)
    grads = {"W1": x.T @ d_z, "b1": d_z.sum(0), "W2": hidden.T @ d_out, "b2": d_out.sum(0)}
    return float(np.sum(diff**2) / (2 * n)), grads


_SHAPES = [(4, 3, 5, 2), (1, 2, 3, 1), (8, 5, 4, 3)]  # (N, D, H, C); N = 1 is a batch of one


def _unchanged(arrays: dict, saved: dict, where: str) -> None:
    for name, value in arrays.items():
        if not np.array_equal(value, saved[name]):
            raise CheckFailed(f"{where} modified {name} in place. Compute new arrays instead.")


def check_two_layer_forward(student_forward) -> None:
    rng = np.random.default_rng(2)
    for n, d, h, c in _SHAPES:
        params, x, y = _network(rng, n, d, h, c)
        saved = {k: v.copy() for k, v in {**params, "x": x, "y": y}.items()}
        result = run_student("two_layer_forward", student_forward, params, x, y)
        if not (isinstance(result, tuple) and len(result) == 2):
            raise CheckFailed(
                "two_layer_forward: expected a tuple (loss, cache). "
                f"Received: {type(result).__name__}."
            )
        loss = trusted_scalar(result[0], where="two_layer_forward")
        _unchanged({**params, "x": x, "y": y}, saved, "two_layer_forward")
        expected, _ = _reference(params, x, y)
        compare_arrays(
            np.array(loss),
            np.array(expected),
            where="two_layer_forward (the loss)",
            input_shape=x.shape,
            context={"batch_size": n},
            rtol=1e-8,
            atol=1e-12,
        )
    passed("two_layer_forward matches the reference for batch sizes 4, 1 and 8")


def check_two_layer_backward(student_forward, student_backward) -> None:
    rng = np.random.default_rng(3)
    for n, d, h, c in _SHAPES:
        params, x, y = _network(rng, n, d, h, c)
        _, cache = run_student("two_layer_forward", student_forward, params, x, y)
        saved = {k: v.copy() for k, v in params.items()}
        grads = run_student("two_layer_backward", student_backward, params, cache)
        _unchanged(params, saved, "two_layer_backward")
        if not isinstance(grads, dict) or set(grads) != set(params):
            got = sorted(grads) if isinstance(grads, dict) else type(grads).__name__
            raise CheckFailed(
                f"two_layer_backward: expected a dict with keys {sorted(params)}. Received: {got}."
            )
        _, expected = _reference(params, x, y)
        for name in (
            "W2",
            "b2",
            "W1",
            "b1",
        ):  # from the output back: the first wrong one is the bug
            compare_arrays(
                grads[name],
                expected[name],
                where=f"two_layer_backward (gradient of {name})",
                input_shape=x.shape,
                context={"batch_size": n},
                rtol=1e-7,
                atol=1e-10,
            )
    passed("two_layer_backward matches the reference for batch sizes 4, 1 and 8")
