"""Instructor commands: build the exercises, grade a class, make a demo class or the per-chapter
handouts, write the student edition, build a Gradescope autograder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# jsonschema (under nbformat) compiles rfc3987_syntax's IRI grammars at import: ~2 s of CPU in
# every process, grading workers included, for "iri" formats no notebook schema uses.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

from .notebooks import EXERCISES, REPO, NotebookFormatError, assignments  # noqa: E402


def _build_exercises(args) -> int:
    from .pipeline import build_exercises

    unknown = set(args.assignments) - set(assignments())
    if unknown:
        raise SystemExit(
            f"build-exercises: unknown assignment(s) {sorted(unknown)}. Known: {assignments()}."
        )
    built = build_exercises(out=Path(args.out), only=args.assignments or None)
    print(f"built {len(built)} assignment(s) into {args.out}: {', '.join(built)}")
    return 0


_GRADE_DOC = """Autograde a class of submissions with the real nbgrader (trusted grading).

Before grading anyone, one sandbox must start and run a trivial cell; if none can (no
bubblewrap, no root, no namespaces in a container, ...) the run stops with exit status 2 and
says what to do, and writes no grades.

One broken submission costs only that student's notebook: an unreadable file (invalid JSON,
empty, nbformat 3), a notebook saved under another name (graded as not submitted; the message
names the file found), or code that kills its sandbox, loops, exhausts memory or floods output
scores 0 on the affected tests, with the reason in results/<student>.json and the feedback.
A failure that is not the student's (a sandbox that cannot start, a full disk, nbgrader failing
on a well-formed notebook) is retried once and never becomes a score: the run keeps every grade
it finished, names the ungraded students and exits with status 3.

Parallel, incremental, resumable: --jobs worker processes grade (student, assignment) units,
each committed to OUT/.units as soon as it is done, under a key made of the submitted files and
what grading depends on (the assignment's source, the autograder's and npdl's code, the
options). A re-run regrades only the units whose key changed (a new or changed submission, an
edited check regrades that assignment for everyone); after an interruption (kill -9, power loss)
the same command grades only what was unfinished, and the grades equal an uninterrupted run's.
--force regrades everything. Every file in OUT is replaced atomically (no half-written file is
ever visible); .OUT.lock next to OUT (a flock the kernel releases when a run dies) refuses a
second concurrent run on the same OUT.

Exit status: 0 all graded, 2 instructor error (arguments, submissions layout, preflight),
3 some work left ungraded by an infrastructure failure (re-run to finish it)."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of seconds >= 1. Received: {text}"
        )
    return value


def _jobs(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of workers >= 1. Received: {text}")
    return value


def _grade(args) -> int:
    from .grading import ClassGrader, InstructorError
    from .grading.progress import failure_table
    from .pipeline import NbgraderFailed

    grader = ClassGrader(
        Path(args.out), cell_timeout=args.cell_timeout, jobs=args.jobs, sandbox=args.sandbox,
        force=args.force,
    )
    try:
        grader.run(Path(args.submissions), progress=not args.quiet)
    except (InstructorError, NbgraderFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. a full disk while publishing: the next run resumes
        print(f"error: grade: could not write {args.out}: {exc}. Finished work is kept in "
              f"{Path(args.out) / '.units'}; run the same command again.", file=sys.stderr)
        return 3
    report = grader.report
    for student, result in sorted(report.results.items()):
        print(f"{student}: {result['score']:g} / {result['max_score']:g}")
    ungraded = sorted({student for student, _ in report.failed})
    for student in ungraded:
        print(f"{student}: not graded (infrastructure error, see the table below)")
    memory = max(report.peak_rss_mb.values(), default=0.0)
    print(
        f"graded {report.graded}, reused {report.reused}, failed {len(report.failed)} "
        f"(student, assignment) units; {report.workers} worker(s), sandbox {report.backend}"
        + (f", peak worker memory {memory:.0f} MB" if memory else "")
    )
    print(
        f"grades: {Path(args.out) / 'grades.csv'}; results: {Path(args.out) / 'results'}; "
        f"feedback: {Path(args.out) / 'feedback'}"
    )
    if report.failed:
        print(
            f"\nerror: {len(report.failed)} unit(s) of {len(ungraded)} student(s) could not be "
            "graded because of an infrastructure failure (not the students' work; no score was "
            f"recorded). Details: {Path(args.out) / 'grading.log'}. Fix the cause and run the "
            "same command again: only this work is graded.\n" + failure_table(report.failed),
            file=sys.stderr,
        )
        return 3
    return 0


def _demo_class(args) -> int:
    import tempfile

    from .demo import make_demo_class
    from .pipeline import build_exercises

    with tempfile.TemporaryDirectory(prefix="npdl-demo-") as tmp:
        # Fresh releases from the sources, so the demo never depends on a stale exercises/.
        build_exercises(out=Path(tmp) / "exercises", sources_out=Path(tmp) / "solutions")
        roster = make_demo_class(
            Path(args.out), bugs_file=Path(args.bugs), exercises=Path(tmp) / "exercises"
        )
    print(json.dumps(roster, indent=1))
    return 0


def _handout(args) -> int:
    from .handout import build_handout

    for bundle in build_handout(Path(args.out)):
        print(bundle)
    return 0


def _release(args) -> int:
    from .release import ReleaseError, build_release

    try:
        files = build_release(args.through, Path(args.out))
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"student edition through assignment {args.through}: {len(files)} files in {args.out}")
    return 0


def _gradescope(args) -> int:
    from .gradescope import build_zip

    if args.assignment not in assignments():
        raise SystemExit(
            f"gradescope: unknown assignment {args.assignment!r}. Known: {assignments()}."
        )
    out = Path(args.out or REPO / "_build" / "gradescope" / f"{args.assignment}.zip")
    config = build_zip(
        args.assignment, out, hidden_visibility=args.hidden_visibility,
        cell_timeout=args.cell_timeout, time_limit=args.time_limit,
    )
    print(
        f"{out}: Gradescope autograder for {args.assignment} ({', '.join(config['notebooks'])}), "
        f"{len(config['tests'])} tests, {sum(config['tests'].values()):g} points; hidden tests "
        f"{args.hidden_visibility}. Upload it as the assignment's autograder (Ubuntu 22.04/24.04) "
        f"with a Gradescope timeout above {args.time_limit + 120} s."
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "build-exercises",
        help="solutions/<a>/<nb>.md -> solutions/<a>/<nb>.ipynb -> "
        "nbgrader generate_assignment -> exercises/<a>/",
    )
    p.add_argument("assignments", nargs="*", help="assignment ids (default: all)")
    p.add_argument("--out", default=str(EXERCISES), help="release folder (default: exercises/)")
    p.set_defaults(run=_build_exercises)

    p = sub.add_parser(
        "grade",
        help="autograde a class with nbgrader: grades.csv, feedback/, results/",
        description=_GRADE_DOC,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "submissions",
        help="folder (or .zip) in nbgrader's submitted layout "
        "<student_id>/<assignment_id>/<notebook>.ipynb",
    )
    p.add_argument(
        "--out",
        required=True,
        help="output folder: an nbgrader course root, updated atomically (cache in OUT/.units)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--jobs",
        type=_jobs,
        default=None,
        metavar="N",
        help="worker processes (default: the number of usable cores)",
    )
    p.add_argument(
        "--force", action="store_true", help="regrade everything, even unchanged work"
    )
    p.add_argument(
        "--sandbox",
        choices=["auto", "bwrap", "process"],
        default=None,
        help="sandbox backend for student code (default: $NPDL_SANDBOX, else auto: bwrap if it "
        "starts, else process); checked before grading anyone",
    )
    p.add_argument(
        "--cell-timeout",
        type=_positive_int,
        default=None,
        metavar="SECONDS",
        help="per-cell time limit of student code and of each test "
        "(default: Execute.timeout of nbgrader_config.py, 120)",
    )
    p.set_defaults(run=_grade)

    p = sub.add_parser(
        "demo-class", help="generate demo submissions (solution, blank, one per bug)"
    )
    p.add_argument("out", help="folder to write <student>/<assignment>/<nb>.ipynb into")
    p.add_argument("--bugs", default=str(REPO / "tests" / "fixtures" / "bugs.yaml"))
    p.set_defaults(run=_demo_class)

    p = sub.add_parser(
        "handout", help="per-chapter student bundles: notebook + earlier chapters' npdl"
    )
    p.add_argument("--out", default=str(REPO / "_build" / "handout"))
    p.set_defaults(run=_handout)

    p = sub.add_parser(
        "release",
        help="the student edition through assignment N: a standalone tree to publish",
        description="Write the student edition (exercises 1..N, npdl of chapters 1..N-1, README, "
        "requirements.txt, Binder and Colab set-up) into OUT, replacing all but OUT/.git. "
        "See autograder/release.py.",
    )
    p.add_argument("--through", type=int, required=True, metavar="N")
    p.add_argument("--out", required=True, help="folder (e.g. a clone of the public repository)")
    p.set_defaults(run=_release)

    p = sub.add_parser(
        "gradescope",
        help="build a Gradescope autograder zip (setup.sh, run_autograder) for one assignment",
        description="Build a Gradescope autograder for ASSIGNMENT: run_autograder grades the "
        "notebook a student uploads (any file name) with trusted grading in the process "
        "sandbox and writes results.json. See autograder/gradescope.py.",
    )
    p.add_argument("assignment", help="assignment id, e.g. 02_activations")
    p.add_argument("--out", help="zip to write (default: _build/gradescope/ASSIGNMENT.zip)")
    p.add_argument(
        "--hidden-visibility",
        choices=["hidden", "after_due_date", "after_published", "visible"],
        default="after_published",
        help="when students see the tests that include hidden tests (default: after_published)",
    )
    p.add_argument(
        "--cell-timeout",
        type=_positive_int,
        default=None,
        metavar="SECONDS",
        help="per-cell time limit (default: Execute.timeout of nbgrader_config.py, 120)",
    )
    p.add_argument(
        "--time-limit",
        type=_positive_int,
        default=420,
        metavar="SECONDS",
        help="the notebook's whole sandbox session (default 420); run_autograder stops at this "
        "+ 120 s, which must stay under the assignment's Gradescope timeout (default 10 min)",
    )
    p.set_defaults(run=_gradescope)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except NotebookFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
