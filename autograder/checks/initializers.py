"""Checks of chapter 3 (initializers): plain functions and initializer classes.

    check_initializer(HeNormal(), npdl.initializers.HeNormal())
"""

from __future__ import annotations

import numpy as np

from autograder.checks.compare import (
    CheckFailed,
    compare_arrays,
    passed,
    run_student,
    trusted_array,
)
from autograder.checks.stand_ins import fans_table, replaced

_SHAPES = [(3, 5), (20, 10), (1, 7), (10, 20)]
_BIG = (400, 300)  # the sample whose statistics are compared


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
    passed(f"{where} matches the reference on {len(inputs)} inputs")


def _instance(obj, where: str):
    """An initializer instance from a class (local, or a sandbox proxy of one) or an instance."""
    is_class = isinstance(obj, type) or type(obj).__name__ == "RemoteClass"
    return run_student(f"{where}.__init__", obj) if is_class else obj


def _is_orthogonal(w: np.ndarray) -> bool:
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    return bool(np.allclose(gram, gram[0, 0] * np.eye(len(gram)), atol=1e-8)) and gram[0, 0] > 0


def check_initializer(student_init, reference_init, *, seed=0, namespace=None) -> None:
    """Shapes, dtype, use of ``rng``; then the same values as the reference for the same rng,
    or else the same statistics (mean, std, normal vs uniform; orthogonality).

    With ``namespace=globals()`` the student's ``compute_fans`` is replaced, while the check
    runs, by a table of the right fans for the shapes drawn here: an initializer is graded on
    its own formula, not on the student's compute_fans (no cascade).
    """
    from npdl.initializers import compute_fans

    table = [[list(shape), list(compute_fans(shape))] for shape in [*_SHAPES, _BIG]]
    with replaced(namespace, {"compute_fans": fans_table(table)}):
        _check_initializer(student_init, reference_init, seed)


def _check_initializer(student_init, reference_init, seed) -> None:
    name = getattr(student_init, "__name__", type(student_init).__name__)
    init, ref = _instance(student_init, name), _instance(reference_init, name)
    where = f"{name}.__call__"

    def draw(shape, rng):
        return trusted_array(run_student(where, init, shape, rng=rng), where=f"{where}{shape}")

    for shape in _SHAPES:
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
        big = draw(_BIG, np.random.default_rng(seed + 1))
        big_ref = ref(_BIG, rng=np.random.default_rng(seed + 1))
        problem = init_statistics_message(big, big_ref)
        if problem:
            raise CheckFailed(f"{where}((400, 300)): {problem}.")
    passed(f"{name}: shapes, dtype, rng use and the distribution match the reference")


def init_statistics_message(sample: np.ndarray, reference: np.ndarray) -> str | None:
    """Compare two large initializer samples: mean, std, and normal vs uniform (kurtosis).

    Both are drawn for a (fan_in, fan_out) = (400, 300) weight.
    """
    mean_r, std_r = float(reference.mean()), float(reference.std())
    mean_s, std_s = float(sample.mean()), float(sample.std())
    if abs(mean_s - mean_r) > 6 * std_r / np.sqrt(sample.size) + 1e-12:
        return (f"the mean is {mean_s:.4g}, expected {mean_r:.4g}: "
                "the weights should be centred on 0")
    if std_r > 0 and abs(std_s / std_r - 1) > 0.02:
        ratio = std_s / std_r
        layout = "(a 2-D shape is (fan_in, fan_out))"
        known = [(np.sqrt(2), "an extra gain of sqrt(2)"),
                 (1 / np.sqrt(2), "a missing gain of sqrt(2)"),
                 (np.sqrt(400 / 300), f"fan_out is used where fan_in belongs {layout}"),
                 (np.sqrt(300 / 400), f"fan_in is used where fan_out belongs {layout}"),
                 (np.sqrt(3), "the uniform bound is sqrt(3) times too big: a = sqrt(3) * std"),
                 (1 / np.sqrt(3), "the uniform bound is sqrt(3) * std, not std"),
                 (std_r, "the variance is used as the std (take the square root)"),
                 (1 / std_r, "the variance is used as the std (take the square root)")]
        likely = next((msg for value, msg in known if abs(ratio / value - 1) < 0.02), None)
        likely = likely or f"the scale is {ratio:.3g} times the expected one"
        return (f"the standard deviation is {std_s:.4g}, expected {std_r:.4g}; "
                f"likely mistake: {likely}")
    kurt_r, kurt_s = _kurtosis(reference), _kurtosis(sample)
    if abs(kurt_s - kurt_r) > 0.2:
        shape = {True: "normal", False: "uniform"}
        return (f"the values look {shape[kurt_s > 2.4]}ly distributed, expected "
                f"{shape[kurt_r > 2.4]}ly (kurtosis {kurt_s:.2f} vs {kurt_r:.2f}): use "
                f"rng.{'normal' if kurt_r > 2.4 else 'uniform'}")
    return None


def _kurtosis(a: np.ndarray) -> float:
    centred = a - a.mean()
    var = float(np.mean(centred**2))
    return float(np.mean(centred**4)) / var**2 if var > 0 else 0.0
