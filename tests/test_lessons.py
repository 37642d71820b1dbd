"""The graded lessons end to end, with real nbgrader in a temporary course directory.

The course is lessons/source and lessons/nbgrader_config.py copied to a temporary folder.
nbgrader generates the student versions; then five "students" submit:

* ``instructor``: the source notebooks, solutions included: full marks on every lesson;
* ``untouched``: the release as it is: zero on the autograded parts, and no crash;
* ``partial``: lesson 1 with exercises 1 and 3 right and 2 wrong (labels not remapped);
* ``cheater``: lesson 1 with exercise 1 wrong and its test cell deleted, exercise 2 wrong and its
  test cell replaced by ``pass``: neither earns points;
* ``looping``: lesson 1 whose exercise 2 never returns, graded with a short cell timeout: the
  timeout interrupts it, the error is in the graded notebook, and the grading goes on.

Scores are read from the gradebook with nbgrader's API. One nbgrader call per step;
about two and a half minutes on two quiet cores, most of it kernels starting and importing torch.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest
from notebooks import ROOT

nbgrader_api = pytest.importorskip("nbgrader.api", reason="nbgrader is in the dev extra")

pytestmark = pytest.mark.notebooks
LESSONS = ROOT / "lessons"
ASSIGNMENTS = sorted(p.name for p in (LESSONS / "source").iterdir() if p.is_dir())
LOOP_LESSON = "01_episodes"
LOOP_TIMEOUT = 15  # seconds: the short cell timeout the looping submission is graded with
# Appended to the lessons' nbgrader_config.py in the test course. The lessons get a generous cell
# timeout (a loaded CI machine is slow); the looping submission is graded on its own with
# NBGRADER_TEST_CELL_TIMEOUT set. A lesson's read-only setup cell, which imports torch in a fresh
# kernel (tens of seconds on a busy machine), always keeps the long one.
TEST_CONFIG = """
# tests/test_lessons.py
import os

c.ExecutePreprocessor.timeout = int(os.environ.get("NBGRADER_TEST_CELL_TIMEOUT", 600))


def _cell_timeout(cell):
    setup = cell.metadata.get("nbgrader", {}).get("grade_id") == "setup"
    return 600 if setup else c.ExecutePreprocessor.timeout


c.ExecutePreprocessor.timeout_func = _cell_timeout
"""


def notebook_of(assignment: str) -> str:
    (path,) = (LESSONS / "source" / assignment).glob("*.ipynb")
    return path.stem


def run_nbgrader(course: Path, *args: str, timeout: float = 1800, **env_vars: str) -> str:
    """Run one nbgrader command in the course; fail with its log unless it succeeds."""
    # nbgrader runs alembic (the gradebook's migrations) as a program: put the venv's bin first.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=course,
        env=dict(os.environ, PATH=path, **env_vars),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{log[-5000:]}"
    return log


def cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    (found,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    return found


def solve(release: nbformat.NotebookNode, source: nbformat.NotebookNode, grade_id: str) -> None:
    """Answer one exercise with the instructor's solution."""
    cell(release, grade_id).source = cell(source, grade_id).source


def read(root: Path, folder: str, assignment: str) -> nbformat.NotebookNode:
    path = root / folder / assignment / f"{notebook_of(assignment)}.ipynb"
    return nbformat.read(path, as_version=4)


def submit(root: Path, student: str, assignment: str, nb: nbformat.NotebookNode) -> None:
    folder = root / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{notebook_of(assignment)}.ipynb")


def wrong_sampler(source: nbformat.NotebookNode) -> str:
    """The solution of exercise 2 with a classic bug: dataset class ids kept as labels."""
    code, n = re.subn(
        r"remap_labels\((class_ids\[[^\]]*\]\.flatten\(\)),\s*classes\)",
        r"\1",
        cell(source, "sample_episode").source,
    )
    assert n == 2, "the solution of sample_episode changed: update wrong_sampler"
    return code


WRONG_REMAP = """
def remap_labels(class_ids, classes):
    return class_ids  # wrong: not remapped
"""

LOOPING_SAMPLER = '''
import time


def sample_episode(images, way, shot, queries, rng):
    """A bug: the loop never ends (it sleeps, to spare the test machine's CPU)."""
    while True:
        time.sleep(0.05)
'''


@pytest.fixture(scope="module")
def course():
    """Release every lesson, submit the students' work, autograde, and yield the gradebook's
    scores, {(student, assignment): {grade_id: (auto_score, max_score, cell_type)}}, and the
    course folder (removed afterwards)."""
    start = time.perf_counter()
    # A folder of our own, not pytest's tmp_path: other pytest sessions on the same machine
    # prune pytest's older temporary folders, and this fixture runs for minutes.
    root = Path(tempfile.mkdtemp(prefix="metalearn-lessons-"))
    try:
        yield grade_course(root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nlessons: released, graded and checked in {time.perf_counter() - start:.0f} s")


def grade_course(root: Path) -> dict:
    shutil.copytree(LESSONS / "source", root / "source")
    config = (LESSONS / "nbgrader_config.py").read_text() + TEST_CONFIG
    (root / "nbgrader_config.py").write_text(config)

    # One nbgrader call per step for all the lessons ("*" is a glob over the assignment folders):
    # each call starts a Python that imports nbgrader, seconds on a loaded machine.
    run_nbgrader(root, "generate_assignment", "*", "--force")
    for assignment in ASSIGNMENTS:
        submit(root, "instructor", assignment, read(root, "source", assignment))
        submit(root, "untouched", assignment, read(root, "release", assignment))

    release, source = read(root, "release", LOOP_LESSON), read(root, "source", LOOP_LESSON)
    partial = copy.deepcopy(release)
    solve(partial, source, "remap_labels")
    cell(partial, "sample_episode").source = wrong_sampler(source)
    solve(partial, source, "balance")
    submit(root, "partial", LOOP_LESSON, partial)

    cheater = copy.deepcopy(release)
    cell(cheater, "remap_labels").source = WRONG_REMAP.strip()
    cheater.cells.remove(cell(cheater, "test_remap_labels"))  # a deleted test cell
    cell(cheater, "sample_episode").source = wrong_sampler(source)
    cell(cheater, "test_sample_episode").source = "pass  # an edited test cell"
    solve(cheater, source, "balance")
    submit(root, "cheater", LOOP_LESSON, cheater)

    run_nbgrader(root, "autograde", "*", "--force")
    run_nbgrader(root, "generate_feedback", LOOP_LESSON, "--student", "partial", "--force")

    # Last, on its own, with the short timeout: a submission whose exercise 2 never returns.
    looping = copy.deepcopy(release)
    solve(looping, source, "remap_labels")
    cell(looping, "sample_episode").source = LOOPING_SAMPLER.strip()
    solve(looping, source, "balance")
    submit(root, "looping", LOOP_LESSON, looping)
    started = time.perf_counter()
    run_nbgrader(
        root,
        "autograde",
        LOOP_LESSON,
        "--student",
        "looping",
        "--force",
        NBGRADER_TEST_CELL_TIMEOUT=str(LOOP_TIMEOUT),
    )
    loop_seconds = time.perf_counter() - started

    scores = {}
    with nbgrader_api.Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        for assignment in ASSIGNMENTS:
            name = notebook_of(assignment)
            for submission in gradebook.assignment_submissions(assignment):
                student = submission.student.id
                grades = gradebook.find_submission_notebook(name, assignment, student).grades
                scores[student, assignment] = {
                    g.name: (g.auto_score, g.max_score, g.cell_type) for g in grades
                }
    for (student, assignment), grades in sorted(scores.items()):  # shown by pytest -s
        points = {g: s for g, (s, _, kind) in grades.items() if kind == "code"}
        print(f"{assignment} {student:>10}: {points}")
    print(f"the looping submission was graded in {loop_seconds:.0f} s")
    return {"root": root, "scores": scores, "loop_seconds": loop_seconds}


def autograded(scores: dict) -> tuple[float, float]:
    """(points, max points) of the autograded (code) cells of one submission."""
    code = [(s or 0.0, m) for s, m, kind in scores.values() if kind == "code"]
    return sum(s for s, _ in code), sum(m for _, m in code)


def test_release_strips_solutions_and_hidden_tests(course):
    root = course["root"]
    for assignment in ASSIGNMENTS:
        name = notebook_of(assignment)
        source = nbformat.read(root / "source" / assignment / f"{name}.ipynb", as_version=4)
        release = nbformat.read(root / "release" / assignment / f"{name}.ipynb", as_version=4)
        text = "\n".join(c.source for c in release.cells)
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "HIDDEN TESTS", "Model answer"):
            assert marker not in text, f"{assignment}: release contains {marker!r}"
        secret, public = [], []
        region = re.compile(r"### BEGIN (SOLUTION|HIDDEN TESTS)\n(.*?)### END \1", flags=re.S)
        for c in source.cells:
            meta = c.metadata.get("nbgrader", {})
            if meta.get("solution") and c.cell_type == "markdown":
                secret += c.source.splitlines()  # a written model answer
                continue
            secret += [line for _, body in region.findall(c.source) for line in body.splitlines()]
            public += region.sub("", c.source).splitlines()
        # Lines that only a solution or a hidden test has must be gone (lines such as
        # "atol=1e-5," that visible code has too are not secrets).
        secret = {line.strip() for line in secret} - {line.strip() for line in public}
        released = {line.strip() for line in text.splitlines()}
        leaked = sorted(line for line in secret if line and line in released)
        assert not leaked, f"{assignment}: release leaks {leaked[:3]}"
        for c in release.cells:
            meta = c.metadata.get("nbgrader", {})
            if meta.get("solution"):
                stub = "raise NotImplementedError()" if c.cell_type == "code" else "YOUR ANSWER"
                assert stub in c.source, f"{assignment}/{meta['grade_id']}: no stub"
            assert not c.get("outputs"), f"{assignment}: release keeps outputs"


def test_instructor_solution_gets_full_marks(course):
    scores = course["scores"]
    for assignment in ASSIGNMENTS:
        points, maximum = autograded(scores["instructor", assignment])
        assert maximum >= 7 and points == maximum, (assignment, scores["instructor", assignment])
        written = [
            g for g, (_, _, kind) in scores["instructor", assignment].items() if kind == "markdown"
        ]
        assert written, f"{assignment}: no manually graded written answer"


def test_manual_grade_completes_the_score(course):
    """The instructor grades the written answer (formgrader does the same through the API)."""
    url = f"sqlite:///{course['root'] / 'gradebook.db'}"
    assignment = ASSIGNMENTS[0]
    name = notebook_of(assignment)
    with nbgrader_api.Gradebook(url) as gradebook:
        submission = gradebook.find_submission_notebook(name, assignment, "instructor")
        for grade in submission.grades:
            if grade.cell_type == "markdown":
                assert grade.needs_manual_grade
                grade.manual_score = grade.max_score
        gradebook.db.commit()
        submission = gradebook.find_submission_notebook(name, assignment, "instructor")
        assert submission.score == submission.max_score > 0


def test_untouched_release_gets_zero(course):
    for assignment in ASSIGNMENTS:
        points, maximum = autograded(course["scores"]["untouched", assignment])
        assert maximum > 0 and points == 0, (assignment, course["scores"]["untouched", assignment])


def test_partial_submission_gets_partial_score(course):
    grades = course["scores"]["partial", LOOP_LESSON]
    by_cell = {g: s for g, (s, _, kind) in grades.items() if kind == "code"}
    assert by_cell == {"test_remap_labels": 2, "test_sample_episode": 0, "test_balance": 3}
    feedback = course["root"] / "feedback" / "partial" / LOOP_LESSON
    html = (feedback / f"{notebook_of(LOOP_LESSON)}.html").read_text()
    # The student's feedback shows the failing check's message and hint, not a bare assertion.
    assert "entries differ; first at index" in html, "no check message in the feedback"
    assert "Hint: class-major" in html, "no hint in the feedback"


def test_infinite_loop_is_stopped_by_the_timeout(course):
    grades = course["scores"]["looping", LOOP_LESSON]
    by_cell = {g: s for g, (s, _, kind) in grades.items() if kind == "code"}
    # the looping exercise gets nothing; the cells after it still ran and were graded
    assert by_cell == {"test_remap_labels": 2, "test_sample_episode": 0, "test_balance": 3}
    path = course["root"] / "autograded" / "looping" / LOOP_LESSON
    nb = nbformat.read(path / f"{notebook_of(LOOP_LESSON)}.ipynb", as_version=4)
    errors = [o for o in cell(nb, "test_sample_episode").outputs if o.output_type == "error"]
    assert errors, "the interrupted cell reports no error"
    assert any(e.ename in ("KeyboardInterrupt", "CellTimeoutError") for e in errors), errors
    # stopped by the short timeout, not by the long one (600 s); the rest is nbgrader starting
    assert course["loop_seconds"] < 300, course["loop_seconds"]


def test_edited_or_deleted_test_cells_earn_nothing(course):
    grades = course["scores"]["cheater", LOOP_LESSON]
    by_cell = {g: s for g, (s, _, kind) in grades.items() if kind == "code"}
    assert by_cell == {"test_remap_labels": 0, "test_sample_episode": 0, "test_balance": 3}


def test_grading_helpers_explain_the_failure():
    """The lesson tests' helpers say what is wrong (cheap: no nbgrader)."""
    import math

    import torch

    from metalearn_course.grading import (
        check_close,
        check_equal,
        check_params_close,
        labelled_images,
        toy_embeddings,
    )

    with pytest.raises(AssertionError, match=r"expected shape \(2, 3\), got shape \(3, 2\).*trans"):
        check_close("logits", torch.zeros(3, 2), torch.zeros(2, 3))
    with pytest.raises(AssertionError, match=r"(?s)index \(1,\): got 5, expected 2.*Hint: a mean"):
        check_close("x", [1.0, 5.0], [1.0, 2.0], hint="a mean")
    with pytest.raises(AssertionError, match="forget to `return`"):
        check_equal("labels", None, [0])
    with pytest.raises(AssertionError, match=r"missing \['b'\]"):
        check_params_close("phi", {"a": torch.ones(1)}, {"a": torch.ones(1), "b": torch.ones(1)})
    check_close("scores", [math.inf, 1.0], [math.inf, 1.0])  # inf where inf is expected is right
    with pytest.raises(AssertionError, match="nan or inf"):
        check_close("scores", [1.0, 1.0], [math.inf, 1.0])
    assert labelled_images(3, 4)[2, 1, 0, 0].tolist() == [2.0, 1.0]
    x, y = toy_embeddings(3, [1, 2, 3], dim=5, shuffle=True)
    assert x.shape == (6, 5) and torch.bincount(y).tolist() == [1, 2, 3]
