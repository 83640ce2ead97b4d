"""Stand-ins the checks hand to student code in place of npdl objects.

Under trusted grading everything given to student code is rebuilt inside the student's
sandbox. An npdl object from the chapter being graded (or a later one) would carry its
answer there, so the checks pass these small equivalents instead.
"""

from __future__ import annotations


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
