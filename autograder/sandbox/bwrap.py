"""The isolation: a bubblewrap command line and the resource limits of one sandbox.

The child sees only: /usr/lib and /usr/lib64 (shared libraries; any system Python
packages under /usr/lib/python* are hidden), the interpreter and its standard
library at /sandbox/python, NumPy/SciPy at /sandbox/site, the three sandbox modules
at /sandbox/lib, /dev/{null,zero,random,urandom}, its own /proc, and a
size-limited private tmpfs at /tmp (its working directory). No /etc, /home,
/root, /work: the repository, the venv and other students' files do not exist
there. Network, IPC, UTS and pid namespaces are private. As root, bwrap keeps only
CAP_SETUID/CAP_SETGID for the child's switch to a fresh unprivileged uid; as an ordinary user it
creates a user namespace too and the child runs as the instructor's uid without capabilities.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
INSIDE = {"python": "/sandbox/python", "site": "/sandbox/site", "lib": "/sandbox/lib",
          "work": "/tmp"}
SITE_PACKAGES = ("numpy", "numpy.libs", "scipy", "scipy.libs")
CHILD_MODULES = ("child", "protocol", "confine")  # run in the child as sandbox_<name>


@dataclasses.dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox (CPU and memory apply to each process)."""

    cpu_seconds: int = 60            # RLIMIT_CPU: the whole session's CPU budget
    memory_bytes: int = 2 << 30      # RLIMIT_AS: address space (NumPy + OpenBLAS need ~0.5 GB)
    max_processes: int = 16          # RLIMIT_NPROC for the sandbox's own uid (threads count)
    file_bytes: int = 16 << 20       # RLIMIT_FSIZE: largest file it may write
    open_files: int = 256            # RLIMIT_NOFILE
    tmp_bytes: int = 64 << 20        # size of the private tmpfs at /tmp


@functools.lru_cache(maxsize=1)
def _bwrap_version() -> tuple[int, ...]:
    try:
        out = subprocess.run(["bwrap", "--version"], capture_output=True, text=True, timeout=10)
        return tuple(int(n) for n in out.stdout.split()[-1].split(".")[:2])
    except (OSError, ValueError, IndexError, subprocess.SubprocessError):
        return (0, 0)


def _python_binds() -> list[tuple[str, str]]:
    """(host path, sandbox path) pairs for the interpreter, its stdlib and NumPy/SciPy."""
    base, inside = Path(sys.base_prefix), INSIDE["python"]
    executable = Path(os.path.realpath(sys.executable))
    binds = [(str(executable), f"{inside}/bin/{executable.name}")]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    binds.append((str(stdlib), f"{inside}/lib/{stdlib.name}"))
    binds += [(str(lib), f"{inside}/lib/{lib.name}")
              for lib in (base / "lib").glob("libpython*.so*")]
    site = Path(np.__file__).resolve().parent.parent
    binds += [(str(site / name), f"{INSIDE['site']}/{name}") for name in SITE_PACKAGES
              if (site / name).is_dir()]
    binds += [(str(HERE / f"{name}.py"), f"{INSIDE['lib']}/sandbox_{name}.py")
              for name in CHILD_MODULES]
    return binds


def bwrap_command(limits: Limits, config: dict, privileged: bool = True) -> list[str]:
    """The command line. ``privileged``: bwrap runs as root and the child switches to
    ``config["uid"]``; otherwise bwrap runs as the instructor in a new user namespace (no
    setuid bwrap needed) where the child keeps the instructor's uid, with no capabilities."""
    inside = INSIDE["python"]
    stdlib = f"{inside}/lib/{Path(sysconfig.get_paths()['stdlib']).name}"
    cmd = ["bwrap", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
           "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox",
           "--cap-drop", "ALL"]
    if privileged:
        cmd += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:  # --disable-userns (bwrap >= 0.8): no nested user namespace for the student
        cmd += ["--unshare-user"] + (["--disable-userns"] if _bwrap_version() >= (0, 8) else [])
    cmd += ["--clearenv", "--setenv", "HOME", INSIDE["work"], "--setenv", "LANG", "C.UTF-8"]
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        cmd += ["--setenv", var, "1"]
    for directory in ("/usr", "/sandbox", inside, f"{inside}/bin", f"{inside}/lib", INSIDE["site"],
                      INSIDE["lib"], "/dev"):
        cmd += ["--perms", "0755", "--dir", directory]
    cmd += ["--ro-bind", "/usr/lib", "/usr/lib", "--symlink", "usr/lib", "/lib"]
    if os.path.isdir("/usr/lib64"):
        cmd += ["--ro-bind", "/usr/lib64", "/usr/lib64", "--symlink", "usr/lib64", "/lib64"]
    for python_dir in sorted(Path("/usr/lib").glob("python*")):  # system site/dist-packages
        cmd += ["--tmpfs", str(python_dir)]
    for source, target in _python_binds():
        cmd += ["--ro-bind", source, target]
    if (Path(sysconfig.get_paths()["stdlib"]) / "site-packages").is_dir():  # none in Debian's
        cmd += ["--tmpfs", f"{stdlib}/site-packages"]
    for device in ("null", "zero", "urandom", "random"):
        cmd += ["--dev-bind", f"/dev/{device}", f"/dev/{device}"]
    cmd += ["--proc", "/proc", "--perms", "1777", "--size", str(limits.tmp_bytes),
            "--tmpfs", INSIDE["work"], "--chdir", "/"]
    executable = Path(os.path.realpath(sys.executable)).name
    return cmd + [f"{inside}/bin/{executable}", "-I", "-S", "-B",
                  f"{INSIDE['lib']}/sandbox_child.py", json.dumps(config)]
