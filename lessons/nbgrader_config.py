"""nbgrader configuration of the course's graded lessons (run nbgrader from this folder).

The layout is nbgrader's default: the instructor's notebooks in source/<assignment>/, and
nbgrader creates release/, submitted/, autograded/, feedback/, source_with_tests/ and
gradebook.db next to them (all ignored by git and by the notebook tests). The workflow, with
the commands: book/instructors.md.
"""

c = get_config()  # noqa: F821 (nbgrader provides get_config when it reads this file)

c.CourseDirectory.course_id = "metalearn-course"
c.CourseDirectory.root = "."
# One assignment per lesson folder of source/ (01_episodes, 02_metric, ...); nbgrader adds
# assignments and students to the gradebook when it first meets them.

# Autograding runs every student's notebook top to bottom. A lesson takes under a minute on a
# laptop CPU; a cell still running after this many seconds (an infinite loop, a runaway
# training run) is interrupted, reported in the feedback, and the grading goes on.
c.ExecutePreprocessor.timeout = 120
# After such an interruption, give a busy machine time to deliver the cell's last output (the
# default, 4 s, can make nbgrader drop the whole submission as failed).
c.ExecutePreprocessor.iopub_timeout = 30
# A test cell is graded as the instructor wrote it: an edited one is overwritten by the original
# (nbgrader's default for locked cells), a deleted one is added back and run.
c.OverwriteCells.add_missing_cells = True
# The kernel of the course's virtualenv (or conda environment), as in the book.
c.ExecutePreprocessor.kernel_name = "python3"

# The student version: solutions and hidden tests stripped; the stub a student sees.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
