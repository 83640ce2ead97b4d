"""Sandbox backends: bwrap and the namespace-free process backend, how one is chosen, a
container-like host (``setpriv`` without CAP_SYS_ADMIN) and grading as an ordinary user.

tests/test_sandbox.py holds the behaviour every backend shares (it runs with the default
backend); `test_the_sandbox_suite_passes_in_a_container_under_the_process_backend` runs it again
in a container-like environment under the process backend.
"""

import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from sandbox_programs import FORK_BOMB, processes_of

from autograder.sandbox import (
    Limits,
    RemoteError,
    Sandbox,
    SandboxCrashed,
    SandboxTimeout,
    SandboxUnavailable,
    backends,
    preflight,
    process,
)
from autograder.sandbox.confine import landlock_abi

pytestmark = pytest.mark.xdist_group(name="sandbox-backends")  # one worker: it creates a user

REPO = Path(__file__).resolve().parent.parent
SITE = Path(np.__file__).resolve().parent.parent
LAYERS = REPO / "reference_impl" / "npdl" / "layers.py"
CONTAINER = ["setpriv", "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--"]
USER = "npdl-sandbox-test"
RELU = "import numpy as np\nclass ReLU:\n    def forward(self, x):\n        return x * (x > 0)\n"
ATTEMPT = '''
import ctypes, errno, os, socket, subprocess
libc = ctypes.CDLL(None, use_errno=True)
def libc_call(name, *args):
    if getattr(libc, name)(*args) != 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
def attempt(fn):
    try:
        fn()
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))
    return "ok"
'''


# ------------------------------------------------------------------ both backends

@pytest.mark.parametrize("backend", ["bwrap", "process"])
def test_each_backend_runs_cells_and_returns_plain_arrays(backend):
    assert preflight(backend) == backend
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    with Sandbox(backend=backend) as box:
        box.exec(RELU)
        out = box.remote("ReLU")().forward(x)
        assert box.backend == box.isolation["backend"] == backend
        assert box.isolation["uid"] == box.uid != 0  # the grader is root: a fresh uid
        assert box.isolation["seccomp"] is True  # bwrap too: a second layer
    assert type(out) is np.ndarray and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.maximum(x, 0))


def test_the_environment_variable_chooses_the_backend(monkeypatch):
    monkeypatch.setenv("NPDL_SANDBOX", "process")
    with Sandbox() as box:
        assert box.backend == "process"
    monkeypatch.setenv("NPDL_SANDBOX", "chroot")
    with pytest.raises(SandboxUnavailable, match="use auto, bwrap or process"):
        Sandbox()
    with pytest.raises(SandboxUnavailable, match="use auto, bwrap or process"):
        preflight("docker")


def test_auto_takes_the_first_backend_that_starts_logs_it_and_decides_once(monkeypatch, caplog):
    trials = []

    def trial(name):
        trials.append(name)
        if name == "bwrap":
            raise SandboxUnavailable(backends.unavailable("bwrap", "no namespaces"))
    monkeypatch.setattr(backends, "_trial", trial)
    monkeypatch.setattr(backends, "_chosen", {})
    monkeypatch.delenv("NPDL_SANDBOX", raising=False)
    with caplog.at_level(logging.INFO, logger="autograder.sandbox"):
        assert backends.resolve() == "process"
        assert backends.resolve("auto") == "process" and preflight() == "process"
    assert trials == ["bwrap", "process", "process"]  # preflight() starts one more sandbox
    lines = [r.getMessage() for r in caplog.records if r.name == "autograder.sandbox"]
    assert lines == ["sandbox backend: process (bwrap: bubblewrap could not start the sandbox: "
                     "no namespaces)"]
    assert backends.resolve("bwrap") == "bwrap"  # a forced backend is never replaced


def test_forced_backends_that_cannot_start_name_what_is_missing(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="bubblewrap is not installed: apt-get install"):
        preflight("bwrap")
    monkeypatch.setitem(sys.modules, "pyseccomp", None)
    process.seccomp_program.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable, match="pip install .*pyseccomp"):
            preflight("process")
    finally:
        process.seccomp_program.cache_clear()


# ------------------------------------------------------------------ the process backend

@pytest.fixture(scope="module")
def box():
    with Sandbox(backend="process", limits=Limits(memory_bytes=1 << 30, file_bytes=1 << 20),
                 call_timeout=10) as sandbox:
        sandbox.exec(ATTEMPT)
        yield sandbox


def test_process_backend_applies_uid_seccomp_and_landlock(box):
    assert landlock_abi() >= 1, "this kernel has no Landlock: the process backend is weaker"
    assert box.isolation == {"backend": "process", "uid": box.uid, "landlock": landlock_abi(),
                             "seccomp": True}
    box.exec("ids = os.getresuid() + os.getresgid() + tuple(os.getgroups())")
    assert box.fetch("ids") == (box.uid,) * 6


@pytest.mark.parametrize("what, code, expected", [
    ("an internet socket", "socket.socket(socket.AF_INET, socket.SOCK_STREAM)", "EACCES"),
    ("a Unix socket", "socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)", "EACCES"),
    ("a connection", "socket.create_connection(('127.0.0.1', 22), timeout=1)", "EACCES"),
    ("ptrace", "libc_call('ptrace', 0, 0, 0, 0)", "EPERM"),  # PTRACE_TRACEME
    ("a user namespace", "libc_call('unshare', 0x10000000)", "EPERM"),
    ("a mount namespace", "libc_call('unshare', 0x00020000)", "EPERM"),
    ("a mount", "libc_call('mount', b'none', b'.', b'tmpfs', 0, None)", "EPERM"),
    ("a new session", "os.setsid()", "EPERM"),
    ("the repository", f"open({str(LAYERS)!r}).read()", "EACCES"),
    ("the venv", f"os.listdir({str(SITE)!r})", "EACCES"),
    ("the repository through /proc", f"open('/proc/self/root' + {str(LAYERS)!r}).read()",
     "EACCES"),
    ("the grader's environment", "open(f'/proc/{os.getppid()}/environ').read()", "EACCES"),
    ("/etc/shadow", "open('/etc/shadow').read()", "EACCES"),
    ("/etc/passwd", "open('/etc/passwd').read()", "EACCES"),
    ("a shell", "subprocess.run(['/bin/sh', '-c', 'true'])", "EACCES"),
    ("writing /tmp", "open('/tmp/npdl-sandbox-escape', 'w')", "EACCES"),
    ("writing the repository", f"open({str(REPO / 'hack.py')!r}, 'w')", "EACCES"),
])
def test_process_backend_denies(box, what, code, expected):
    assert LAYERS.exists()
    box.exec(f"result = attempt(lambda: {code})")
    assert box.fetch("result") == expected, what
    assert not Path("/tmp/npdl-sandbox-escape").exists() and not (REPO / "hack.py").exists()


def test_process_backend_cannot_read_other_students_files(box, tmp_path):
    other = tmp_path / "other_student" / "submission.ipynb"
    other.parent.mkdir()
    other.write_text("secret answers")
    other.parent.chmod(0o755)
    tmp_path.chmod(0o755)
    other.chmod(0o644)  # readable by anyone: only Landlock stands in the way
    box.exec(f"result = attempt(lambda: open({str(other)!r}).read())")
    assert box.fetch("result") == "EACCES"


def test_process_backend_private_directory_environment_and_descriptors(box):
    box.exec('''
import json, sys
cwd = os.getcwd()
env = dict(os.environ)
with open("note.txt", "w") as f:
    f.write("fine")
note = open(os.path.join(cwd, "note.txt")).read()
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[int(fd)] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass  # the directory listing's own descriptor, closed by now
config = json.loads(sys.argv[1])
big = attempt(lambda: open("big", "wb").write(b"x" * (2 << 20)))
''')
    cwd, fds, config = box.fetch("cwd"), box.fetch("fds"), box.fetch("config")
    assert box.fetch("note") == "fine" and box.fetch("big") == "EFBIG"
    assert box.fetch("env") == {"LANG": "C.UTF-8", "OPENBLAS_NUM_THREADS": "1",
                                "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                                "HOME": cwd, "TMPDIR": cwd}
    stat = os.stat(cwd)
    assert stat.st_uid == box.uid and stat.st_mode & 0o777 == 0o700
    assert set(fds) == {0, 1, 2, config["fd_in"], config["fd_out"]}, fds
    assert fds[0] == "/dev/null" and fds[1] == fds[2]
    assert all(fds[fd].startswith("pipe:") for fd in (1, config["fd_in"], config["fd_out"]))


@pytest.mark.parametrize("bomb", ["import numpy as np\na = np.ones(10**10)",
                                  "a = bytearray(3 << 30)"])
def test_process_backend_memory_bomb_is_a_memory_error(box, bomb):
    with pytest.raises(MemoryError) as info:
        box.exec(bomb)
    assert isinstance(info.value, RemoteError)
    box.exec("survived = 1")
    assert box.fetch("survived") == 1


def test_process_backend_cpu_loop_and_hang_end_in_sandbox_errors():
    with Sandbox(backend="process", limits=Limits(cpu_seconds=1), call_timeout=10) as sandbox:
        with pytest.raises(SandboxCrashed, match="SIGXCPU"):
            sandbox.exec("while True:\n    pass")
    start = time.monotonic()
    with Sandbox(backend="process", call_timeout=0.5) as sandbox:
        with pytest.raises(SandboxTimeout):
            sandbox.exec("import time\ntime.sleep(30)")
        assert not sandbox.alive
    assert time.monotonic() - start < 5


def test_process_backend_fork_bomb_is_bounded_and_everything_is_cleaned_up():
    with Sandbox(backend="process", limits=Limits(max_processes=8)) as sandbox:
        uid = sandbox.uid
        sandbox.exec(FORK_BOMB + "import os\ncwd = os.getcwd()")
        forked, workdir = sandbox.fetch("n"), sandbox.fetch("cwd")
        assert 0 < forked < 8 and processes_of(uid) >= forked
    deadline = time.monotonic() + 5
    while processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(uid) == 0 and not os.path.exists(workdir)


# ------------------------------------------------------------------ a container-like host

def run(script, prefix=(), python=sys.executable, env=None, timeout=300):
    """Run ``script`` with ``python`` (after ``prefix``, e.g. setpriv); return its JSON output."""
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", **(env or {})}
    result = subprocess.run([*prefix, python, "-I", "-c", textwrap.dedent(script)], cwd="/",
                            capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


CONTAINER_SCRIPT = f'''
import io, json, logging, sys
sys.path[:0] = [{str(SITE)!r}, {str(REPO)!r}]
log = io.StringIO()
logging.basicConfig(stream=log, level=logging.INFO)
from autograder.sandbox import Sandbox, SandboxUnavailable, preflight
out = {{}}
try:
    preflight("bwrap")
except SandboxUnavailable as error:
    out["forced_bwrap"] = str(error)
out["auto"] = preflight()
with Sandbox() as box:
    box.exec("x = [1, 2]")
    out["sandbox"] = [box.backend, box.fetch("x")]
out["log"] = log.getvalue()
print(json.dumps(out))
'''


def test_in_a_container_forced_bwrap_fails_preflight_and_auto_picks_process():
    out = run(CONTAINER_SCRIPT, prefix=CONTAINER)
    message = out["forced_bwrap"]
    assert "without CAP_SYS_ADMIN" in message and "--sandbox process" in message, message
    assert out["auto"] == "process" and out["sandbox"] == ["process", [1, 2]]
    assert out["log"].strip().splitlines() == [
        "INFO:autograder.sandbox:sandbox backend: process (bwrap: bubblewrap cannot create "
        "namespaces here: the grader runs as root without CAP_SYS_ADMIN, as in Docker, "
        "Kubernetes and Gradescope containers (or under setpriv --bounding-set -sys_admin))"]


def test_the_sandbox_suite_passes_in_a_container_under_the_process_backend():
    # Deselected: three tests that check the shape of bwrap's private file system (its /tmp,
    # an empty /, FileNotFoundError); their process-backend counterparts are in this file.
    bwrap_only = ("test_course_code_is_neither_importable_nor_readable",
                  "test_other_students_files_are_invisible",
                  "test_private_tmp_is_writable_but_bounded")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "NPDL_"))}
    command = [*CONTAINER, sys.executable, "-m", "pytest", "tests/test_sandbox.py", "-q",
               "-p", "no:cacheprovider", "-x"]
    for name in bwrap_only:
        command += ["--deselect", f"tests/test_sandbox.py::{name}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**env, "NPDL_SANDBOX": "process"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "skipped" not in result.stdout


# ------------------------------------------------------------------ an ordinary user

@pytest.fixture(scope="module")
def ordinary_user():
    """An ordinary account (created once, kept), and a directory it owns with a secret in it."""
    if subprocess.run(["id", "-u", USER], capture_output=True).returncode != 0:
        created = subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent",
                                  "--shell", "/usr/sbin/nologin", USER], capture_output=True,
                                 text=True)
        assert created.returncode == 0 or "already exists" in created.stderr, created.stderr
    uid = int(subprocess.run(["id", "-u", USER], capture_output=True, text=True).stdout)
    home = Path(tempfile.mkdtemp(prefix="npdl-user-"))
    try:
        home.chmod(0o755)
        (home / "hidden_tests.py").write_text("ANSWER = 42\n")
        os.chown(home / "hidden_tests.py", uid, uid)
        (home / "hidden_tests.py").chmod(0o600)  # the instructor's own file
        yield uid, home
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def readable_python(ordinary_user):
    """An interpreter the ordinary user can run. This one lives in /root/.pyenv (/root is 0700):
    give the user a copy (hard links where possible) instead of loosening the host's modes."""
    executable = Path(os.path.realpath(sys.executable))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    if process.world_reachable(executable) and process.world_reachable(stdlib):
        return str(executable)
    _, home = ordinary_user
    base, target = Path(sys.base_prefix).resolve(), home / "python"
    (target / "bin").mkdir(parents=True)
    process._link_file(executable, target / "bin" / executable.name)
    process._link_tree(stdlib, target / "lib" / stdlib.name, skip=process.STDLIB_SKIP)
    for path in sorted((base / "lib").glob("libpython*")):
        process._link_file(path, target / "lib" / path.name)
    return str(target / "bin" / executable.name)


USER_SCRIPT = f'''
import glob, io, json, logging, os, sys, time
sys.path[:0] = [{str(SITE)!r}, {str(REPO)!r}]
log = io.StringIO()
logging.basicConfig(stream=log, level=logging.INFO)
import numpy as np
from autograder.sandbox import Limits, Sandbox, preflight

def mine(path):
    try:
        return os.stat(path).st_uid == os.getuid()
    except OSError:
        return False

def settle():
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and sum(map(mine, glob.glob("/proc/[0-9]*"))) > 1:
        time.sleep(0.05)

out = {{"auto": preflight()}}
for backend in ("bwrap", "process"):
    with Sandbox(backend=backend) as box:
        box.exec({RELU!r} + {ATTEMPT!r})
        relu = box.remote("ReLU")().forward(np.array([[-1.0, 2.0]]))
        box.exec("own = attempt(lambda: open(SECRET).read())\\n"
                 "repo = attempt(lambda: open(LAYERS).read())\\n"
                 "ids = os.getresuid()".replace("SECRET", repr(sys.argv[1]))
                 .replace("LAYERS", repr({str(LAYERS)!r})))
        result = {{"isolation": box.isolation, "relu": relu.tolist(), "ids": box.fetch("ids"),
                  "own": box.fetch("own"), "repo": box.fetch("repo")}}
    settle()  # RLIMIT_NPROC counts the user's processes: let the last sandbox's ones go
    with Sandbox(backend=backend, limits=Limits(max_processes=8)) as box:
        box.exec({FORK_BOMB!r})
        result["forked"] = box.fetch("n")
    out[backend] = result
out["log"] = log.getvalue()
print(json.dumps(out))
'''


def test_an_ordinary_user_grades_with_either_backend(ordinary_user, readable_python):
    uid, home = ordinary_user
    secret = home / "hidden_tests.py"
    command = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--init-groups", "--",
               readable_python, "-I", "-c", USER_SCRIPT, str(secret)]
    result = subprocess.run(command, cwd="/", capture_output=True, text=True, timeout=300,
                            env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"})
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    # User namespaces are allowed here: unprivileged bubblewrap is the strongest backend.
    assert out["auto"] == "bwrap" and "sandbox backend: bwrap" in out["log"]
    for backend in ("bwrap", "process"):
        got = out[backend]
        assert got["isolation"]["backend"] == backend and got["isolation"]["uid"] == uid
        assert got["ids"] == [uid] * 3 and got["relu"] == [[0.0, 2.0]]
        # bwrap: the file does not exist in the sandbox; process: Landlock denies it.
        expected = "ENOENT" if backend == "bwrap" else "EACCES"
        assert got["own"] == got["repo"] == expected, (backend, got)
        assert 0 < got["forked"] < 8, (backend, got)
    assert out["process"]["isolation"]["seccomp"] is out["bwrap"]["isolation"]["seccomp"] is True
    assert out["process"]["isolation"]["landlock"] == landlock_abi() >= 1
    deadline = time.monotonic() + 5
    while processes_of(uid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_of(uid) == 0  # the fork bombs are gone
