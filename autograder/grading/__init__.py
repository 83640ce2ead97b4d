"""Grading a class: find the submissions, grade them with nbgrader, write results and feedback.

    submissions   locate and list ``<student>/<assignment>/<notebook>.ipynb`` (folder or .zip)
    outdir        OUT: one run at a time (flock), replaced atomically
    classgrader   `ClassGrader`: nbgrader autograde + generate_feedback, grades.csv
    results       ``results/<student>.json`` (Gradescope schema) and fallback feedback pages
"""

from .classgrader import ClassGrader
from .submissions import InstructorError

__all__ = ["ClassGrader", "InstructorError"]
