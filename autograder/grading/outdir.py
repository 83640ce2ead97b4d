"""The output folder OUT: one run at a time, and never half-written.

A run grades into the sibling ``OUT.tmp-<pid>`` and only a complete result replaces OUT (rename),
so a killed run leaves the previous OUT (or none) plus a stale ``OUT.tmp-*`` that the next run
deletes. ``.OUT.lock`` (next to OUT, an flock released by the kernel when the process dies) stops
two runs writing the same OUT; a leftover lock file from a killed run is harmless.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

from .submissions import InstructorError, is_junk

NBGRADER_DIRS = ("source", "release", "submitted", "autograded", "feedback", "results")
# What a grading run writes into OUT; anything else means OUT is not ours to replace.
OURS = {*NBGRADER_DIRS, "gradebook.db", "grades.csv", "grading.log"}


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
            f"(OUT is wiped). Received: submissions={submissions}, --out {out}"
        )
    if out.exists() and not out.is_dir():
        raise InstructorError(f"grade: --out must be a folder. Received: file {out}")
    if out.is_dir():
        strangers = sorted(p.name for p in out.iterdir() if p.name not in OURS and not is_junk(p))
        if strangers:  # never replace a folder that a grading run did not write
            raise InstructorError(
                "grade: --out exists and is not a grading output (it is replaced as a "
                f"whole). Received: {out} holding {strangers[:5]}"
            )


def clear_leftovers(out: Path) -> None:
    """Delete what killed runs left next to OUT (the caller holds the lock: they are dead)."""
    for pattern in (f"{out.name}.tmp-*", f"{out.name}.old-*"):
        for stale in out.parent.glob(pattern):
            shutil.rmtree(stale, ignore_errors=True)


def replace_out(work: Path, out: Path) -> None:
    """Make the finished ``work`` folder OUT with renames only (atomic on one file system)."""
    old = out.parent / f"{out.name}.old-{os.getpid()}"
    if out.exists():
        os.rename(out, old)
    os.rename(work, out)
    shutil.rmtree(old, ignore_errors=True)
