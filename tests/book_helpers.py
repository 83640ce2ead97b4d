"""Shared helpers of the book tests: build the book once, read its pages, find solution code.

`build_book()` runs `jupyter-book build . -W -n --keep-going` (the `make book` command) once per
test session and caches the result, so `test_book.py` and `test_book_browser.py` share one build
when they run in the same process (they are both in the xdist group "book").
"""

from __future__ import annotations

import ast
import fcntl
import functools
import importlib
import inspect
import json
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"
BUILD_TIMEOUT = 600  # seconds; the budget for a cold build is 5 minutes

# Chapter page -> the exercise notebook it must link (assignment/notebook.ipynb).
CHAPTERS = {
    "book/01_backprop": "01_backprop/backprop.ipynb",
    "book/02_activations": "02_activations/activations.ipynb",
    "book/03_initializers": "03_initializers/initializers.ipynb",
    "book/04_layers": "04_layers/layers.ipynb",
    "book/05_losses": "05_losses/losses.ipynb",
    "book/06_models": "06_models/models.ipynb",
    "book/07_optimizers": "07_optimizers/optimizers.ipynb",
    "book/08_capstone": "08_capstone/capstone.ipynb",
    "book/09_convolutions": "09_convolutions/convolutions.ipynb",
}

# npdl modules whose functions and methods are exercises: their bodies must never be shown.
GRADED_MODULES = (
    "npdl.gradcheck",
    "npdl.activations",
    "npdl.initializers",
    "npdl.layers",
    "npdl.losses",
    "npdl.models",
    "npdl.optimizers",
    "npdl.schedules",
    "npdl.conv",
)
# Methods that are plumbing, not answers (constructors, printing, container protocol).
_SKIP_FUNCTIONS = {"__init__", "__repr__", "__str__", "__len__", "__getitem__", "__iter__", "name"}
# Calls to the shared input checks are boilerplate every component repeats.
_BOILERPLATE = (
    "float_array(",
    "check_ndim(",
    "check_same_shape(",
    "require_cache(",
    "_grad_like(",
    "_check",
    "super().",
    "isinstance(",
    "getattr(",
    "ShapeError",
    "TypeError",
)
MIN_LINE_CHARS = 22  # shorter statements (`return out`, `x = x.copy()`) are not distinctive


@dataclass(frozen=True)
class BuildResult:
    returncode: int
    output: str
    seconds: float


@functools.cache
def build_book() -> BuildResult:
    """Run the book build once per session (cached) and return its exit code, log and duration."""
    if not JUPYTER_BOOK.exists():
        raise RuntimeError(
            f"jupyter-book is not installed next to {sys.executable}; run `make venv`."
        )
    return run_build()


def run_build(*extra: str) -> BuildResult:
    """`jupyter-book build . -W -n --keep-going` plus ``extra`` options (e.g. ``--all``)."""
    # One build at a time in this checkout (another test process, a `make book`): two builds
    # executing the same chapter race in the shared execution cache ("hashkey already exists").
    lock_path = ROOT / "_build" / ".book-build.lock"
    lock_path.parent.mkdir(exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = _build(*extra)
        if result.returncode and "hashkey already exists" in result.output:
            # jupyter-cache lost a race with a build outside this lock; the cache now holds
            # the chapter, so one more build (which must still be warning-free) settles it.
            result = _build(*extra)
        return result


def _build(*extra: str) -> BuildResult:
    start = time.perf_counter()
    proc = subprocess.run(
        [str(JUPYTER_BOOK), "build", ".", "-W", "-n", "--keep-going", *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    return BuildResult(proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start)


def sphinx_warnings(output: str) -> list[str]:
    """Sphinx warning lines of a build log (the kernel's own `[IPKernelApp] WARNING` is not one)."""
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    lines = (ansi.sub("", line) for line in output.splitlines())
    return [line for line in lines if "WARNING:" in line and "[IPKernelApp]" not in line]


def toc_files() -> list[str]:
    """Every document of `_toc.yml`, root first, without extension (e.g. 'book/01_backprop')."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", []):
        files += [chapter["file"] for chapter in part.get("chapters", [])]
    files += [chapter["file"] for chapter in toc.get("chapters", [])]
    return files


def page_path(doc: str) -> Path:
    return HTML / f"{doc}.html"


@functools.cache
def soup(doc: str) -> BeautifulSoup:
    return BeautifulSoup(page_path(doc).read_text(encoding="utf-8"), "html.parser")


def article(doc: str):
    """The page's main content (without the navigation and header chrome)."""
    page = soup(doc)
    return page.select_one("article.bd-article") or page.select_one("main") or page


def squash(text: str) -> str:
    """Remove all whitespace, so code matches however it was wrapped or highlighted."""
    return re.sub(r"\s+", "", text)


# ----------------------------------------------------------------------------- solution lines


def _functions(module):
    """(qualified name, function object) for every function and method defined in ``module``."""
    for name, obj in vars(module).items():
        if inspect.isfunction(obj) and obj.__module__ == module.__name__:
            yield name, obj
        elif inspect.isclass(obj) and obj.__module__ == module.__name__:
            for attr, member in vars(obj).items():
                func = member.fget if isinstance(member, property) else member
                func = getattr(func, "__func__", func)  # staticmethod / classmethod
                if inspect.isfunction(func):
                    yield f"{name}.{attr}", func


def _is_numpy(func: ast.AST) -> bool:
    while isinstance(func, ast.Attribute):
        func = func.value
    return isinstance(func, ast.Name) and func.id == "np"


def _has_variable_argument(call: ast.Call) -> bool:
    arguments = [*call.args, *(keyword.value for keyword in call.keywords)]
    return any(not isinstance(argument, ast.Constant) for argument in arguments)


def _computes(node: ast.AST) -> bool:
    """True if a statement does arithmetic or array work (not just calls a public function)."""
    for sub in ast.walk(node):
        if isinstance(sub, (ast.BinOp, ast.AugAssign, ast.Compare, ast.comprehension)):
            return True
        if isinstance(sub, ast.UnaryOp) and isinstance(sub.op, ast.USub):
            return True
        if isinstance(sub, ast.Call) and _is_numpy(sub.func) and _has_variable_argument(sub):
            return True  # np.something(x, ...); np.random.default_rng(0) is set-up, not an answer
        if isinstance(sub, ast.Subscript) and isinstance(sub.ctx, ast.Store):
            return True
    return False


def _statement_sources(source: str) -> list[str]:
    """Source of each simple statement of a function body that computes something.

    Docstrings, raises and statements that only call a function (``numeric =
    numerical_gradient(f, x)``: usage the book may show) are left out.
    """
    tree = ast.parse(source)
    statements = []
    for node in ast.walk(tree):
        simple = isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Return)) or (
            isinstance(node, ast.Expr) and not isinstance(node.value, ast.Constant)
        )
        if simple and _computes(node):
            statements.append(node)
    return [ast.get_source_segment(source, node) or "" for node in statements]


def solution_lines() -> dict[str, str]:
    """Distinctive statements of the graded npdl functions: squashed code -> where it comes from."""
    found: dict[str, str] = {}
    for module_name in GRADED_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue  # not written yet; the count check in the tests notices a near-empty list
        for qualname, func in _functions(module):
            if func.__name__ in _SKIP_FUNCTIONS:
                continue
            try:
                source = inspect.getsource(func)
            except (OSError, TypeError):
                continue
            for statement in _statement_sources(textwrap.dedent(source)):
                code = squash(statement)
                if len(code) < MIN_LINE_CHARS or any(b in code for b in _BOILERPLATE):
                    continue
                found.setdefault(code, f"{module_name}.{qualname}: {statement.strip()}")
    return found


_SOLUTION_BLOCK = re.compile(
    r"^[ \t]*### BEGIN SOLUTION\n(.*?)^[ \t]*### END SOLUTION", re.M | re.S
)


def exercise_solution_lines() -> dict[str, str]:
    """Distinctive statements in `### BEGIN/END SOLUTION` regions of the sources in solutions/."""
    found: dict[str, str] = {}
    for source in sorted((ROOT / "solutions").glob("*/*.md")):
        for block in _SOLUTION_BLOCK.findall(source.read_text(encoding="utf-8")):
            try:
                statements = _statement_sources(textwrap.dedent(block))
            except SyntaxError:
                statements = block.splitlines()  # a fragment that does not parse alone
            for statement in statements:
                code = squash(statement)
                if len(code) < MIN_LINE_CHARS or any(b in code for b in _BOILERPLATE):
                    continue
                found.setdefault(code, f"{source.relative_to(ROOT)}: {statement.strip()}")
    return found


def leaked_lines(text: str, lines: dict[str, str]) -> list[str]:
    """The solution statements that occur in ``text`` (compared without whitespace)."""
    haystack = squash(text)
    return [where for code, where in lines.items() if code in haystack]


def downloadable_sources() -> dict[str, str]:
    """Text of the page sources a reader can download (`_sources/**/*.md` and executed `.ipynb`)."""
    texts = {}
    for path in sorted((HTML / "_sources").rglob("*")):
        if path.suffix in (".md", ".txt"):
            texts[str(path.relative_to(HTML))] = path.read_text(encoding="utf-8")
        elif path.suffix == ".ipynb":
            notebook = json.loads(path.read_text(encoding="utf-8"))
            texts[str(path.relative_to(HTML))] = "\n".join(
                "".join(cell.get("source", "")) for cell in notebook.get("cells", [])
            )
    return texts
