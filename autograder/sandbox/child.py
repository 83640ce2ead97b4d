"""The sandboxed side: confine itself, then serve requests from the trusted runner.

Started by `autograder.sandbox.runner` as ``python -I -S -B LIB/sandbox_child.py CONFIG_JSON``:
inside bubblewrap (LIB = /sandbox/lib; it runs as root in private namespaces, or as the
instructor in a user namespace) or, in the process backend, as a plain child process (LIB = a
private copy of these modules). Before it imports NumPy or runs anything of the student's,
`sandbox_confine.apply` sets the resource limits, switches to the unprivileged uid when the
grader is root and, in the process backend, applies no_new_privs, Landlock and seccomp. It can
import only the standard library and NumPy/SciPy (``config["site"]``).

Requests and replies use `sandbox_protocol` (autograder/sandbox/protocol.py).
Everything sent back is plain data; the trusted side re-validates it anyway.
"""

import builtins
import json
import os
import sys
import traceback
import warnings


class Server:
    """Executes student code in one namespace and answers requests about its objects."""

    def __init__(self, protocol, np, fd_in, fd_out):
        self.protocol, self.np = protocol, np
        self.fd_in, self.fd_out = fd_in, fd_out
        self.namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        self.objects = {}

    # ---------------------------------------------------------- transport
    def read_exact(self, n):
        buffer = bytearray(n)
        view, got = memoryview(buffer), 0
        while got < n:
            count = os.readv(self.fd_in, [view[got:]])
            if not count:
                os._exit(0)  # the runner went away
            got += count
        return buffer

    def send(self, header, arrays=()):
        buffers = self.protocol.pack_message(header, list(arrays))
        pending = [memoryview(b).cast("B") for b in buffers if len(b)]
        while pending:  # one writev: one wake-up of the runner for small replies
            written = os.writev(self.fd_out, pending[:64])
            self.protocol.drop_written(pending, written)

    # ---------------------------------------------------------- values
    def encode(self, value, arrays):
        return self.protocol.encode_value(value, arrays, self.make_handle)

    def make_handle(self, value):
        handle = len(self.objects) + 1
        self.objects[handle] = value
        return {"$handle": handle, "type": type(value).__name__[:100]}

    def resolve(self, marker):
        if "$handle" in marker:
            return self.objects[marker["$handle"]]
        if "$global" in marker:
            name = marker["$global"]
            if name in self.namespace:
                return self.namespace[name]
            if hasattr(builtins, name):
                return getattr(builtins, name)
            raise NameError(f"name {name!r} is not defined in the submitted code")
        raise ValueError(f"unknown marker {sorted(marker)}")

    # ---------------------------------------------------------- requests
    def handle(self, request, arrays):
        op = request["op"]
        decode = lambda data: self.protocol.decode_value(data, arrays, self.resolve)  # noqa: E731
        if op == "exec":
            exec(compile(request["source"], request["filename"], "exec"), self.namespace)
            return None
        target = decode(request["target"])
        if op == "call":
            method = getattr(target, request["attr"]) if request["attr"] else target
            args, kwargs = decode(request["args"]), decode(request["kwargs"])
            if not request.get("strict_floats"):
                return method(*args, **kwargs)
            with warnings.catch_warnings(), self.np.errstate(over="raise", divide="raise",
                                                             invalid="raise", under="ignore"):
                warnings.simplefilter("error", RuntimeWarning)  # as the local checks do
                return method(*args, **kwargs)
        if op == "getattr":
            if request["attr"] is None:  # a global's value (Sandbox.fetch)
                return {"value": target}
            value = getattr(target, request["attr"])
            if callable(value) and not isinstance(value, self.np.ndarray):
                return {"callable": True}
            return {"value": value}
        if op == "setattr":
            setattr(target, request["attr"], decode(request["value"]))
            return None
        if op == "assign":  # write a mirrored array back in place: keeps the student's object
            target = getattr(target, request["path"][0])
            for key in request["path"][1:]:
                target = target[key]
            target[...] = decode(request["value"])
            return None
        if op == "list":
            return list(target)
        raise ValueError(f"unknown op {op!r}")

    def reply(self, request, blobs):
        arrays = [self.protocol.decode_npy(b, max_elements=1 << 40) for b in blobs]
        snapshots = [a.copy() for a in arrays]
        try:
            result = self.handle(request, arrays)
            out = []
            value = self.encode(result, out)
            updated = []
            for i, (array, before) in enumerate(zip(arrays, snapshots, strict=True)):
                if not self.protocol.same_bytes(array, before):  # written in place
                    updated.append([i, len(out)])
                    out.append(array)
            self.send({"ok": True, "value": value, "updated": updated}, out)
        except BaseException as error:  # noqa: BLE001 - sys.exit, KeyboardInterrupt too
            self.send({"ok": False, "error": describe(error)})

    def serve(self):
        while True:
            request, blobs = self.protocol.unpack_message(self.read_exact, max_bytes=1 << 40)
            self.reply(request, blobs)
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except BaseException:  # noqa: BLE001 - the student may have replaced it
                    pass


def describe(error):
    """Exception -> JSON: type name, the names of its bases, message and traceback (truncated)."""
    def safe(fn, limit):
        try:
            return str(fn())[:limit]
        except BaseException:  # noqa: BLE001 - a student's __str__ may raise
            return "<unprintable>"
    return {"type": safe(lambda: type(error).__name__, 100),
            "bases": [safe(lambda c=c: c.__name__, 100) for c in type(error).__mro__[:20]],
            "message": safe(lambda: error, 2000),
            "traceback": safe(lambda: "".join(traceback.format_exception(error))[-4000:], 4000)}


def main():
    config = json.loads(sys.argv[1])
    sys.path.append(config["lib"])
    import sandbox_confine
    confined = sandbox_confine.apply(config)  # rlimits, uid; Landlock and seccomp if asked
    sys.path[:] = [p for p in sys.path if p and p != config["lib"]] + [config["site"],
                                                                          config["lib"]]
    import numpy as np
    import sandbox_protocol as protocol
    sys.path.remove(config["lib"])
    server = Server(protocol, np, config["fd_in"], config["fd_out"])
    ready = server.encode({"numpy": np.__version__, "pid": os.getpid(), "confined": confined}, [])
    server.send({"ok": True, "value": ready, "updated": []})
    server.serve()


if __name__ == "__main__":
    main()
