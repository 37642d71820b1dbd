"""Papermill quick runs: every notebook runs with tiny "quick" parameters injected.

Each notebook keeps its quick parameters in its own metadata (``metadata.metalearn.quick``) and
the strings its quick run must print (``metadata.metalearn.quick_expect``), so the parameters are
shown to really drive the notebook. Executed copies go to a temporary directory, never over the
sources. (nbval, run by ``make test`` on the same notebooks, checks the default-budget outputs.)

A quick run is mostly a kernel starting, importing torch and loading Omniglot, work for one core:
the selected notebooks run two at a time, each in its own papermill process, started when the
first quick-run test asks for its result; every test then checks its own notebook.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from notebooks import ROOT, all_notebooks, book_notebooks

from metalearn_course.checks import STRICT_ENV

pytestmark = pytest.mark.notebooks
QUICK_SECONDS = 120  # a quick run is a smoke test: much faster than the default budget
# quick runs at the same time: two, or one under pytest-xdist, whose other worker is running a
# notebook meanwhile
WORKERS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2


def metalearn_meta(path):
    return json.loads(path.read_text())["metadata"].get("metalearn", {})


def papermill(
    path: Path, out: Path, parameters: dict, strict: bool = False
) -> subprocess.CompletedProcess:
    """Run `path` with `parameters` injected into `out`, in its own papermill process.

    strict=False: a learner's changed run, whose comparison with the book explains and must
    not raise (nbval holds the default run to the book's claims)."""
    params = out.with_suffix(".params.json")
    params.write_text(json.dumps(parameters))
    command = [sys.executable, "-m", "papermill", str(path), str(out), "-f", str(params)]
    return subprocess.run(
        [*command, "--cwd", str(path.parent), "-k", "python3", "--no-progress-bar"],
        capture_output=True,
        text=True,
        timeout=10 * QUICK_SECONDS,
        env={**os.environ, STRICT_ENV: "1" if strict else "0"},
    )


def quick_parameters(path: Path) -> dict:
    """The notebook's quick parameters, with one knob of its "Try this" cell turned
    (``metadata.metalearn.try_this``: the knob, at a value that keeps the run quick): a learner
    who tries it meets the comparison table, not an error."""
    meta = metalearn_meta(path)
    return {**meta.get("quick", {}), **meta.get("try_this", {})}


def run_quick(path: Path, out: Path) -> tuple[float, Path]:
    """Run `path` with its quick parameters into `out`; (seconds taken, out)."""
    start = time.perf_counter()
    done = papermill(path, out, quick_parameters(path))
    if done.returncode:
        log = done.stdout + done.stderr
        raise RuntimeError(f"papermill failed on {path.name}:\n{log[-5000:]}")
    return time.perf_counter() - start, out


@pytest.fixture(scope="session")
def quick_runs(request, tmp_path_factory):
    """Futures of the quick runs of every notebook this session's quick-run tests select."""
    selected = [
        item.callspec.params["path"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_quick_run"
    ]
    folder = tmp_path_factory.mktemp("quick")
    pool = ThreadPoolExecutor(WORKERS)
    runs: dict[Path, Future] = {
        path: pool.submit(run_quick, path, folder / f"{i:02}-{path.name}")
        for i, path in enumerate(selected)
    }
    yield runs
    pool.shutdown(wait=True, cancel_futures=True)


def test_toc_has_notebooks():
    assert book_notebooks(), "no notebook listed in _toc.yml"


@pytest.mark.parametrize("path", book_notebooks(), ids=lambda p: p.name)
def test_try_this_names_its_knobs(path):
    """Every chapter notebook has a "Try this" cell whose knobs are parameters, and
    metadata.metalearn.try_this names one of them: the quick run turns it."""
    nb = nbformat.read(path, as_version=4)
    (parameters,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    names = set(re.findall(r"^([A-Z_][A-Z0-9_]*) *=", parameters.source, flags=re.M))
    cells = [c.source for c in nb.cells if c.cell_type == "markdown" and "## Try this" in c.source]
    assert len(cells) == 1, f"{path.name}: one markdown cell with a '## Try this' heading"
    knobs = set(re.findall(r"`([A-Z_][A-Z0-9_]*) *=", cells[0]))
    assert len(knobs) >= 2, f"{path.name}: name two or three knobs as `NAME = value`"
    assert knobs <= names, f"{path.name}: {sorted(knobs - names)} are not parameters"
    turned = metalearn_meta(path).get("try_this", {})
    assert len(turned) == 1 and set(turned) <= knobs, f"{path.name}: try_this: one of {knobs}"
    roles = re.findall(r"\{[a-z:-]+\}`", cells[0])
    assert not roles, f"{path.name}: plain Markdown in 'Try this', no MyST role {roles}"


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: str(p.relative_to(ROOT)))
def test_quick_run(path, quick_runs):
    nb = nbformat.read(path, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"
    meta = metalearn_meta(path)
    assert "quick" in meta, f"{path.name}: metadata.metalearn.quick (quick parameters) missing"

    elapsed, out = quick_runs[path].result()
    # two runs share the machine, so this bound is loose; it catches a default-size run
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


@pytest.mark.parametrize("strict", [False, True], ids=["learner", "strict"])
def test_a_changed_run_is_explained_or_fails_in_strict_mode(tmp_path, strict):
    """The ProtoNet exercise's change (10-way training) at quick size: a learner gets the
    comparison with the book, ✗ rows and what usually explains them; strict mode raises."""
    path = ROOT / "book" / "02_metric" / "protonet.ipynb"
    out = tmp_path / "protonet.ipynb"
    done = papermill(path, out, {**metalearn_meta(path)["quick"], "TRAIN_WAY": 10}, strict)
    if strict:
        assert done.returncode != 0
        assert "AssertionError" in done.stderr and "a claim of the book fails" in done.stderr
        return
    assert done.returncode == 0, done.stderr[-3000:]
    executed = nbformat.read(out, as_version=4)
    table = [
        o["data"]["text/plain"]
        for c in executed.cells
        for o in c.get("outputs", [])
        if "Your run vs the book" in o.get("data", {}).get("text/plain", "")
    ]
    assert len(table) == 1, "the comparison table is shown once"
    assert "✗ 5-way 1-shot accuracy: usually other parameters" in table[0]
