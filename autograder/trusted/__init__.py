"""Trusted grading: decide every score outside the student's kernel.

`TrustedExecute` replaces nbgrader's `Execute` in ``Autograde.autograde_preprocessors`` (same
``Execute.timeout`` config). Per notebook, ONE `TrustedSandbox` (autograder.sandbox + the handout's
npdl modules, served by an import hook; the assignment's own module never) runs the non-test
cells in order, each guarded. Locked cells also run in the grader, from the source text, so the
visible-test helpers are the instructor's. Test cells (restored from the gradebook by
OverwriteCells) run in the grader in a `TrustedNamespace`: own names, then builtins, then the
student's names as sandbox proxies. Their outcome becomes nbgrader outputs (``✔`` stream, or a
one-line ``error``; a final plain number is an ``execute_result``, i.e. partial credit).

Checks may pass trusted functions/objects to student code (a lambda to ``numerical_gradient``,
an initializer, npdl layers into ``Sequential``): `shipping` rebuilds copies inside the sandbox.
To keep in-kernel semantics for the checks of 06_models: shipped npdl layers are
ADOPTED (the trusted object becomes a view of its sandbox copy), an array the child reports again
by id is the SAME trusted ndarray (``params()[0] is layer.params["W"]``), in-place writes to such
arrays are sent back, and Generators passed to student code follow its use. Those are the child's
claims: they decide the identity/state of student-side things only, never reference values, so a
check must not compute its reference with an object or Generator it handed to student code.
A dead sandbox (os._exit, timeout, limits) is restarted and the cells that ran are replayed.
"""

from .executor import TrustedNotebookRun, cell_kind, trusted_cells_from_notebook
from .preprocessor import TrustedExecute, read_submission, restore_from_source, unreadable_result

__all__ = [
    "TrustedExecute",
    "TrustedNotebookRun",
    "cell_kind",
    "read_submission",
    "restore_from_source",
    "trusted_cells_from_notebook",
    "unreadable_result",
]
