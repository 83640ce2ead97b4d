"""The "process" backend: student code in a plain child process, confined without namespaces.

For hosts where bubblewrap cannot create namespaces (Docker, Kubernetes, Gradescope: no
CAP_SYS_ADMIN) or an ordinary user whose kernel forbids user namespaces. The child is
``python -I -S -B`` with an empty environment, its working directory a fresh private directory,
and no descriptors but /dev/null, its output pipe and its two protocol pipes. Before anything of
the student's runs, it (``confine.apply``):

* sets rlimits (CPU, address space, processes, file size, open files, no core dumps);
* switches to a fresh unprivileged uid/gid when the grader is root (else keeps the
  instructor's uid: RLIMIT_NPROC then counts the instructor's processes, see `nproc_for`);
* sets no_new_privs and applies Landlock where the kernel has it: read-only beneath the
  interpreter, its standard library (without site-packages), NumPy/SciPy, the system's shared
  libraries and the sandbox's own modules; execute only the interpreter; read-write only in the
  private directory. Nothing else exists for it: not the repository, the venv, the hidden tests,
  /autograder/source, other students' files, /etc, /home;
* installs a seccomp filter (compiled here with libseccomp, `seccomp_program`) that denies
  socket(), ptrace and process_vm_*, mount and friends, unshare/setns and clone with namespace
  flags, kexec, reboot, modules, bpf, perf_event_open, keyrings, io_uring, userfaultfd,
  kill(-1, ...), and setsid/setpgid (so that killing the process group ends every process it
  started).

The runtime the child sees (`Runtime`) is built once per grader process: its modules are copied
into a private directory and NumPy/SciPy linked there. When the grader is root and the
interpreter lives where an unprivileged uid cannot reach it (``/root/.pyenv``), the interpreter
and its standard library are hard-linked (or copied) into that directory too.
"""

from __future__ import annotations

import atexit
import dataclasses
import errno
import functools
import json
import os
import secrets
import shutil
import stat
import sys
import sysconfig
import tempfile
from pathlib import Path

from .bwrap import CHILD_MODULES, HERE, SITE_PACKAGES
from .errors import SandboxUnavailable

ENV = {"LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
       "MKL_NUM_THREADS": "1"}  # + HOME and TMPDIR: the private directory
STDLIB_SKIP = {"site-packages", "dist-packages", "test", "idlelib", "tkinter", "turtledemo",
               "ensurepip"}
SYSTEM_LIB_DIRS = ("/lib", "/lib64", "/usr/lib", "/usr/lib64", "/usr/local/lib")
DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "unshare", "setns",
    "kexec_load", "kexec_file_load", "reboot", "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "acct", "swapon", "swapoff",
    "syslog", "quotactl", "open_by_handle_at", "name_to_handle_at", "lookup_dcookie", "vhangup",
    "iopl", "ioperm", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "sethostname", "setdomainname", "fanotify_init", "setsid", "setpgid",
)
CLONE_NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                         0x40000000)  # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET


@dataclasses.dataclass
class Runtime:
    """The private, read-only directory the child runs from (one per grader process)."""

    root: Path
    python: str  # the interpreter to execute
    lib: str     # sandbox_child.py, sandbox_protocol.py, sandbox_confine.py
    site: str    # numpy, numpy.libs, scipy, scipy.libs (links)
    rules: str   # the Landlock rules (JSON)
    owner: int   # the pid that built it (and removes it at exit)


_RUNTIME: Runtime | None = None


def runtime(drop_uid: bool) -> Runtime:
    global _RUNTIME
    if _RUNTIME is None or _RUNTIME.owner != os.getpid() or not _RUNTIME.root.is_dir():
        _RUNTIME = _build_runtime(drop_uid)
    return _RUNTIME


def _build_runtime(drop_uid: bool) -> Runtime:
    root = Path(tempfile.mkdtemp(prefix="npdl-sandbox-"))
    atexit.register(_remove_runtime, root, os.getpid())
    root.chmod(0o755)
    lib, site = root / "lib", root / "site"
    lib.mkdir(mode=0o755)
    site.mkdir(mode=0o755)
    for name in CHILD_MODULES:
        shutil.copyfile(HERE / f"{name}.py", lib / f"sandbox_{name}.py")
        (lib / f"sandbox_{name}.py").chmod(0o644)
    import numpy
    site_packages = Path(numpy.__file__).resolve().parent.parent
    read = [str(lib), str(site)]
    for name in SITE_PACKAGES:
        source = site_packages / name
        if not source.is_dir():
            continue
        if drop_uid and not world_reachable(source):
            _link_tree(source, site / name, skip=set())
        else:
            (site / name).symlink_to(source, target_is_directory=True)
            read.append(str(source))
    executable = Path(os.path.realpath(sys.executable))
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    dynload = Path(sysconfig.get_paths()["platstdlib"]).resolve() / "lib-dynload"
    base_lib = Path(sys.base_prefix).resolve() / "lib"
    libpython = sorted(base_lib.glob("libpython*.so*"))
    if drop_uid and not (world_reachable(executable) and world_reachable(stdlib)):
        mirror = root / "python"  # bin/pythonX.Y, lib/pythonX.Y, lib/libpython*: as bwrap binds
        (mirror / "bin").mkdir(parents=True, mode=0o755)
        _link_file(executable, mirror / "bin" / executable.name)
        _link_tree(stdlib, mirror / "lib" / stdlib.name, skip=STDLIB_SKIP)
        if dynload.is_dir() and not (mirror / "lib" / stdlib.name / "lib-dynload").exists():
            _link_tree(dynload, mirror / "lib" / stdlib.name / "lib-dynload", skip=set())
        for path in libpython:
            _link_file(path, mirror / "lib" / path.name)
        executable, read = mirror / "bin" / executable.name, read + [str(mirror / "lib")]
    else:
        read += [str(p) for p in sorted(stdlib.iterdir()) if p.name not in STDLIB_SKIP]
        read += [str(dynload)] + [str(p) for p in libpython]
    read += system_library_paths() + ["/dev/urandom", "/dev/random", "/dev/zero"]
    rules = root / "landlock.json"
    rules.write_text(json.dumps({"read": read, "exec": [str(executable)],
                                 "rw_files": ["/dev/null"]}))
    rules.chmod(0o644)
    return Runtime(root, str(executable), str(lib), str(site), str(rules), os.getpid())


def _remove_runtime(root: Path, owner: int) -> None:
    if os.getpid() == owner:
        shutil.rmtree(root, ignore_errors=True)


def world_reachable(path: Path) -> bool:
    """Whether any unprivileged uid can reach ``path``: others may search every ancestor and
    read it (and search it, for a directory)."""
    path = Path(os.path.realpath(path))
    try:
        for ancestor in reversed(path.parents):
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                return False
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IROTH) and (not stat.S_ISDIR(mode) or bool(mode & stat.S_IXOTH))


def _link_file(source: Path, target: Path) -> None:
    if source.is_symlink():
        target.symlink_to(os.readlink(source))
        return
    try:
        os.link(source, target)  # same file system: instant, and the file keeps its own mode
    except OSError:
        shutil.copy2(source, target)
    if not target.stat().st_mode & stat.S_IROTH:
        raise SandboxUnavailable(f"{source} is not readable by other users: the sandbox's "
                                 "unprivileged uid could not load it.")


def _link_tree(source: Path, target: Path, skip: set) -> None:
    """Recreate ``source`` under ``target``: directories 0755, files hard-linked (or copied)."""
    for directory, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if d not in skip]
        here = target / Path(directory).relative_to(source)
        here.mkdir(parents=True, exist_ok=True, mode=0o755)
        here.chmod(0o755)
        for name in files:
            _link_file(Path(directory, name), here / name)


def system_library_paths() -> list[str]:
    """The system's shared-library directories, minus any Python packages installed there."""
    paths, seen = ["/etc/ld.so.cache"], set()
    for directory in SYSTEM_LIB_DIRS:
        real = os.path.realpath(directory)
        if real in seen or not os.path.isdir(real):
            continue
        seen.add(real)
        paths += [str(p) for p in sorted(Path(real).iterdir()) if not p.name.startswith("python")]
    return paths


# ------------------------------------------------------------------ ids, limits, seccomp

def pick_ids() -> tuple[int, int]:
    """A fresh uid/gid (same number) as bwrap mode uses, inside this namespace's mapped ids."""
    def mapped(kind):
        try:
            lines = Path(f"/proc/self/{kind}_map").read_text().splitlines()
            return [(int(line.split()[0]), int(line.split()[2])) for line in lines if line.strip()]
        except (OSError, ValueError, IndexError):
            return [(0, 1 << 32)]
    low, high = 0, 0
    for ustart, ucount in mapped("uid"):
        for gstart, gcount in mapped("gid"):
            lo, hi = max(ustart, gstart, 1000), min(ustart + ucount, gstart + gcount, 1 << 31)
            if hi - lo > high - low:
                low, high = lo, hi
    if high - low < 2:
        raise SandboxUnavailable(
            "this user namespace maps no unprivileged uid/gid for the sandbox to switch to (see "
            "/proc/self/uid_map): give the container a range of subordinate ids, or run the "
            "grader as an ordinary user.")
    low = max(low, min(1_000_000, (low + high) // 2))  # high ids: away from real accounts
    uid = low + secrets.randbelow(high - low)
    return uid, uid


def nproc_for(uid: int, max_processes: int) -> int:
    """RLIMIT_NPROC for a child keeping ``uid``: the tasks that uid already runs + the budget."""
    tasks = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                status = Path(entry.path, "status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if int(fields.get("Uid", "-1").split()[0]) == uid:
                tasks += int(fields.get("Threads", "1").strip())
    return tasks + max_processes


@functools.lru_cache(maxsize=1)
def seccomp_program() -> str:
    """The seccomp filter as classic BPF (hex), compiled with libseccomp for this machine."""
    try:
        import pyseccomp as seccomp
    except ImportError as error:
        raise SandboxUnavailable(
            "the process sandbox needs libseccomp's Python binding, which is missing "
            f"({error}): pip install -c constraints.txt pyseccomp (it is in "
            "requirements-dev.txt).") from None
    except RuntimeError as error:  # pyseccomp raises this when libseccomp.so.2 is missing
        raise SandboxUnavailable(
            f"the process sandbox needs libseccomp ({error}): apt-get install -y libseccomp2 "
            "(Debian/Ubuntu) or dnf install libseccomp.") from None
    if "Seccomp:" not in Path("/proc/self/status").read_text():
        raise SandboxUnavailable("this kernel has no seccomp filters (CONFIG_SECCOMP_FILTER): "
                                 "the process sandbox cannot start.")
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    deny = seccomp.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        try:
            rules.add_rule(deny, name)
        except (OSError, ValueError, RuntimeError):
            pass  # a system call this architecture does not have
    rules.add_rule(seccomp.ERRNO(errno.EACCES), "socket")  # every family: no network, no daemons
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")  # its flags are out of reach: glibc
    for flag in CLONE_NAMESPACE_FLAGS:                       # falls back to clone(), checked here
        rules.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.add_rule(deny, "kill", seccomp.Arg(0, seccomp.MASKED_EQ, 0xFFFFFFFF, 0xFFFFFFFF))  # -1
    with tempfile.TemporaryFile() as out:
        rules.export_bpf(out)
        out.seek(0)
        program = out.read()
    if not program or len(program) % 8:
        raise SandboxUnavailable("libseccomp produced no usable seccomp program.")
    return program.hex()
