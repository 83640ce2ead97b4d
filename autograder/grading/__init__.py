"""Grading a class: find the submissions, grade them with nbgrader, write results and feedback.

    submissions   locate and list ``<student>/<assignment>/<notebook>.ipynb`` (folder or .zip)
    keys          cache keys: the submitted files + what grading an assignment depends on
    store         ``OUT/.units``: each (student, assignment) result, committed atomically
    worker        a worker process grading one unit; whose fault a failure is; retry once
    parallel      ``--jobs N`` worker processes
    progress      the class's progress bar and the table of ungraded work
    publish       OUT's gradebook, grades.csv, feedback and results from the store
    results       ``results/<student>.json`` (Gradescope schema) and fallback feedback pages
    outdir        OUT: one run at a time (flock), every file written atomically
    classgrader   `ClassGrader`: the run, from preflight to publishing
"""

from .classgrader import ClassGrader, GradingReport, PreflightFailed
from .submissions import InstructorError

__all__ = ["ClassGrader", "GradingReport", "InstructorError", "PreflightFailed"]
