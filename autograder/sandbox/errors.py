"""Errors of the sandbox, and the exceptions that stand for the student's own."""

from __future__ import annotations

import builtins
import signal

from .protocol import ProtocolError


class SandboxError(Exception):
    """The sandbox could not run the request (not an exception raised by student code)."""


class SandboxUnavailable(SandboxError):
    """The chosen sandbox backend cannot start here; the message says what is missing and
    what to do (install bubblewrap, choose the process backend, ...)."""


class SandboxTimeout(SandboxError):
    """A call or the whole session ran out of wall-clock time; the child was killed."""


class SandboxCrashed(SandboxError):
    """The child process ended (os._exit, a signal, a resource limit) or closed the pipe."""


class SandboxProtocolError(SandboxError):
    """The child sent malformed or oversized data; it was killed."""


class RemoteError(Exception):
    """An exception raised by student code in the child.

    When the remote type derives from a built-in ``Exception`` subclass (e.g. a student's
    ``ShapeError(ValueError)``), the raised class also derives from that built-in, so
    ``except ValueError`` works as it would locally. ``SystemExit`` and
    ``KeyboardInterrupt`` never become real ones here.
    """

    def __init__(self, info: dict):
        self.type_name = info["type"]
        self.remote_bases = info["bases"]
        self.remote_message = info["message"]
        self.remote_traceback = info["traceback"]
        super().__init__(f"{self.type_name}: {self.remote_message}" if self.remote_message
                         else self.type_name)


_ERROR_CLASSES: dict[str, type | None] = {}


def remote_error(info) -> RemoteError:
    """Validate an error description from the child and build the matching `RemoteError`."""
    if not (isinstance(info, dict) and isinstance(info.get("bases"), list)
            and all(isinstance(info.get(k), str) for k in ("type", "message", "traceback"))):
        raise ProtocolError("malformed error description.")
    info = {"type": info["type"][:100], "message": info["message"][:2000],
            "traceback": info["traceback"][:4000],
            "bases": [str(b)[:100] for b in info["bases"][:20]]}
    for name in info["bases"]:
        base = getattr(builtins, name, None)
        if not (isinstance(base, type) and issubclass(base, Exception)):
            continue  # never a SystemExit/KeyboardInterrupt here, whatever the child claims
        if name not in _ERROR_CLASSES:
            _ERROR_CLASSES[name] = type(f"Remote{name}", (RemoteError, base), {})
        if _ERROR_CLASSES[name] is not None:
            try:
                return _ERROR_CLASSES[name](info)
            except TypeError:  # e.g. UnicodeDecodeError or ExceptionGroup need other arguments
                _ERROR_CLASSES[name] = None
    return RemoteError(info)


def exit_reason(code: int | None) -> str:
    if code is None:
        return "it closed its connection"
    if code < 0 or code > 128:
        number = -code if code < 0 else code - 128
        known = number in {s.value for s in signal.Signals}
        name = signal.Signals(number).name if known else number
        hint = {"SIGXCPU": " (CPU time limit)", "SIGKILL": " (killed: CPU/memory limit?)",
                "SIGSEGV": " (segmentation fault)"}.get(str(name), "")
        return f"it was killed by signal {name}{hint}"
    return f"it exited with status {code} (sys.exit or os._exit in the submitted code?)"
