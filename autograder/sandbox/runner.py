"""Trusted side: start a sandboxed child with the student's code and talk to it.

The grader never runs student code. `Sandbox` starts a fresh interpreter in one of two
backends (``backends.py``): inside bubblewrap (``bwrap``: it sees only the OS libraries, the
Python standard library, NumPy/SciPy and a private tmpfs, with no network and its own pid
namespace), or as a plain child process confined by a uid, seccomp and Landlock (``process``,
for hosts without namespaces). Either way the child sets rlimits and, when the grader is root,
switches to a fresh unprivileged uid before it runs anything of the student's (see
``child.py`` and ``confine.py``). Everything that comes back is parsed strictly
(`protocol.decode_npy`, no pickle) and bounded in size and time; a dead or hung child becomes a
`SandboxError`.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import select
import signal
import subprocess
import time

import numpy as np

from . import backends, protocol
from .bwrap import Limits
from .errors import (
    RemoteError,
    SandboxCrashed,
    SandboxError,
    SandboxProtocolError,
    SandboxTimeout,
    SandboxUnavailable,
    exit_reason,
    remote_error,
)
from .protocol import ProtocolError

__all__ = ["Limits", "RemoteError", "Sandbox", "SandboxCrashed", "SandboxError",
           "SandboxProtocolError", "SandboxTimeout", "SandboxUnavailable"]


class Sandbox:
    """One sandboxed child running one student's code. Use as a context manager.

    >>> with Sandbox() as box:                       # doctest: +SKIP
    ...     box.exec(student_source)
    ...     ReLU = box.remote("ReLU")                # a proxy: calls become RPCs
    ...     out = ReLU().forward(np.ones((2, 3)))    # a plain ndarray, validated
    """

    def __init__(self, *, limits: Limits | None = None, call_timeout: float = 10.0,
                 session_timeout: float = 600.0, start_timeout: float = 30.0,
                 output_limit: int = 64 << 10, max_message_bytes: int = 64 << 20,
                 max_array_elements: int = 50_000_000, strict_floats: bool = True,
                 backend: str | None = None):
        self._proc = self._launch = None
        self.backend = backends.resolve(backend)  # "bwrap" or "process"; None: $NPDL_SANDBOX
        self.limits = limits or Limits()
        self.call_timeout, self.output_limit = call_timeout, output_limit
        self.max_message_bytes, self.max_array_elements = max_message_bytes, max_array_elements
        self.strict_floats = strict_floats  # calls raise on overflow/divide/invalid, like checks
        self._output, self.output_dropped = bytearray(), 0
        self._mirrors: dict[tuple, list] = {}
        self._start(session_timeout, start_timeout)

    # ---------------------------------------------------------------- life cycle
    def _start(self, session_timeout, start_timeout):
        to_child, self._to_child = os.pipe()
        self._from_child, from_child = os.pipe()
        self._out, out = os.pipe()
        config = {"limits": dataclasses.asdict(self.limits), "fd_in": to_child,
                  "fd_out": from_child}
        started = time.monotonic()
        try:
            self._launch = launch = backends.launch(self.backend, self.limits, config)
            self.uid = launch.uid  # NPROC counts per uid: a fresh one per sandbox when root
            self._proc = subprocess.Popen(
                launch.command, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                pass_fds=(to_child, from_child), start_new_session=True, umask=0o022,
                env=launch.env, cwd=launch.cwd)
        except OSError as error:
            self.close()
            raise SandboxUnavailable(backends.unavailable(self.backend, str(error))) from error
        except BaseException:
            self.close()
            raise
        finally:
            for fd in (to_child, from_child, out):
                os.close(fd)
        for fd in (self._to_child, self._from_child, self._out):
            os.set_blocking(fd, False)
        for fd in (self._to_child, self._from_child):  # fewer round trips for big arrays
            try:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
            except OSError:
                pass
        self._session_deadline = started + session_timeout
        try:
            info = self._request({"op": None}, timeout=start_timeout, send=False)
        except SandboxError as error:
            tail = self.output[-1000:].strip()
            detail = f"it stopped before it was ready; its output: {tail}" if tail else str(error)
            raise SandboxUnavailable(backends.unavailable(self.backend, detail)) from error
        info = info if isinstance(info, dict) else {}
        self.child_pid = info.get("pid")
        confined = info.get("confined") if isinstance(info.get("confined"), dict) else {}
        self.isolation = {"backend": self.backend, **confined}  # what the child applied
        backends.started(self.backend, confined)
        self.startup_seconds = time.monotonic() - started

    def close(self) -> None:
        """Kill the child (and its whole pid namespace); idempotent."""
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._proc is not None:
            self._proc.wait()
        for name in ("_to_child", "_from_child", "_out"):
            fd = getattr(self, name, None)
            if fd is not None:
                os.close(fd)
                setattr(self, name, None)
        if self._launch is not None:
            self._launch.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None and self._to_child is not None

    @property
    def output(self) -> str:
        """The first ``output_limit`` bytes the child printed (stdout and stderr)."""
        return self._output.decode("utf-8", errors="replace")

    # ---------------------------------------------------------------- public API
    def exec(self, source: str, filename: str = "<submission>", timeout: float | None = None):
        """Run student source code (e.g. the cells of a notebook) in the child's namespace."""
        self._request({"op": "exec", "source": source, "filename": filename},
                      timeout=timeout or self.call_timeout)

    def remote(self, name: str):
        """A proxy for the class or function ``name`` defined by the student's code."""
        from .remote import RemoteClass
        return RemoteClass(self, name)

    def fetch(self, name: str):
        """The value of the global ``name`` as plain data (arrays, numbers, lists, ...)."""
        reply = self._request({"op": "getattr", "attr": None, "target": {"$global": name}})
        if not (isinstance(reply, dict) and set(reply) == {"value"}):
            raise self._broken(ProtocolError("malformed fetch reply."))
        return reply["value"]

    # ---------------------------------------------------------------- RPC core
    def call(self, marker: dict, attr: str | None, args=(), kwargs=None, timeout=None):
        header = {"op": "call", "target": marker, "attr": attr, "strict_floats": self.strict_floats}
        return self._request(header, timeout=timeout,
                             values={"args": list(args), "kwargs": dict(kwargs or {})})

    def getattr(self, marker: dict, attr: str):
        """``("callable", None)`` or ``("value", plain data)``; arrays in it are mirrored."""
        reply = self._request({"op": "getattr", "target": marker, "attr": attr})
        if not (isinstance(reply, dict) and len(reply) == 1
                and set(reply) <= {"callable", "value"}):
            raise self._broken(ProtocolError("malformed getattr reply."))
        if "callable" in reply:
            return "callable", None
        self._mirror((json.dumps(marker), attr), [attr], reply["value"])
        return "value", reply["value"]

    def setattr(self, marker: dict, attr: str, value) -> None:
        self._request({"op": "setattr", "target": marker, "attr": attr}, values={"value": value})

    def list(self, marker: dict) -> list:
        return self._request({"op": "list", "target": marker})

    def _request(self, header, values=None, timeout=None, send=True):
        if self._to_child is None:
            raise SandboxCrashed("the sandbox is closed (an earlier error ended it).")
        if send and header["op"] != "assign":
            self._flush_mirrors()
        originals, ids = [], {}
        for key, value in (values or {}).items():
            header[key] = protocol.encode_value(value, originals, self._encode_other, ids)
        deadline = min(time.monotonic() + (timeout or self.call_timeout), self._session_deadline)
        if send:
            self._send(protocol.pack_message(header, originals), deadline)
        try:
            reply, blobs = protocol.unpack_message(lambda n: self._recv_exact(n, deadline),
                                                   max_bytes=self.max_message_bytes)
            arrays = [protocol.decode_npy(b, max_elements=self.max_array_elements) for b in blobs]
            if reply.get("ok") is not True:
                raise remote_error(reply.get("error"))
            value = protocol.decode_value(reply.get("value"), arrays, self._decode_marker)
            self._write_back(reply.get("updated"), originals, arrays)
        except ProtocolError as error:
            raise self._broken(error) from None
        return value

    def _write_back(self, updated, originals, arrays):
        """Copy in-place changes the student made to array arguments into the caller's arrays."""
        if not isinstance(updated, list):
            raise ProtocolError("'updated' must be a list.")
        for pair in updated:
            if not (isinstance(pair, list) and len(pair) == 2 and all(type(i) is int for i in pair)
                    and 0 <= pair[0] < len(originals) and 0 <= pair[1] < len(arrays)):
                raise ProtocolError("malformed 'updated' entry.")
            target, new = originals[pair[0]], arrays[pair[1]]
            if new.shape != target.shape or new.dtype != target.dtype:
                raise ProtocolError("an updated argument changed its shape or dtype.")
            if not target.flags.writeable:
                raise remote_error({"type": "ValueError", "bases": ["ValueError"], "traceback": "",
                                    "message": "the submitted code wrote into a read-only array"})
            np.copyto(target, new)

    def _encode_other(self, value):
        from .remote import RemoteObject
        if isinstance(value, RemoteObject) and value._sb_session is self:
            return value._sb_marker
        raise TypeError(f"cannot send a {type(value).__name__} to the sandbox: only numbers, "
                        "strings, arrays, dtypes, PCG64 generators, lists/tuples/dicts of them "
                        "and objects living in the same sandbox.")

    def _decode_marker(self, marker):
        from .remote import RemoteObject
        handle = marker.get("$handle")
        if type(handle) is not int or not set(marker) <= {"$handle", "type"}:
            raise ProtocolError(f"unknown marker {sorted(map(str, marker))[:5]}.")
        return RemoteObject(self, {"$handle": handle}, str(marker.get("type", "object"))[:100])

    # ---------------------------------------------------------------- mirrors
    def _mirror(self, key, path, value):
        """Remember arrays read through an attribute so in-place writes reach the child."""
        entries = []

        def walk(item, where):
            if type(item) is np.ndarray:
                entries.append((where, item, item.copy()))
            elif type(item) is dict:
                for k, v in item.items():
                    walk(v, where + [k])
            elif type(item) in (list, tuple):
                for i, v in enumerate(item):
                    walk(v, where + [i])
        walk(value, path)
        self._mirrors.pop(key, None)
        if entries:
            self._mirrors[key] = entries

    def _flush_mirrors(self):
        for (marker, _), entries in list(self._mirrors.items()):
            for i, (path, array, before) in enumerate(entries):
                if not protocol.same_bytes(array, before):
                    entries[i] = (path, array, array.copy())  # report a failure only once
                    self._request({"op": "assign", "target": json.loads(marker), "path": path},
                                  values={"value": array})

    # ---------------------------------------------------------------- transport
    def _broken(self, error: Exception) -> SandboxError:
        self.close()
        return SandboxProtocolError(f"the sandboxed code sent invalid data: {error}")

    def _wait(self, fd: int, for_write: bool, deadline: float) -> None:
        """Block until ``fd`` is ready, draining the child's output meanwhile."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise SandboxTimeout("the submitted code did not answer in time (an infinite "
                                     "loop, or too slow); the sandbox was stopped.")
            readers = [self._out] if self._out is not None else []
            writers = [fd] if for_write else []
            ready_r, ready_w, _ = select.select(readers + ([] if for_write else [fd]), writers,
                                                [], remaining)
            if self._out is not None and self._out in ready_r:
                self._drain_output()
            if fd in ready_r or fd in ready_w:
                return

    def _drain_output(self):
        chunk = os.read(self._out, 1 << 16)
        if not chunk:
            os.close(self._out)
            self._out = None
            return
        room = max(0, self.output_limit - len(self._output))
        self._output += chunk[:room]
        self.output_dropped += max(0, len(chunk) - room)

    def _dead(self) -> SandboxCrashed:
        code = None
        if self._proc is not None:
            try:
                code = self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        self.close()
        tail = self.output[-500:].strip()
        return SandboxCrashed(f"the sandboxed process stopped: {exit_reason(code)}."
                              + (f" Its last output: {tail}" if tail else ""))

    def _send(self, buffers: list, deadline: float) -> None:
        """Write all buffers (one writev per wake-up: one context switch for small messages)."""
        pending = [memoryview(b).cast("B") for b in buffers if len(b)]
        while pending:
            self._wait(self._to_child, True, deadline)
            try:
                written = os.writev(self._to_child, pending[:64])
            except BlockingIOError:
                continue
            except OSError:  # BrokenPipeError and friends: the child is gone
                raise self._dead() from None
            protocol.drop_written(pending, written)

    def _recv_exact(self, n: int, deadline: float) -> bytearray:
        buffer = bytearray(n)
        view, got = memoryview(buffer), 0
        while got < n:
            self._wait(self._from_child, False, deadline)
            try:
                count = os.readv(self._from_child, [view[got:]])
            except BlockingIOError:
                continue
            if not count:
                raise self._dead()
            got += count
        return buffer
