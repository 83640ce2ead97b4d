"""Stand-ins the checks hand to student code in place of npdl objects or the student's own.

Under trusted grading everything given to student code is rebuilt inside the student's
sandbox. An npdl object from the chapter being graded (or a later one) would carry its
answer there, so the checks pass these small equivalents instead. The same goes for the
student's OTHER components that the one being graded builds on (`replaced`): a bug there must
not cost this component's points (no cascade), and npdl's answer must not stand in for them.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np


class WeightsOnly:
    """All of a model that EarlyStopping may touch: ``layers`` and ``state_dict()``.

    Handing the student's callback npdl's own ``Sequential`` would ship this chapter's answer
    into the grading sandbox, where student code could capture it.
    """

    def __init__(self, layers):
        self.layers = layers

    def state_dict(self):
        return {
            f"{i}.{name}": array
            for i, layer in enumerate(self.layers)
            for name, array in {**layer.params, **layer.buffers}.items()
        }


class MomentumSGD:
    """npdl's ``SGD(lr, momentum)`` update (torch's: the first step sets ``buf = g``).

    The optimizer handed to the student's ``fit_epoch`` is shipped into the grading sandbox;
    npdl.optimizers is chapter 7's answer, so it must not be what travels there.
    """

    def __init__(self, lr, momentum):
        self.lr, self.momentum, self.buffers = lr, momentum, None

    def step(self, params, grads):
        if self.buffers is None:
            self.buffers = [g.copy() for g in grads]
        else:
            for buf, g in zip(self.buffers, grads, strict=True):
                buf *= self.momentum
                buf += g
        for p, buf in zip(params, self.buffers, strict=True):
            p -= self.lr * buf



def unfolding_stand_ins(index_maps: dict[str, np.ndarray]) -> tuple:
    """A correct ``(im2col, col2im)`` pair for the shapes of one check, as data, not code.

    ``index_maps[key]`` has im2col's output shape and holds, for each entry, 1 + the flat index
    of the input pixel it copies (0 for padding). So im2col is a gather and col2im the matching
    scatter-add: generic code that knows nothing of convolutions beyond the trusted side's maps.
    Student layers of chapter 9 run with these in place of the student's own im2col and col2im,
    so a mistake there costs only the im2col and col2im points (no cascade).
    """

    def key_of(x_shape, kh, kw, stride, padding):
        pairs = [tuple(int(v) for v in p) if isinstance(p, (tuple, list)) else (int(p), int(p))
                 for p in (stride, padding)]
        key = f"{tuple(int(d) for d in x_shape)}/{int(kh)}x{int(kw)}/{pairs[0]}/{pairs[1]}"
        if key not in index_maps:
            raise ValueError(
                "the grader's im2col/col2im cover the calls a layer makes on its own input "
                "(x, or x padded by the layer, or its (N*C, 1, H, W) view). Received: a call "
                f"for x_shape, kernel, stride, padding = {key}."
            )
        return index_maps[key]

    def im2col(x, kh, kw, stride=1, padding=0):
        x = np.asarray(x)
        index = key_of(x.shape, kh, kw, stride, padding)
        return np.concatenate([np.zeros(1, dtype=x.dtype), x.ravel()])[index]

    def col2im(cols, x_shape, kh, kw, stride=1, padding=0):
        cols = np.asarray(cols)
        index = key_of(x_shape, kh, kw, stride, padding)
        if cols.shape != index.shape:
            raise ValueError(f"col2im: expected cols of shape (N, C*kh*kw, OH*OW) = "
                             f"{index.shape}. Received: shape={cols.shape}.")
        out = np.zeros(math.prod(int(d) for d in x_shape) + 1, dtype=cols.dtype)
        np.add.at(out, index.ravel(), cols.ravel())
        return out[1:].reshape(tuple(int(d) for d in x_shape))

    return im2col, col2im


# ---------------------------------------------------------------- no cascade inside a chapter
# A graded component that calls another graded component of the same chapter (Swish calls the
# student's Sigmoid, an initializer the student's compute_fans, fit_epoch the student's
# batches) is checked with that dependency replaced, while the check runs, by one of these.
# None is npdl code: a library call the student may make too (scipy's expit), or data computed
# on the trusted side for exactly the calls of one check (a table of fans, recorded batches).


@contextlib.contextmanager
def replaced(namespace, stand_ins: dict):
    """While the block runs, the student's names ``stand_ins`` resolve to the stand-ins.

    ``namespace`` is the test cell's ``globals()``: under trusted grading the assignment goes to
    the sandbox (only functions of this module may be swapped in there) and putting the saved
    value back restores the student's own; a plain dict (a local run) is simply updated.
    """
    saved = {}
    try:
        for name, value in stand_ins.items():
            if namespace is not None and name in namespace:
                saved[name] = namespace[name]
                namespace[name] = value
        yield
    finally:
        for name, value in saved.items():
            namespace[name] = value


class ExpitSigmoid:
    """A Sigmoid layer computed by ``scipy.special.expit`` (stable, keeps float32)."""

    def __init__(self, *args, **kwargs):
        self.training, self.params, self.grads, self.buffers = True, {}, {}, {}

    def __call__(self, x):
        return self.forward(x)

    def forward(self, x):
        from scipy.special import expit

        self.y = expit(x)
        return self.y

    def backward(self, grad_output):
        return grad_output * self.y * (1 - self.y)


def sigmoid_layer(*args, **kwargs):
    """Stands in for the student's ``Sigmoid`` class: ``Sigmoid()`` builds an `ExpitSigmoid`."""
    return ExpitSigmoid(*args, **kwargs)


def fans_table(table: list):
    """``compute_fans`` for the shapes one check draws, as data: ``table`` lists
    ``[shape, [fan_in, fan_out]]`` pairs computed on the trusted side."""

    def compute_fans(shape):
        wanted = [int(d) for d in shape]
        for known, fans in table:
            if list(known) == wanted:
                return int(fans[0]), int(fans[1])
        raise ValueError(f"the grader's compute_fans knows the shapes of this check only, "
                         f"not {tuple(wanted)}.")

    return compute_fans


def recorded_batches(plays: dict, seed: int, fresh_state: str):
    """``batches`` for the calls of one check, as data: ``plays["<order>/<batch_size>"]`` lists
    each mini-batch's sample indices, recorded on the trusted side with npdl's ``batches``.

    ``<order>`` is ``seed`` when shuffling with ``rng=seed`` (or a fresh
    ``np.random.default_rng(seed)``, whose state is ``fresh_state``), ``in order`` without
    shuffling, and ``other`` for any other rng (a different order, as a new draw would be).
    """

    def batches(x, y=None, batch_size=32, shuffle=False, rng=None):
        if not shuffle:
            order = "in order"
        elif isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng == seed:
            order = "seed"
        elif isinstance(rng, np.random.Generator) and (
            str(rng.bit_generator.state.get("state")) == fresh_state
        ):
            order = "seed"
        else:
            order = "other"
        key = f"{order}/{int(batch_size)}"
        if key not in plays:
            raise ValueError(f"the grader's batches knows the calls of this check only, not "
                             f"batch_size={batch_size}.")
        for index in plays[key]:
            yield x[index] if y is None else (x[index], y[index])

    return batches
