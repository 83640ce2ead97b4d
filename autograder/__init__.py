"""The course autograder: checks and feedback, the nbgrader pipeline and the instructor CLI.

It reads `npdl` (the reference implementation); `npdl` knows nothing of it.
"""
