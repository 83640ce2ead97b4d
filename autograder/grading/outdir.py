"""The output folder OUT: one run at a time, and never a half-written file.

``.OUT.lock`` (next to OUT, an flock the kernel releases when the process dies) stops two runs
writing the same OUT; a leftover lock file from a killed run is harmless.

Every file a run writes into OUT appears through a rename: it is written to a hidden sibling
``.<name>.tmp-<pid>``, flushed to disk (fsync) and renamed over its final name, so a reader (or a
run killed with ``kill -9``) only ever sees a previous complete version or the new one. The next
run deletes the hidden leftovers of a killed one (see `clear_leftovers`).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from pathlib import Path

from .submissions import InstructorError, is_junk

NBGRADER_DIRS = ("source", "release", "submitted", "autograded", "feedback", "results")
# What a grading run writes into OUT; anything else means OUT is not ours to write into.
OURS = {*NBGRADER_DIRS, "gradebook.db", "grades.csv", "grading.log"}
_LEFTOVER = re.compile(r"^\..+\.(tmp|old)-\d+(-\d+)?$")  # `.<name>.tmp-<pid>[-<n>]`


class OutLock:
    """An exclusive flock on ``.OUT.lock`` next to OUT; the kernel drops it if we are killed."""

    def __init__(self, out: Path):
        self.path = out.parent / f".{out.name}.lock"

    def __enter__(self):
        self.handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until exit
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "?"
            self.handle.close()
            raise InstructorError(
                f"grade: another grading run (pid {owner}) is writing {self.path.parent}. "
                f"Received: --out {self.path.parent / self.path.name[1:-5]}"
            ) from None
        self.handle.truncate(0)
        self.handle.write(str(os.getpid()))
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        self.handle.close()  # closing releases the flock; the file itself may stay


def check_out(out: Path, submissions: Path) -> None:
    """Refuse an OUT that overlaps the submissions or that a grading run did not write."""
    inside = [(Path(submissions), out), (out, Path(submissions))]
    if any(a.resolve().is_relative_to(b.resolve()) for a, b in inside):
        raise InstructorError(
            "grade: the output folder and the submissions must not contain each other "
            f"(OUT is rewritten). Received: submissions={submissions}, --out {out}"
        )
    if out.exists() and not out.is_dir():
        raise InstructorError(f"grade: --out must be a folder. Received: file {out}")
    if out.is_dir():
        strangers = sorted(p.name for p in out.iterdir() if p.name not in OURS and not is_junk(p))
        if strangers:  # never write into a folder that a grading run did not write
            raise InstructorError(
                "grade: --out exists and is not a grading output (the run rewrites it). "
                f"Received: {out} holding {strangers[:5]}"
            )


def clear_leftovers(out: Path) -> None:
    """Delete what killed runs left (the caller holds the lock: their writers are dead):
    the whole-OUT scratch folders of earlier versions and every hidden ``.x.tmp-<pid>``."""
    for pattern in (f"{out.name}.tmp-*", f"{out.name}.old-*"):
        for stale in out.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)
    if not out.is_dir():
        return
    for folder, dirs, files in os.walk(out):
        for name in [*dirs, *files]:
            if _LEFTOVER.match(name):
                path = Path(folder) / name
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        dirs[:] = [d for d in dirs if not _LEFTOVER.match(d)]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``path`` through a hidden temp file, fsync and rename (all or nothing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def sync_file(source: Path, target: Path) -> bool:
    """Make ``target`` a copy of ``source`` (atomically) unless it already is; True if written."""
    data = source.read_bytes()
    try:
        if target.read_bytes() == data:
            return False
    except OSError:
        pass
    write_atomic(target, data)
    return True


def prune(folder: Path, keep: set[Path]) -> None:
    """Delete every file under ``folder`` not in ``keep``, then the folders left empty."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not path.is_symlink():
            if not any(path.iterdir()):
                path.rmdir()
        elif path not in keep:
            path.unlink()
