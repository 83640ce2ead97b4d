"""The hidden tests' checks, one module per chapter, like `npdl` itself.

Each ``check_*`` runs a student's component and its `npdl` reference on the same seeded inputs,
compares them, and raises `CheckFailed` whose message is the student's feedback: which method,
which input, how wrong, where, and the likely mistake. A passing check prints one ``✔`` line.

    compare       shared: run student code, copy its results, compare, `CheckFailed`, `passed`
    diagnose      shared: the likely mistake behind a wrong array (sign, 1/N, transpose, ...)
    stand_ins     small objects handed to student code in place of npdl's (trust boundary)
                  or of the student's other components (no cascade)
    backprop      ch. 1  numerical gradient, relative error, a two-layer network
    activations   ch. 2
    initializers  ch. 3
    layers        ch. 4
    losses        ch. 5
    models        ch. 6  Sequential forward, backward, params
    training      ch. 6  fit_epoch, evaluate/predict
    data          ch. 6  batches
    callbacks     ch. 6  EarlyStopping
    optimizers    ch. 7  update rules, clip_grad_norm
    schedules     ch. 7
    capstone      ch. 8  held-out accuracy of the trained model

Hidden tests import from the chapter's module::

    from autograder.checks.activations import check_activation
"""

from autograder.checks.compare import CheckFailed, passed

__all__ = ["CheckFailed", "passed"]
