"""Time the book build: a cold build (empty _build) and a cached rebuild.

Budgets from the book issue: full build <= 5 min on 2 cores, cached rebuild <= 20 s.
Run with `make bench-book` (or `.venv/bin/python benchmarks/bench_book_build.py`).
It builds into a temporary folder so your _build/ is untouched.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")


def build(out: Path, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run(
        [str(JUPYTER_BOOK), "build", ".", "-W", "-n", "--keep-going",
         "--path-output", str(out), *extra],
        cwd=ROOT, check=True, capture_output=True, text=True,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="cached rebuilds to time (min is reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cold = build(Path(tmp))
        cached = [build(Path(tmp), "--all") for _ in range(args.repeats)]
    print(f"cold build     : {cold:7.1f} s   (budget 300 s)")
    print(f"cached rebuild : {min(cached):7.1f} s   min of {args.repeats}, median "
          f"{sorted(cached)[len(cached) // 2]:.1f} s   (budget 20 s)")


if __name__ == "__main__":
    main()
