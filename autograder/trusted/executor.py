"""Grade one notebook without trusting the student's kernel.

Non-test code cells (solution, locked setup/helper and free cells) run, in order, in one
`TrustedSandbox`. Locked cells also run here, in the trusted process, from the source notebook's
text, so the visible-test helpers (``assert_close``...) are the instructor's. Every graded test cell
runs here too, in a `TrustedNamespace` where the student's names are sandbox proxies; its outcome
becomes the cell's outputs in nbgrader's format (stream with the ✔ lines, or an ``error`` output
with the feedback message), which `SaveAutoGrades` then scores.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import sys
import threading
import time
import traceback

import numpy as np
from nbformat.notebooknode import NotebookNode

from ..sandbox import Limits, RemoteError, SandboxError
from .session import TrustedNamespace, TrustedSandbox


def cell_kind(cell) -> str:
    """ "test", "solution", "locked", "free" or "markdown" from nbgrader metadata."""
    if cell.get("cell_type") != "code":
        return "markdown"
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if meta.get("solution"):
        return "solution"
    if meta.get("grade"):
        return "test"
    if meta.get("locked"):
        return "locked"
    return "free"


_MAGIC = re.compile(r"^(\s*)([%!].*)$", re.M)


def plain_python(source: str) -> str:
    """Cell source without IPython magics/shell escapes (commented out: no kernel to run them)."""
    return _MAGIC.sub(r"\1pass  # \2", source)


HIDDEN_ONLY = "# graded: the hidden tests only"
_END_HIDDEN = re.compile(r"^[ \t]*### END HIDDEN TESTS[ \t]*$", re.M)


def graded_source(source: str) -> str:
    """The part of a test cell that decides its grade: all of it, unless its hidden block holds
    the line `HIDDEN_ONLY`. Then the cell ends with the hidden block: its visible tests use the
    student's OTHER components (Swish through their Sigmoid, AdamW through their Adam) and are
    the student's own check; the hidden checks replace those components (no cascade)."""
    end = _END_HIDDEN.search(source)
    marker = source.find(HIDDEN_ONLY)
    if end is None or not 0 <= marker < end.start():
        return source
    return source[: end.end()]


def trusted_cells_from_notebook(source_nb) -> dict[str, tuple[str, str]]:
    """grade_id -> ("test" | "locked", source) from the instructor's source notebook."""
    cells = {}
    for cell in source_nb.cells:
        kind = cell_kind(cell)
        if kind in ("test", "locked"):
            cells[cell.metadata.nbgrader.grade_id] = (kind, cell.source)
    return cells


# ---------------------------------------------------------------- per-thread stdout capture
class _ThreadLocalStream(io.TextIOBase):
    """Replaces sys.stdout/stderr once; writes go to the current thread's buffer if it has one
    (notebooks are graded in parallel threads, so contextlib.redirect_stdout would mix them)."""

    def __init__(self, fallback, local, key):
        self.fallback, self.local, self.key = fallback, local, key

    def write(self, text):
        target = getattr(self.local, self.key, None)
        return (target if target is not None else self.fallback).write(text)

    def flush(self):
        target = getattr(self.local, self.key, None)
        (target if target is not None else self.fallback).flush()


_local = threading.local()
_install_lock = threading.Lock()


@contextlib.contextmanager
def captured():
    with _install_lock:
        if not isinstance(sys.stdout, _ThreadLocalStream):
            sys.stdout = _ThreadLocalStream(sys.stdout, _local, "out")
        if not isinstance(sys.stderr, _ThreadLocalStream):
            sys.stderr = _ThreadLocalStream(sys.stderr, _local, "err")
    out, err = io.StringIO(), io.StringIO()
    _local.out, _local.err = out, err
    try:
        yield out, err
    finally:
        _local.out = _local.err = None


# ---------------------------------------------------------------- outputs
def stream(text: str, name: str = "stdout") -> NotebookNode:
    return NotebookNode(output_type="stream", name=name, text=text)


def checks_once(text: str) -> str:
    """A test cell's printed text with each ``✔`` line kept once (the first time).

    A check run on several configurations (``check_activation`` with and without ``alpha``) or a
    visible helper called in a loop prints the same ``✔`` line each time; the feedback lists it
    once. Every other line (failures, the student's own output) is kept as printed.
    """
    seen: set[str] = set()
    kept = []
    for line in text.splitlines(keepends=True):
        passed = line.rstrip("\r\n")
        if passed.startswith("✔"):
            if passed in seen:
                continue
            seen.add(passed)
        kept.append(line)
    return "".join(kept)


def error_output(ename: str, evalue: str) -> NotebookNode:
    # One line only: a traceback could quote the hidden test's source in the feedback.
    return NotebookNode(
        output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"]
    )


def describe_failure(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, RemoteError):
        return exc.type_name, f"{exc.remote_message} (raised by your code)"
    if isinstance(exc, SandboxError):
        return type(exc).__name__, str(exc)
    message = str(exc)
    if isinstance(exc, NameError):
        message += " (is it defined, under this exact name, in your notebook?)"
    return type(exc).__name__, message


def run_trusted(source: str, namespace: TrustedNamespace, filename: str):
    """exec ``source`` like IPython: the last expression's value is returned (None otherwise)."""
    tree = ast.parse(source, filename=filename)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    exec(compile(tree, filename, "exec"), namespace)
    if last is None:
        return None
    return eval(compile(ast.Expression(last.value), filename, "eval"), namespace)


def _result_output(value, count):
    """An execute_result for a trusted plain number only (nbgrader reads it as partial credit)."""
    if type(value) not in (int, float) and not isinstance(value, (np.integer, np.floating)):
        return None
    return NotebookNode(
        output_type="execute_result",
        execution_count=count,
        metadata={},
        data={"text/plain": repr(float(value))},
    )


# ---------------------------------------------------------------- the notebook
class TrustedNotebookRun:
    """Executes one notebook: ``run(nb)`` fills every code cell's outputs in place."""

    def __init__(
        self,
        assignment_id: str,
        *,
        cell_timeout: float = 120.0,
        session_timeout: float = 1800.0,
        limits: Limits | None = None,
        max_restarts: int = 3,
        log=None,
    ):
        self.assignment_id = assignment_id
        self.cell_timeout, self.session_timeout = cell_timeout, session_timeout
        self.limits = limits or Limits(
            cpu_seconds=int(session_timeout),
            memory_bytes=3 << 30,
            tmp_bytes=128 << 20,
            file_bytes=32 << 20,
        )
        self.max_restarts, self.log = max_restarts, log
        self.box = None
        self.replay: list[tuple[str, str]] = []  # (source, filename) of sandbox cells that ran
        self.restarts = 0
        self.timings: dict[str, float] = {}

    def _start(self):
        self.box = TrustedSandbox(
            self.assignment_id,
            limits=self.limits,
            call_timeout=self.cell_timeout,
            session_timeout=self.session_timeout,
        )
        self.namespace.box = self.box

    def _ensure_alive(self) -> bool:
        """Restart a sandbox the student's code killed and replay the cells that ran cleanly."""
        if self.box is not None and self.box.alive:
            return True
        if self.restarts >= self.max_restarts:
            return False
        self.restarts += 1
        try:
            if self.box is not None:
                self.box.close()
            self._start()
            for source, filename in self.replay:
                self.box.exec(source, filename=filename, timeout=self.cell_timeout)
            self.namespace.refresh()
            return True
        except (SandboxError, RemoteError, TypeError):
            return bool(self.box is not None and self.box.alive)

    def run(self, nb, trusted_cells: dict[str, tuple[str, str]]) -> NotebookNode:
        """Fill ``nb``'s outputs. ``trusted_cells``: grade_id -> (kind, source) of the instructor's
        "test" and "locked" cells (from the gradebook or the source notebook). Only those run in
        the grader, and with THAT text: a submission's metadata and text never decide what runs
        here (a forged ``grade: true`` cell is just student code, run in the sandbox)."""
        started = time.monotonic()
        self.namespace = TrustedNamespace(None)
        try:
            self._start()
        except SandboxError as exc:
            for cell in nb.cells:
                if cell_kind(cell) == "test":
                    cell.outputs = [error_output("SandboxUnavailable", f"could not grade: {exc}")]
            raise
        try:
            count = 0
            for index, cell in enumerate(nb.cells):
                if cell.get("cell_type") != "code":
                    continue
                count += 1
                cell.execution_count = count
                grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                kind, source = trusted_cells.get(grade_id, ("untrusted", None))
                name = grade_id or f"cell{index}"
                if kind == "test":
                    cell.outputs = self._test_cell(source, name, count)
                else:
                    cell.outputs = self._sandbox_cell(cell.source, name, source)
        finally:
            self.box.close()
            self.timings["total"] = time.monotonic() - started
        return nb

    def _sandbox_cell(self, cell_source, name, locked_source):
        """Run the cell in the sandbox; an instructor's locked cell (``locked_source``, trusted
        text) also runs here afterwards, so its helpers are the grader's own."""
        outputs = []
        source = plain_python(cell_source)
        filename = f"<cell {name}>"
        if not self._ensure_alive():
            return [error_output("SandboxCrashed", "not run: the sandbox stopped earlier.")]
        before = len(self.box.output)
        try:
            self.box.exec(source, filename=filename, timeout=self.cell_timeout)
            self.replay.append((source, filename))
        except RemoteError as exc:
            outputs.append(error_output(exc.type_name, exc.remote_message))
        except SandboxError as exc:
            outputs.append(error_output(type(exc).__name__, str(exc)))
        printed = self.box.output[before:] if self.box.output else ""
        if printed:
            outputs.insert(0, stream(printed))
        if self.box.alive:
            try:
                self.namespace.refresh()
            except (SandboxError, RemoteError):
                pass
        if locked_source is not None:  # the instructor's code: also define its helpers here
            snapshot = dict(dict.items(self.namespace))
            with captured():
                try:
                    run_trusted(locked_source, self.namespace, filename)
                except BaseException:  # noqa: BLE001 - e.g. it calls student code that fails
                    pass
            self.namespace.keep_trusted(snapshot)
        return outputs

    def _test_cell(self, source, name, count):
        started = time.monotonic()
        source = graded_source(source)
        if not self._ensure_alive():
            return [
                error_output(
                    "SandboxCrashed",
                    "not graded: the sandbox running your code "
                    "stopped (see the first failing cell).",
                )
            ]
        result, failure = None, None
        with captured() as (out, err), self.box.budget(self.cell_timeout):
            try:
                result = run_trusted(source, self.namespace, f"<test {name}>")
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure is a 0
                failure = describe_failure(exc)
                if self.log is not None:
                    self.log.debug("%s: %s", name, traceback.format_exc(limit=-3))
        outputs = []
        if out.getvalue():
            outputs.append(stream(checks_once(out.getvalue())))
        if err.getvalue():
            outputs.append(stream(err.getvalue(), "stderr"))
        if failure is not None:
            outputs.append(error_output(*failure))
        else:
            shown = _result_output(result, count)
            if shown is not None:
                outputs.append(shown)
        self.timings[name] = time.monotonic() - started
        return outputs
