"""Run untrusted student code in a sandboxed child process; decide on the trusted side.

The trusted process (the grader) never executes student code. `Sandbox` starts a
fresh Python in one of two backends (``backends.py`` chooses):

* ``bwrap`` (default where it starts): bubblewrap with private mount/pid/net/ipc/uts
  namespaces and a view of only the OS libraries, the standard library, NumPy and
  SciPy (no npdl, no autograder, no repository, no other students' files), a
  size-limited tmpfs at /tmp as working directory. As root the child switches to a
  random unprivileged uid; as an ordinary user bwrap also creates a user namespace
  and the child keeps the instructor's uid, without capabilities. See ``bwrap.py``.
* ``process`` (hosts without namespaces: Docker, Kubernetes, Gradescope; or user
  namespaces disabled): a plain child process under a fresh uid (grader root) or
  the instructor's uid, with no_new_privs, a seccomp filter (no sockets, ptrace,
  mounts, namespaces, kexec/modules/bpf/...) and Landlock (read-only interpreter,
  stdlib, NumPy/SciPy; read-write only its private directory; nothing else exists
  for it). See ``process.py``.

Both set rlimits (CPU, address space, processes, file size, open files) in the child
(``confine.py``) before anything of the student's runs. Student cells are
``exec``-ed there; the grader calls into them over pipes and gets back only strictly
parsed plain data (numeric .npy arrays without pickle, JSON scalars), or an error.
See ``child.py`` (the sandboxed side), ``protocol.py`` (the wire format).

Choosing: ``NPDL_SANDBOX=auto|bwrap|process`` (default auto), read whenever a Sandbox
is created, or ``Sandbox(backend=...)``; ``auto`` takes the first of bwrap, process
that starts (decided once per process, logged on logger ``autograder.sandbox``).
``preflight(backend)`` starts one and runs a trivial cell: it returns the backend
used or raises `SandboxUnavailable` saying what is missing and what to do.

Requirements: ``bwrap`` (Debian/Ubuntu package ``bubblewrap``) and either root or
unprivileged user namespaces; or, for ``process``, libseccomp (``libseccomp2`` and
pip's ``pyseccomp``) and ideally Landlock (Linux >= 5.13).

    from autograder.sandbox import Sandbox
    with Sandbox(call_timeout=10) as box:     # ~0.1-0.3 s: fresh child, NumPy imported
        box.exec(student_source)              # the notebook's code cells, one string
        ReLU = box.remote("ReLU")             # RemoteClass: use it like the local class
        relu = ReLU()                         # RemoteObject: attribute access = one RPC
        y = relu.forward(x)                   # a plain np.ndarray (dtype kept)
        box.fetch("CONSTANT")                 # a global's value as plain data
        box.output                            # what it printed (first 64 KiB)

Semantics (so that checks written for local classes run unchanged, as
the checks of ``autograder.checks.activations/layers/optimizers`` do):

* arguments are copied into the child; in-place writes the student makes to
  array arguments are copied back into the caller's arrays after the call;
* arrays read through attributes (``layer.params["W"]``) are mirrored: an
  in-place write (``[...] = w``) reaches the child before the next request;
* results that are not plain data (objects, object arrays) come back as
  `RemoteObject` handles, never as data: an always-true ``__eq__`` stays remote;
* calls run under ``np.errstate(over/divide/invalid="raise")`` with
  RuntimeWarning as an error (``strict_floats``), like the local checks;
* exceptions raised by student code become `RemoteError`, also deriving from
  the matching built-in (``except ValueError`` works); SystemExit and
  KeyboardInterrupt stay in the child;
* timeouts, a killed child or malformed data raise `SandboxError` subclasses
  and stop the child; the grader itself never hangs or dies.
"""

from .backends import preflight
from .protocol import ProtocolError
from .remote import RemoteClass, RemoteMethod, RemoteObject
from .runner import (
    Limits,
    RemoteError,
    Sandbox,
    SandboxCrashed,
    SandboxError,
    SandboxProtocolError,
    SandboxTimeout,
    SandboxUnavailable,
)

__all__ = [
    "Limits", "ProtocolError", "RemoteClass", "RemoteError", "RemoteMethod", "RemoteObject",
    "Sandbox", "SandboxCrashed", "SandboxError", "SandboxProtocolError", "SandboxTimeout",
    "SandboxUnavailable", "preflight",
]
