"""Which sandbox runs the student's code: bubblewrap where it starts, else a confined process.

``NPDL_SANDBOX`` (``auto`` | ``bwrap`` | ``process``, default ``auto``) is read each time a
`Sandbox` is created (an environment variable because grading happens in nbgrader preprocessors
and worker processes); ``Sandbox(backend=...)`` overrides it.

* ``bwrap``: bubblewrap. As root: private mount/pid/net/ipc/uts namespaces and a fresh uid.
  As an ordinary user: the same inside a new user namespace, under the instructor's uid.
* ``process``: no namespaces (``process.py``): uid switch when root, rlimits, seccomp, Landlock.
* ``auto``: the first of bwrap, process that actually starts a trivial sandbox; decided once per
  process and logged (one line, logger ``autograder.sandbox``).

A forced backend that cannot start raises `SandboxUnavailable` saying what is missing and what
to do. `preflight` checks this before anything is graded.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from . import process
from .bwrap import INSIDE, Limits, bwrap_command
from .errors import SandboxError, SandboxUnavailable

ENV = "NPDL_SANDBOX"
BACKENDS = ("bwrap", "process")
CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN = 6, 7, 21
log = logging.getLogger("autograder.sandbox")
_chosen: dict[int, str] = {}  # pid -> the backend `auto` chose in that process
_warned: set[str] = set()


def requested(backend: str | None = None) -> str:
    """The backend asked for: ``backend``, else ``$NPDL_SANDBOX``, else ``auto``."""
    name = (backend or os.environ.get(ENV) or "auto").strip().lower()
    if name not in ("auto", *BACKENDS):
        raise SandboxUnavailable(f"unknown sandbox backend {name!r}: use auto, bwrap or process "
                                 f"(--sandbox or the {ENV} environment variable).")
    return name


def resolve(backend: str | None = None) -> str:
    """The concrete backend a new Sandbox uses (``auto`` decided once per process)."""
    name = requested(backend)
    return choose() if name == "auto" else name


def choose() -> str:
    """Try bwrap, then process: the first that starts a trivial sandbox. Cached, logged."""
    if os.getpid() in _chosen:
        return _chosen[os.getpid()]
    failures = []
    for name in BACKENDS:
        try:
            _trial(name)
        except SandboxUnavailable as error:
            failures.append(f"{name}: {error}")
            continue
        _chosen[os.getpid()] = name
        why = f" (bwrap: {_cause(failures[0])})" if failures else ""
        log.info("sandbox backend: %s%s", name, why)
        return name
    raise SandboxUnavailable("no sandbox backend can start on this machine, so nothing can be "
                             "graded safely.\n" + "\n".join(failures))


def preflight(backend: str = "auto") -> str:
    """Start one sandbox of ``backend`` (or the one ``auto`` picks), run ``x = 1 + 1`` in it and
    fetch ``x``. Returns the backend used; raises `SandboxUnavailable` with an instructor
    message when it cannot start."""
    name = requested(backend)
    if name == "auto":
        if os.getpid() not in _chosen:
            return choose()  # its decision ran a trivial sandbox already
        name = _chosen[os.getpid()]
    _trial(name)
    return name


def _trial(name: str) -> None:
    from .runner import Sandbox
    try:
        with Sandbox(backend=name, call_timeout=30) as box:
            box.exec("x = 1 + 1", filename="<preflight>")
            if box.fetch("x") != 2:
                raise SandboxUnavailable(f"the {name} sandbox ran a trivial cell incorrectly.")
    except SandboxUnavailable:
        raise
    except SandboxError as error:
        raise SandboxUnavailable(unavailable(name, str(error))) from error


def _cause(failure: str) -> str:
    """``"bwrap: bubblewrap cannot ...: the cause. What to do ..."`` -> its first sentence."""
    first = failure.split(": ", 1)[-1].split(". ", 1)[0].split("\n", 1)[0]
    return first if len(first) <= 200 else first[:197] + "..."


# ------------------------------------------------------------------ launching

@dataclasses.dataclass
class Launch:
    """How to start one sandbox child: its command, environment, uid and clean-up."""

    command: list[str]
    env: dict
    cwd: str | None
    uid: int
    workdir: str | None = None  # the process backend's private directory, removed at close

    def cleanup(self) -> None:
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None


def launch(name: str, limits: Limits, config: dict) -> Launch:
    """Check ``name``'s prerequisites and complete ``config``; raises `SandboxUnavailable`."""
    root = os.geteuid() == 0
    if name == "bwrap":
        if shutil.which("bwrap") is None:
            raise SandboxUnavailable(unavailable("bwrap", "bubblewrap is not installed"))
        if root and not has_capability(CAP_SYS_ADMIN):
            raise SandboxUnavailable(unavailable("bwrap", ""))
        uid = process.pick_ids()[0] if root else None
        try:  # the process backend's filter as a second layer, where libseccomp is installed
            confine = {"seccomp": process.seccomp_program()}
        except SandboxUnavailable:
            confine = {}
        config.update(uid=uid, gid=uid, workdir=INSIDE["work"], site=INSIDE["site"],
                      lib=INSIDE["lib"], confine=confine)
        return Launch(bwrap_command(limits, config, privileged=root), {"PATH": os.defpath}, None,
                      uid if root else os.getuid())
    program = process.seccomp_program()
    if root and not (has_capability(CAP_SETUID) and has_capability(CAP_SETGID)):
        raise SandboxUnavailable(unavailable("process", "the grader runs as root without "
                                             "CAP_SETUID/CAP_SETGID"))
    run = process.runtime(drop_uid=root)
    uid, gid = process.pick_ids() if root else (os.getuid(), os.getgid())
    workdir = tempfile.mkdtemp(prefix="work-", dir=run.root)
    try:
        if root:
            os.chown(workdir, uid, gid)
        os.chmod(workdir, 0o700)
    except OSError as error:
        shutil.rmtree(workdir, ignore_errors=True)
        raise SandboxUnavailable(unavailable("process", f"cannot prepare {workdir}: {error}")) \
            from error
    config.update(uid=uid if root else None, gid=gid, workdir=workdir, site=run.site, lib=run.lib,
                  confine={"rules": run.rules, "seccomp": program, "parent": os.getpid()},
                  nproc=None if root else process.nproc_for(uid, limits.max_processes))
    env = dict(process.ENV, HOME=workdir, TMPDIR=workdir)
    command = [run.python, "-I", "-S", "-B", f"{run.lib}/sandbox_child.py", json.dumps(config)]
    return Launch(command, env, workdir, uid, workdir)


def started(name: str, confined) -> None:
    """Warn once per process when the process backend runs without Landlock."""
    if name == "process" and isinstance(confined, dict) and not confined.get("landlock"):
        if "landlock" not in _warned:
            _warned.add("landlock")
            log.warning("sandbox: this kernel has no Landlock (Linux >= 5.13 with lsm=landlock): "
                        "the process backend still applies its uid, rlimits and seccomp, but "
                        "student code can read every file its uid can read%s.",
                        "" if os.geteuid() == 0 else " (yours: run the grader as root, or use "
                        "bwrap)")


# ------------------------------------------------------------------ instructor messages

def has_capability(number: int) -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> number & 1)
    except (OSError, ValueError, IndexError):
        pass
    return False


def _sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def unavailable(name: str, detail: str) -> str:
    """The instructor message for a backend that cannot start: what is missing, what to do."""
    other = {"bwrap": "process", "process": "bwrap"}[name]
    switch = (f" Or choose the {other} backend: --sandbox {other} (or {ENV}={other}); "
              "--sandbox auto picks the strongest one that starts.")
    if name == "bwrap":
        if shutil.which("bwrap") is None:
            return ("bubblewrap is not installed: apt-get install -y bubblewrap (Debian/Ubuntu) "
                    "or dnf install bubblewrap." + switch)
        if os.geteuid() == 0 and not has_capability(CAP_SYS_ADMIN):
            return ("bubblewrap cannot create namespaces here: the grader runs as root without "
                    "CAP_SYS_ADMIN, as in Docker, Kubernetes and Gradescope containers (or under "
                    "setpriv --bounding-set -sys_admin). Give the container CAP_SYS_ADMIN "
                    "(docker run --cap-add SYS_ADMIN) or use the process backend: "
                    f"--sandbox process (or {ENV}=process).")
        if os.geteuid() != 0:
            causes = []
            if _sysctl("kernel.unprivileged_userns_clone") == "0":
                causes.append("sysctl kernel.unprivileged_userns_clone=0")
            if _sysctl("user.max_user_namespaces") == "0":
                causes.append("sysctl user.max_user_namespaces=0")
            if _sysctl("kernel.apparmor_restrict_unprivileged_userns") == "1":
                causes.append("AppArmor restricts unprivileged user namespaces "
                              "(kernel.apparmor_restrict_unprivileged_userns=1)")
            if causes:
                return ("bubblewrap cannot create a user namespace as an ordinary user: "
                        + "; ".join(causes) + ". Ask the administrator to allow user "
                        "namespaces, grade as root, or use the process backend: --sandbox "
                        f"process (or {ENV}=process).")
        return f"bubblewrap could not start the sandbox: {detail}." + switch
    return f"the process sandbox could not start: {detail}." + switch
