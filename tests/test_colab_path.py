"""The Colab path (issue 10): a notebook runs where only its install cell set the course up.

Colab gives a Python with torch, ipykernel and papermill, and nothing of ours. Each chapter's
first (hidden) cell installs the course package when it is missing. This test builds the
package's wheel, makes a fresh virtualenv with only what Colab brings (torch from the local CPU
wheel, ipykernel, papermill), and runs chapter notebooks there with their quick parameters, in
the form Colab opens: the notebook's Colab edition (tools/colab_edition.py, what `make book`
publishes under colab/), built here from the source. The install cell's pip command is the
notebook's own, pointed at the wheel instead of the repository URL (no network here): the run
fails if a notebook imports anything that the package and its declared dependencies do not
bring, such as a development tool of the book.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest
from notebooks import ROOT

sys.path.insert(0, str(ROOT / "tools"))
from colab_edition import Book, edition  # tools/ is not a package

pytestmark = pytest.mark.notebooks
REPOSITORY = "metalearn-course @ git+https://github.com/metalearn-course/metalearn-course"
NOTEBOOKS = ["book/02_metric/protonet.ipynb"]  # data, training, evaluation, plots, report
COLAB_HAS = ["torch==2.13.0", "ipykernel", "papermill"]  # torch: the CPU wheel on disk


def run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=900, **kwargs
    )
    assert done.returncode == 0, f"{command} failed:\n{(done.stdout + done.stderr)[-4000:]}"
    return done


@pytest.fixture(scope="module")
def colab(tmp_path_factory) -> tuple[Path, Path]:
    """(python of a fresh venv with Colab's packages, the course's wheel)."""
    where = tmp_path_factory.mktemp("colab")
    # Built from a copy of what the wheel is made of: setuptools leaves build/ and *.egg-info
    # beside the sources, which must not appear in the checkout.
    source = where / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "metalearn_course", source / "metalearn_course", ignore=ignore)
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / part, source / part)
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        where / "dist",
        source,
    )
    (wheel,) = (where / "dist").glob("metalearn_course-*.whl")
    venv.create(where / "venv", with_pip=True)
    python = where / "venv" / "bin" / "python"
    run(python, "-m", "pip", "install", "-q", *COLAB_HAS)
    missing = run(  # from a folder without the repository's package beside it
        python,
        "-c",
        "import importlib.util as u; print(u.find_spec('metalearn_course'))",
        cwd=where,
    )
    assert missing.stdout.strip() == "None"  # the course is not there before the cell runs
    return python, wheel


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_after_its_install_cell_alone(colab, name, tmp_path):
    python, wheel = colab
    # The Colab edition, as `make book` writes it (tools/colab_edition.py), not the source
    edition_path = tmp_path / "edition.ipynb"
    edition_path.write_text(json.dumps(edition(Book.load(ROOT), ROOT / name), indent=1))
    nb = nbformat.read(edition_path, as_version=4)
    assert "Colab edition" in nb.cells[0].source, f"{name}: not its Colab edition"
    (install,) = [c for c in nb.cells if 'find_spec("metalearn_course")' in c.source]
    assert REPOSITORY in install.source, f"{name}: the install cell no longer installs {REPOSITORY}"
    install.source = install.source.replace(REPOSITORY, str(wheel))
    source = tmp_path / Path(name).name
    nbformat.write(nb, source)
    quick = nb.metadata["metalearn"]["quick"]
    parameters = tmp_path / "parameters.json"
    parameters.write_text(json.dumps(quick))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env["PATH"] = f"{python.parent}{os.pathsep}{env['PATH']}"
    env["METALEARN_STRICT"] = "0"  # quick parameters: a learner's run, compared and explained
    run(
        python,
        "-m",
        "papermill",
        source,
        tmp_path / "out.ipynb",
        "-f",
        parameters,
        "--cwd",
        tmp_path,
        "-k",
        "python3",
        "--no-progress-bar",
        env=env,
        cwd=tmp_path,
    )
    pip_list = run(python, "-m", "pip", "list", "--format=json").stdout
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(pip_list)}
    assert "metalearn-course" in installed
    assert not installed & {"jupyter-book", "nbval", "pytest"}  # no development tool came along
