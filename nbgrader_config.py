"""nbgrader configuration of the course (nbgrader 0.9.6), read by every `nbgrader` command run here.

Layout: instructor sources in ``solutions/<assignment>/<notebook>.ipynb`` (built from the jupytext
markdown ``<notebook>.md`` next to them by ``python -m autograder build-exercises``), student
releases in ``exercises/``. ``python -m autograder grade`` reads this file too and only moves the
root and the gradebook into its output folder.
"""

import os

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import ClearHiddenTests, GetGrades

from autograder.feedback import (
    NBGRADER_TEMPLATES,
    TEMPLATE_FILE,
    TEMPLATE_NAME,
    TEMPLATES,
    OfflineMathJax,
    ShortTracebacks,
)

c = get_config()  # noqa: F821 (injected by traitlets)

_HERE = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = _HERE
c.CourseDirectory.course_id = "npdl"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
# The jupytext markdown sources hold every solution: never copy them into a release.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.md"]
# The gradebook is git-ignored build output (_build/), never a file of the repository.
os.makedirs(os.path.join(_HERE, "_build", "nbgrader"), exist_ok=True)
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(_HERE, "_build", "nbgrader", "gradebook.db")

# Per-cell limit. The slowest legitimate cell is the capstone's training loop: about 10 s with the
# reference solution on one CI core, a student's slower but correct loop perhaps 5x that. 120 s
# leaves room for that on a loaded grading machine, while an infinite loop costs at most 2 minutes
# per cell instead of hanging the whole class's grading run.
c.Execute.timeout = 120
# nbgrader's default kernel arguments (no history file), plus a quiet kernel log: its
# "running over TCP" warning would otherwise interleave with the grading progress bar.
c.Execute.extra_arguments = ["--HistoryManager.hist_file=:memory:", "--IPKernelApp.log_level=ERROR"]

# Feedback shows test cells but not hidden tests (nbgrader keeps them by default), and error
# outputs are cut to "Error: message" so a traceback cannot quote the hidden test's source.
c.GenerateFeedback.preprocessors = [
    ClearHiddenTests,
    ShortTracebacks,
    GetGrades,
    CSSHTMLHeaderPreprocessor,
    OfflineMathJax,
]
# The page itself: autograder/templates/npdl_feedback, nbgrader's feedback template with a summary
# that names each test and MathJax inlined by OfflineMathJax (one file that reads offline).
# nbgrader's own template directory stays on the path: ours extends it.
c.HTMLExporter.extra_template_basedirs = [str(TEMPLATES), str(NBGRADER_TEMPLATES)]
c.HTMLExporter.template_name = TEMPLATE_NAME
c.HTMLExporter.template_file = TEMPLATE_FILE

# Trusted grading: student code runs in a bubblewrap sandbox (autograder.sandbox); every test cell
# is decided in the grader's own process by TrustedExecute, which replaces nbgrader's Execute.
# Test cells deleted or edited by the student are restored from the gradebook first.
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties,
    CheckCellMetadata,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)

from autograder.trusted import TrustedExecute  # noqa: E402

c.Autograde.autograde_preprocessors = [
    TrustedExecute,
    IgnorePattern,
    ClearMetadataPreprocessor,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
c.OverwriteCells.add_missing_cells = True
c.TrustedExecute.session_timeout = 1800  # whole notebook; Execute.timeout (120 s) is per test cell
