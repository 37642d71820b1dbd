"""Stored numbers are compared exactly on the machine type that produced them, masked elsewhere."""

from __future__ import annotations

import nbformat
import pytest
from notebooks import ROOT, all_notebooks

from metalearn_course.cli import machine

pytest_plugins = ["pytester"]


def tiny_notebook(path, stored_text: str, executed_on: dict) -> None:
    cell = nbformat.v4.new_code_cell("print(f'accuracy {0.1 + 0.2:.4f} after 3 steps')")
    cell.execution_count = 1
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=stored_text)]
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    nb.metadata["metalearn"] = {"executed_on": executed_on}
    nbformat.write(nb, path)


ELSEWHERE = {"cpu": "Some Other CPU", "isa": "AVX2", "threads": "2", "torch": "2.0.0"}
CASES = {  # notebook: (stored output, machine it was stored on, does nbval pass?)
    "same": ("accuracy 0.3000 after 3 steps\n", "here", True),
    "digit_here": ("accuracy 0.3001 after 3 steps\n", "here", False),  # every digit counts
    "digit_elsewhere": ("accuracy 0.3001 after 3 steps\n", ELSEWHERE, True),  # digits masked
    "width_elsewhere": ("accuracy 0.3 after 30 steps\n", ELSEWHERE, True),
    "words_elsewhere": ("loss 0.3000 after 3 steps\n", ELSEWHERE, False),  # words still count
}


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_numbers_masked_only_for_another_machine(pytester, monkeypatch, workers):
    for name, (stored_text, executed_on, _) in CASES.items():
        executed_on = machine() if executed_on == "here" else executed_on
        tiny_notebook(pytester.path / f"{name}.ipynb", stored_text, executed_on)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the plugin, in the subprocess
    result = pytester.runpytest_subprocess(
        "--nbval", "--nbval-current-env", "-p", "tests.nbval_machine", "-p", "no:cacheprovider",
        "-rA", *workers, *(f"{name}.ipynb" for name in CASES),
    )
    for name, (_, _, passes) in CASES.items():
        result.stdout.fnmatch_lines([f"{'PASSED' if passes else 'FAILED'} {name}.ipynb::Cell 0*"])
    result.stdout.fnmatch_lines(["*numbers masked*", "*digit_elsewhere.ipynb: stored on*Other*"])
    assert "same.ipynb: stored on" not in result.stdout.str()


def test_every_notebook_records_its_machine():
    for path in all_notebooks():
        executed_on = nbformat.read(path, as_version=4).metadata.get("metalearn", {})
        assert set(executed_on.get("executed_on", {})) == set(machine()), (
            f"{path.name}: no metadata.metalearn.executed_on; refresh it with"
            " `make refresh NB=...`, which records the machine it ran on"
        )
