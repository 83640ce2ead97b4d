"""What the instructor sees while a class is graded and after: one bar, one summary, one table.

The bar (stderr) counts units, one per (student, assignment): ``graded`` now, ``reused`` from an
earlier run (counted at the start), ``failed`` by the infrastructure (never scored); its ETA
covers the units still to grade. At the end, a table lists the students whose work is ungraded.
"""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    def __init__(self, total: int, reused: int, enabled: bool):
        self.counts = {"graded": 0, "reused": reused, "failed": 0}
        self.bar = tqdm(
            total=total, initial=reused, unit="unit", desc="grading", disable=not enabled,
            file=sys.stderr, dynamic_ncols=True, smoothing=0.1,
        )
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(", ".join(f"{k} {v}" for k, v in self.counts.items()))

    def done(self, outcome: dict) -> None:
        failed = outcome["status"] == "infrastructure"
        self.counts["failed" if failed else "graded"] += 1
        if failed:
            self.bar.write(
                f"warning: {outcome['student']}/{outcome['assignment']} could not be graded "
                f"(infrastructure, {outcome['attempts']} attempts): "
                f"{first_line(outcome['message'])}",
                file=sys.stderr,
            )
        self._postfix()
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def first_line(text: str, width: int = 100) -> str:
    line = (text or "").strip().split("\n", 1)[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def failure_table(failed: dict[tuple[str, str], str]) -> str:
    """The students with ungraded work: one row per (student, assignment), with the reason."""
    rows = [("student", "assignment", "why it is not graded")]
    rows += [(s, a, first_line(why)) for (s, a), why in sorted(failed.items())]
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}" for r in rows]
    lines.insert(1, f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 20}")
    return "\n".join(lines)
