"""Checks of chapter 6's mini-batching: ``batches`` against `npdl.data.batches`.

    check_batches(batches)
"""

from __future__ import annotations

import numpy as np

from autograder.checks.compare import (
    CheckFailed,
    passed,
    run_student,
    trusted_array,
)
from autograder.checks.models import check_untouched


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
        check_untouched(x, saved[0], call, "x")
        check_untouched(y, saved[1], call, "y")
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
