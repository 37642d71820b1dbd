"""Papermill quick runs: every notebook runs with tiny "quick" parameters injected.

Each notebook keeps its quick parameters in its own metadata (``metadata.metalearn.quick``) and
the strings its quick run must print (``metadata.metalearn.quick_expect``), so the parameters are
shown to really drive the notebook. Executed copies go to a temporary directory, never over the
sources. (nbval, run by ``make test`` on the same notebooks, checks the default-budget outputs.)
"""

from __future__ import annotations

import json
import time

import nbformat
import papermill
import pytest
from notebooks import ROOT, all_notebooks, book_notebooks

pytestmark = pytest.mark.notebooks
QUICK_SECONDS = 120  # a quick run is a smoke test: much faster than the default budget


def metalearn_meta(path):
    return json.loads(path.read_text())["metadata"].get("metalearn", {})


def test_toc_has_notebooks():
    assert book_notebooks(), "no notebook listed in _toc.yml"


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_quick_run(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    meta = metalearn_meta(path)
    assert "quick" in meta, f"{path.name}: metadata.metalearn.quick (quick parameters) missing"

    out = tmp_path / path.name
    start = time.perf_counter()
    papermill.execute_notebook(
        str(path),
        str(out),
        parameters=meta["quick"],
        cwd=str(path.parent),
        kernel_name="python3",
        progress_bar=False,
    )
    elapsed = time.perf_counter() - start
    assert elapsed < QUICK_SECONDS, f"{path.name}: quick run took {elapsed:.0f} s"

    executed = nbformat.read(out, as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    text = "\n".join(
        o.get("text", "") + json.dumps(o.get("data", {}).get("text/plain", ""))
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )
    for expected in meta.get("quick_expect", []):
        assert expected in text, f"{path.name}: quick run did not print {expected!r}"
