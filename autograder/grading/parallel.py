"""Run grading jobs on ``--jobs N`` worker processes (see `worker`), longest first.

A worker that dies (killed by the OOM killer, a crash inside the grader) breaks the pool: the
units that were running are charged one attempt and everything unfinished is resubmitted to a
fresh pool; a unit charged twice is reported as an infrastructure failure.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from .worker import ATTEMPTS, Job, grade_unit, init_worker


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_jobs(jobs: list[Job], workers: int, on_outcome) -> dict[tuple[str, str], dict]:
    """Grade ``jobs`` (already in the order to start them); ``on_outcome(outcome)`` is called in
    this process as each finishes. Returns (student, assignment) -> outcome."""
    outcomes: dict[tuple[str, str], dict] = {}
    charged: dict[tuple[str, str], int] = {}
    pending = list(jobs)
    context = multiprocessing.get_context("spawn")  # inherit nothing: no lock, no sessions
    while pending:
        with ProcessPoolExecutor(
            max_workers=max(1, min(workers, len(pending))),
            mp_context=context,
            initializer=init_worker,
            initargs=(os.getpid(),),
        ) as pool:
            futures = {pool.submit(grade_unit, job): job for job in pending}
            pending, running = [], set()
            not_done = set(futures)
            while not_done:
                running = {f for f in not_done if f.running()} or running
                done, not_done = wait(not_done, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in done:
                    job = futures[future]
                    unit = (job.student, job.assignment)
                    try:
                        outcome = future.result()
                    except Exception as exc:  # noqa: BLE001 - the worker, not the unit, failed
                        broken = isinstance(exc, BrokenProcessPool)
                        charged[unit] = charged.get(unit, 0) + (
                            (future in running) if broken else ATTEMPTS
                        )
                        if charged[unit] < ATTEMPTS:
                            pending.append(job)
                            continue
                        outcome = {
                            "student": job.student, "assignment": job.assignment,
                            "status": "infrastructure", "attempts": charged[unit],
                            "message": f"the grading worker process failed: {exc!r}",
                            "seconds": 0.0, "rss_kb": 0, "pid": None,
                        }
                    outcomes[unit] = outcome
                    on_outcome(outcome)
        pending.sort(key=jobs.index)
    return outcomes
