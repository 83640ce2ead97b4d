"""Instructor commands: ``python -m autograder {build-exercises,grade,demo-class,handout} ...``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .notebooks import EXERCISES, REPO, NotebookFormatError, assignments


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


def _grade(args) -> int:
    from .grading import ClassGrader, InstructorError
    from .pipeline import NbgraderFailed

    try:
        results = ClassGrader(Path(args.out)).run(
            Path(args.submissions), progress=not args.quiet
        )
    except (InstructorError, NbgraderFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for student, result in sorted(results.items()):
        print(f"{student}: {result['score']:g} / {result['max_score']:g}")
    print(
        f"grades: {Path(args.out) / 'grades.csv'}; results: {Path(args.out) / 'results'}; "
        f"feedback: {Path(args.out) / 'feedback'}"
    )
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
        "grade", help="autograde a class with nbgrader: grades.csv, feedback/, results/"
    )
    p.add_argument(
        "submissions",
        help="folder (or .zip) in nbgrader's submitted layout "
        "<student_id>/<assignment_id>/<notebook>.ipynb",
    )
    p.add_argument(
        "--out", required=True, help="output folder (becomes a fresh nbgrader course root)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except NotebookFormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
