"""Cost of grading: one complete submission graded by `python -m autograder grade` vs the same
notebooks executed bare with nbclient (both in a fresh Python process, one kernel per notebook).

Two bare baselines: the notebooks as submitted (visible tests only), and the notebooks as
autograde executes them (the test cells restored with their hidden tests, i.e. the source
notebooks, whose solution code is the submission's). The second is the same work, so the
ratio against it is nbgrader's overhead; hidden tests (e.g. the capstone's held-out training
run) are grading work the first baseline does not do.

    .venv/bin/python benchmarks/bench_grading.py [--repeat 3]

Prints the times (best of --repeat) and their ratio; the target is a ratio <= 1.5.
"""

from __future__ import annotations

import argparse
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


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from autograder.demo import make_demo_class
    from autograder.notebooks import build_sources

    with tempfile.TemporaryDirectory(prefix="npdl-bench-") as tmp:
        demo = Path(tmp) / "demo"
        make_demo_class(demo)
        for student in demo.iterdir():  # keep the one complete, correct submission
            if student.name != "solution":
                shutil.rmtree(student)
        notebooks = sorted(str(p) for p in demo.glob("solution/*/*.ipynb"))
        build_sources(out=Path(tmp) / "source")
        with_hidden = sorted(str(p) for p in (Path(tmp) / "source").glob("*/*.ipynb"))
        bare = min(_timed([sys.executable, "-c", BARE, *notebooks]) for _ in range(args.repeat))
        hidden = min(_timed([sys.executable, "-c", BARE, *with_hidden]) for _ in range(args.repeat))
        grade_cmd = [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(demo),
            "--out",
            str(Path(tmp) / "out"),
            "--quiet",
        ]
        grade = min(_timed(grade_cmd) for _ in range(args.repeat))
    print(
        f"notebooks:           {len(notebooks)} "
        f"({', '.join(Path(n).parent.name for n in notebooks)})"
    )
    print(f"bare, as submitted:        {bare:7.2f} s   (visible tests only)")
    print(f"bare, with hidden tests:   {hidden:7.2f} s   (what autograde executes)")
    print(f"autograder grade:          {grade:7.2f} s   (trusted: sandboxed student code)")
    for label, base in (("with hidden tests", hidden), ("as submitted", bare)):
        print(f"ratio grade / bare {label:18s} {grade / base:5.2f}   (target <= 1.5)")


if __name__ == "__main__":
    main()
