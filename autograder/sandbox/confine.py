"""The sandboxed side's confinement: rlimits, uid switch, Landlock and seccomp (stdlib only).

Loaded by ``child.py`` as ``sandbox_confine`` before NumPy or anything of the student's:
``apply(config)`` confines the current process and returns what it applied. Both backends
use it for rlimits, the uid switch and the seccomp filter (bwrap's namespaces do the rest); the
process backend also asks for

* ``no_new_privs`` (no setuid binary can give privileges back),
* Landlock (kernel >= 5.13, raw syscalls): read-only beneath the paths in the rules file,
  execute only the interpreter, read-write only the private working directory; TCP bind and
  connect denied (ABI >= 4); signals and abstract Unix sockets scoped to the sandbox (ABI >= 6),
* a seccomp BPF program compiled by the trusted side with libseccomp (see ``process.py``),
  installed last (in the bwrap backend too, when libseccomp is available).

Everything the child does before `apply` returns is the project's code, never the student's.
"""

import ctypes
import json
import os
import resource
import stat

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_SECCOMP, PR_SET_NO_NEW_PRIVS = 1, 4, 22, 38
SECCOMP_MODE_FILTER = 2
SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_ADD_RULE, SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
LANDLOCK_CREATE_RULESET_VERSION, LANDLOCK_RULE_PATH_BENEATH = 1, 1
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REFER, TRUNCATE, IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # the rights a file can get
NET_BIND_TCP, NET_CONNECT_TCP = 1 << 0, 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET, SCOPE_SIGNAL = 1 << 0, 1 << 1

_libc = None


def _c():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _check(result, what):
    if result < 0:
        number = ctypes.get_errno()
        raise OSError(number, f"{what}: {os.strerror(number)}")
    return result


def _prctl(option, arg2=0):
    return _check(_c().prctl(ctypes.c_int(option), ctypes.c_ulong(arg2), ctypes.c_ulong(0),
                             ctypes.c_ulong(0), ctypes.c_ulong(0)), f"prctl({option})")


def set_limits(limits, nproc=None):
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU, then SIGKILL
    for name, value in (("RLIMIT_AS", limits["memory_bytes"]),
                        ("RLIMIT_NPROC", nproc or limits["max_processes"]),  # per uid
                        ("RLIMIT_FSIZE", limits["file_bytes"]),
                        ("RLIMIT_NOFILE", limits["open_files"]), ("RLIMIT_CORE", 0)):
        resource.setrlimit(getattr(resource, name), (value, value))


def switch_user(uid, gid):
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if 0 in os.getresuid() or 0 in os.getresgid():
        os._exit(70)


# ------------------------------------------------------------------ Landlock

class _RulesetAttr(ctypes.Structure):
    _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when it has none (or it is disabled)."""
    version = _c().syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), None, ctypes.c_size_t(0),
                           ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION))
    return max(0, version)


def _fs_rights(abi):
    rights = (1 << 13) - 1  # ABI 1: execute ... make_sym
    rights |= REFER if abi >= 2 else 0
    rights |= TRUNCATE if abi >= 3 else 0
    return rights | (IOCTL_DEV if abi >= 5 else 0)


def landlock(rules, write_dirs) -> int:
    """Restrict this process to ``rules`` (``{"read": [...], "exec": [...], "rw_files": [...]}``)
    plus full access beneath ``write_dirs``. Returns the ABI used, 0 when unavailable."""
    abi = landlock_abi()
    if abi <= 0:
        return 0
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0,
                        SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = _check(_c().syscall(ctypes.c_long(SYS_LANDLOCK_CREATE_RULESET), ctypes.byref(attr),
                                  ctypes.c_size_t(size), ctypes.c_uint32(0)), "landlock ruleset")
    try:
        wanted = [(p, READ_FILE | READ_DIR) for p in rules.get("read", ())]
        wanted += [(p, READ_FILE | EXECUTE) for p in rules.get("exec", ())]
        wanted += [(p, READ_FILE | WRITE_FILE) for p in rules.get("rw_files", ())]
        wanted += [(p, handled) for p in write_dirs]
        wanted.append((f"/proc/{os.getpid()}", READ_FILE | READ_DIR))  # its own /proc/self only
        for path, rights in wanted:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue  # a path this host does not have
            try:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    rights &= FILE_RIGHTS
                beneath = _PathBeneath(rights & handled, fd)
                _check(_c().syscall(ctypes.c_long(SYS_LANDLOCK_ADD_RULE), ctypes.c_int(ruleset),
                                    ctypes.c_int(LANDLOCK_RULE_PATH_BENEATH),
                                    ctypes.byref(beneath), ctypes.c_uint32(0)),
                       f"landlock rule for {path}")
            finally:
                os.close(fd)
        _check(_c().syscall(ctypes.c_long(SYS_LANDLOCK_RESTRICT_SELF), ctypes.c_int(ruleset),
                            ctypes.c_uint32(0)), "landlock restrict_self")
    finally:
        os.close(ruleset)
    return abi


# ------------------------------------------------------------------ seccomp

class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp(program: bytes) -> None:
    """Install a classic-BPF seccomp program (8 bytes per instruction) on this process."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
    _check(_c().prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER),
                      ctypes.byref(fprog), ctypes.c_ulong(0), ctypes.c_ulong(0)), "seccomp")


# ------------------------------------------------------------------ all of it

def apply(config) -> dict:
    """Confine this process as ``config`` says; return what was applied (for the runner)."""
    set_limits(config["limits"], config.get("nproc"))
    if config.get("uid") is not None:
        switch_user(config["uid"], config["gid"])
    applied = {"uid": os.getuid(), "landlock": 0, "seccomp": False}
    confine = config.get("confine") or {}
    if "parent" in confine:  # a plain child process (no bwrap around it)
        _prctl(PR_SET_DUMPABLE, 1)  # a uid switch cleared it: keep /proc/self readable to itself
        _prctl(PR_SET_PDEATHSIG, 9)  # SIGKILL when the grader goes away (like --die-with-parent)
        if os.getppid() != confine["parent"]:
            os._exit(0)
    if confine:
        _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if confine.get("rules"):
        with open(confine["rules"], encoding="utf-8") as file:
            rules = json.load(file)
        applied["landlock"] = landlock(rules, [config["workdir"]])
    if confine.get("seccomp"):
        seccomp(bytes.fromhex(confine["seccomp"]))
        applied["seccomp"] = True
    os.umask(0o077)
    os.chdir(config["workdir"])
    return applied
