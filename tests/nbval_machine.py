"""pytest plugin: stored notebook outputs on another kind of machine (loaded by conftest.py).

nbval compares each stored output with a fresh run digit for digit. That holds on the machine
type the notebook was refreshed on (``metadata.metalearn.executed_on``, written by
``metalearn-course refresh``), where training is deterministic. On a CPU with other vector
instructions, another thread count or another torch, floating-point rounding differs and every
trained number moves in its last digits while staying inside its confidence interval. There the
numbers in the outputs are masked (``tests/nbval_other_machine.cfg``) and nbval still checks all
text and structure; the notebooks' own assertions check the numbers, with their tolerances.
The terminal summary lists the notebooks compared that way.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import pytest

OTHER_MACHINE_CFG = Path(__file__).with_name("nbval_other_machine.cfg")
_masked: dict[str, dict[str, str]] = {}


def number_masks() -> dict[str, str]:
    cfg = configparser.ConfigParser()
    cfg.read(OTHER_MACHINE_CFG)
    return {cfg[s]["regex"]: cfg[s]["replace"] for s in cfg.sections()}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    # After nbval's own setup of the notebook (kernel started, sanitize file read).
    yield
    notebook = item.parent
    if not hasattr(notebook, "sanitize_patterns") or not hasattr(notebook, "nb"):
        return
    from metalearn_course.cli import machine

    stored = notebook.nb.metadata.get("metalearn", {}).get("executed_on")
    here = machine()
    if stored != here:
        notebook.sanitize_patterns.update(number_masks())
        # reported with the test, so that the summary lists it under pytest-xdist too (where
        # this hook runs in a worker and the summary in the controller)
        recorded = {str(k): str(v) for k, v in (stored or {}).items()}  # plain: xdist sends it
        item.user_properties.append(("nbval_masked", (str(notebook.path), recorded)))


def pytest_runtest_logreport(report):
    for name, value in report.user_properties:
        if name == "nbval_masked" and report.when == "setup":
            path, stored = value
            _masked[path] = stored


def pytest_terminal_summary(terminalreporter):
    if not _masked:
        return
    from metalearn_course.cli import machine

    terminalreporter.section("notebooks refreshed on another kind of machine: numbers masked")
    terminalreporter.write_line(f"this machine: {machine()}")
    for path, stored in sorted(_masked.items()):
        terminalreporter.write_line(f"{path}: stored on {stored or 'an unrecorded machine'}")
