"""Cost of grading, for one submission and for a class (`make bench-grading`).

1. One submission: one complete submission graded by `python -m autograder grade` vs the same
   notebooks executed bare with nbclient (both in a fresh Python process, one kernel per
   notebook). Two bare baselines: the notebooks as submitted (visible tests only), and the
   notebooks as autograde executes them (the test cells restored with their hidden tests, i.e.
   the source notebooks, whose solution code is the submission's). Target: ratio <= 1.5.

2. A class: --students students (default 16) x every assignment, a mix of perfect, blank and
   buggy students (each buggy student has one of the assignment's declared bugs in every
   assignment). Printed:
     - full run --jobs 2 / --jobs 1 wall time                         (target <= 0.60)
     - re-run with nothing changed / full run at --jobs 2               (target <= 0.05)
     - re-run after one student's notebook changed / full run           (target <= 0.15)
     - amortized seconds per notebook at --jobs 2, next to executing the same notebooks bare
       (nbclient, as submitted) on 2 processes
     - peak resident memory of a grading worker (the grader's summary line)
   The grading code runs from a frozen copy (autograder/, npdl, solutions/, nbgrader_config.py)
   so that edits to the working tree during the benchmark cannot invalidate the cache.

    .venv/bin/python benchmarks/bench_grading.py [--repeat 3] [--students 16] [--class-only]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

BARE = """
import sys, nbformat
from nbclient import NotebookClient
for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=120, kernel_name="python3", allow_errors=True,
                   extra_arguments=["--IPKernelApp.log_level=ERROR"]).execute()
"""


def _timed(cmd: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def _bare_parallel(notebooks: list[str], processes: int) -> float:
    """Execute ``notebooks`` bare, split round-robin over ``processes`` processes."""
    start = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-c", BARE, *notebooks[i::processes]], cwd=REPO,
                         stdout=subprocess.DEVNULL)
        for i in range(processes)
    ]
    for proc in procs:
        if proc.wait() != 0:
            raise SystemExit(f"bare execution failed: {proc.args[:3]}")
    return time.perf_counter() - start


def one_submission(tmp: Path, repeat: int) -> None:
    from autograder.demo import make_demo_class
    from autograder.notebooks import build_sources

    demo = tmp / "demo"
    make_demo_class(demo)
    for student in demo.iterdir():  # keep the one complete, correct submission
        if student.name != "solution":
            shutil.rmtree(student)
    notebooks = sorted(str(p) for p in demo.glob("solution/*/*.ipynb"))
    build_sources(out=tmp / "source")
    with_hidden = sorted(str(p) for p in (tmp / "source").glob("*/*.ipynb"))
    bare = min(_timed([sys.executable, "-c", BARE, *notebooks]) for _ in range(repeat))
    hidden = min(_timed([sys.executable, "-c", BARE, *with_hidden]) for _ in range(repeat))
    grade_cmd = [sys.executable, "-m", "autograder", "grade", str(demo), "--out",
                 str(tmp / "out"), "--quiet", "--jobs", "1", "--force"]
    grade = min(_timed(grade_cmd) for _ in range(repeat))
    print("== one submission ==")
    print(f"notebooks:           {len(notebooks)} "
          f"({', '.join(Path(n).parent.name for n in notebooks)})")
    print(f"bare, as submitted:        {bare:7.2f} s   (visible tests only)")
    print(f"bare, with hidden tests:   {hidden:7.2f} s   (what autograde executes)")
    print(f"autograder grade:          {grade:7.2f} s   (trusted: sandboxed student code)")
    for label, base in (("with hidden tests", hidden), ("as submitted", bare)):
        print(f"ratio grade / bare {label:18s} {grade / base:5.2f}   (target <= 1.5)")


def make_class(tmp: Path, students: int) -> tuple[Path, dict[str, str]]:
    """``students`` students x every assignment: perfect, blank and buggy in turn."""
    from autograder.demo import load_bugs, make_demo_class
    from autograder.notebooks import assignments
    from autograder.pipeline import build_exercises

    demo = tmp / "demo"
    # Fresh releases from the sources, so the class never depends on a stale exercises/.
    build_exercises(out=tmp / "exercises", sources_out=tmp / "solutions")
    make_demo_class(demo, exercises=tmp / "exercises")
    bugs = load_bugs()
    kinds, klass = {}, tmp / "class"
    for i in range(students):
        kind = ("perfect", "blank", "buggy")[i % 3]
        name = f"s{i:02d}_{kind}"
        kinds[name] = kind
        for a in assignments():
            source = {"perfect": "solution", "blank": "blank"}.get(kind)
            if source is None:
                declared = bugs.get(a) or [{"student": "blank"}]
                source = declared[(i // 3) % len(declared)]["student"]
            shutil.copytree(demo / source / a, klass / name / a)
    return klass, kinds


def _snapshot(target: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("autograder", "reference_impl", "solutions"):
        shutil.copytree(REPO / name, target / name, ignore=ignore)
    shutil.copy(REPO / "nbgrader_config.py", target)
    return target


def _grade(repo: Path, klass: Path, out: Path, jobs: int) -> tuple[float, str]:
    env = dict(os.environ, PYTHONPATH=f"{repo}{os.pathsep}{repo / 'reference_impl'}")
    start = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(klass), "--out", str(out), "--quiet",
         "--jobs", str(jobs)],
        cwd=repo, env=env, capture_output=True, text=True,
    )
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"grading failed ({run.returncode}):\n{run.stdout}\n{run.stderr}")
    summary = next(line for line in run.stdout.splitlines() if line.startswith("graded "))
    return seconds, summary


def a_class(tmp: Path, students: int) -> None:
    klass, kinds = make_class(tmp, students)
    repo = _snapshot(tmp / "repo")
    notebooks = sorted(str(p) for p in klass.glob("*/*/*.ipynb"))
    mix = {k: sum(1 for v in kinds.values() if v == k) for k in ("perfect", "blank", "buggy")}
    print(f"== a class: {students} students x {len(notebooks) // students} assignments = "
          f"{len(notebooks)} notebooks ({mix['perfect']} perfect, {mix['blank']} blank, "
          f"{mix['buggy']} buggy) ==", flush=True)
    t1, s1 = _grade(repo, klass, tmp / "out-1", 1)
    print(f"full run, --jobs 1:        {t1:7.1f} s   [{s1}]", flush=True)
    t2, s2 = _grade(repo, klass, tmp / "out-2", 2)
    print(f"full run, --jobs 2:        {t2:7.1f} s   [{s2}]", flush=True)
    tu, su = _grade(repo, klass, tmp / "out-2", 2)
    print(f"re-run, nothing changed:   {tu:7.1f} s   [{su}]", flush=True)
    perfect = next(name for name, kind in kinds.items() if kind == "perfect")
    changed = sorted((klass / perfect).glob("*/*.ipynb"))[0]
    blank = next(name for name, kind in kinds.items() if kind == "blank")
    shutil.copy(klass / blank / changed.parent.name / changed.name, changed)
    tc, sc = _grade(repo, klass, tmp / "out-2", 2)
    print(f"re-run, one notebook of one student changed: {tc:7.1f} s   [{sc}]", flush=True)
    bare = _bare_parallel(notebooks, 2)
    print(f"bare nbclient, as submitted, 2 processes: {bare:7.1f} s", flush=True)
    print(f"ratio --jobs 2 / --jobs 1          {t2 / t1:6.3f}   (target <= 0.60)")
    print(f"ratio unchanged re-run / full      {tu / t2:6.3f}   (target <= 0.05)")
    print(f"ratio one-changed re-run / full    {tc / t2:6.3f}   (target <= 0.15)")
    print(f"amortized per notebook: --jobs 2 {t2 / len(notebooks):.2f} s, --jobs 1 "
          f"{t1 / len(notebooks):.2f} s, bare on 2 processes {bare / len(notebooks):.2f} s")
    memory = re.findall(r"peak worker memory (\d+) MB", s1 + s2)
    print(f"peak resident memory of one grading worker: {max(map(int, memory))} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="one submission: best of N")
    parser.add_argument("--students", type=int, default=16)
    parser.add_argument("--class-only", action="store_true", help="skip the one-submission part")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    print(f"usable cores: {len(os.sched_getaffinity(0))}; load average: "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="npdl-bench-") as tmp:
        if not args.class_only:
            one_submission(Path(tmp) / "one", args.repeat)
        a_class(Path(tmp) / "class", args.students)
    print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
