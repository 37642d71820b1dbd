"""The repository's own consistency: install files agree, notebooks follow the course layout."""

from __future__ import annotations

import copy
import json
import re
import sys

import nbformat
import pytest
import tomllib
import yaml
from notebooks import ROOT, all_notebooks, book_notebooks, toc_files

from metalearn_course import cli
from metalearn_course.report import GLUE_PREFIX

sys.path.insert(0, str(ROOT / "tools"))
from install_cell import install_cell_source  # tools/ is not a package

# conda-forge names of the runtime dependencies whose PyPI name differs.
CONDA_NAME = {"torch": "pytorch-cpu"}


def split_req(req: str) -> tuple[str, str]:
    name = re.match(r"[A-Za-z0-9_.\-]+", req).group(0)
    return name.lower(), req[len(name) :].replace(" ", "")


def test_environment_yml_agrees_with_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(split_req(d) for d in env["dependencies"] if isinstance(d, str))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pip_reqs = dict(split_req(r) for r in pip if not r.startswith("-"))

    for req in project["dependencies"]:
        name, spec = split_req(req)
        conda_name = CONDA_NAME.get(name, name)
        assert conda_name in conda, f"runtime dependency {name} missing from environment.yml"
        assert conda[conda_name] == spec, f"{name}: {spec!r} != {conda[conda_name]!r}"
    for req in project["optional-dependencies"]["dev"]:
        name, spec = split_req(req)
        assert pip_reqs.get(name) == spec, f"dev tool {req!r} differs in environment.yml pip list"
    assert set(pip_reqs) == {split_req(r)[0] for r in project["optional-dependencies"]["dev"]}
    assert "-e ." in pip, "environment.yml must install the course package itself"


def test_toc_pages_exist():
    for f in toc_files():
        assert (ROOT / f"{f}.md").exists() or (ROOT / f"{f}.ipynb").exists(), f


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


@pytest.mark.parametrize("path", all_notebooks(), ids=lambda p: p.name)
def test_notebook_layout(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    # 1. the install cell: the same three lines everywhere, from _config.yml's repository.url
    # (tools/install_cell.py --write brings every notebook in step after a change).
    first = "".join(code[0]["source"])
    assert first == install_cell_source(), f"{path.name}: run python tools/install_cell.py --write"
    assert len([line for line in first.splitlines() if line.strip()]) <= 3
    assert f"git+{repository_url()}" in first
    # 2. the papermill parameters cell comes right after it.
    assert "parameters" in code[1]["metadata"].get("tags", []), f"{path.name}: parameters cell"
    # 3. every code cell ran, in order, so the stored outputs are a real top-to-bottom run.
    counts = [c["execution_count"] for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: not executed top to bottom"
    # 4. stored outputs as a learner should meet them: each progress bar only its final line
    # (make refresh keeps one output per stream, carriage returns resolved), glued values
    # recorded for the book's pages without being shown, no switch that turns checks off.
    stored = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    for number, cell in enumerate(stored, start=1):
        outputs = cell.get("outputs", [])
        kept = cli.final_lines(copy.deepcopy(outputs))
        assert kept == outputs, f"{path.name}, code cell {number}: run make refresh NB={path}"
        for output in outputs:
            glued = output.get("metadata", {}).get("scrapbook")
            if glued:
                assert glued["mime_prefix"] == GLUE_PREFIX, f"{path.name}: {glued['name']} shown"
    assert "CHECK_RESULTS" not in "".join("".join(c["source"]) for c in code), path.name


# A colour given by name in a notebook: greys, black and white are safe for every reader, and
# "C0", "C1", ... are the course palette under plt.style.use(STYLE); anything else bypasses it.
GIVEN_COLOUR = re.compile(r"""\b(?:colou?r|[a-z]*colors?|c)\s*=\s*["']([^"']+)["']""")
NEUTRAL = re.compile(r"(black|white|gr[ae]y|k|w|none|C\d|0?\.\d+)")


@pytest.mark.parametrize("path", book_notebooks(), ids=lambda p: p.name)
def test_figures_use_the_course_palette(path):
    code = "\n".join(
        "".join(c["source"])
        for c in json.loads(path.read_text())["cells"]
        if c["cell_type"] == "code"
    )
    if "import matplotlib.pyplot as plt" not in code:
        return
    assert "plt.style.use(STYLE)" in code, f"{path.name}: figures without the course style"
    odd = [c for c in GIVEN_COLOUR.findall(code) if not NEUTRAL.fullmatch(c)]
    assert not odd, f"{path.name}: colours outside metalearn_course.plots.PALETTE: {odd}"


def test_bibliography_keys_resolve():
    bib = (ROOT / "book" / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    sources = [p.read_text() for p in ROOT.glob("book/**/*.md")]
    sources += [p.read_text() for p in book_notebooks()]
    cited = {
        k.strip()
        for s in sources
        for group in re.findall(r"\{cite[pt]?\}`([^`]+)`", s)
        for k in group.split(",")
    }
    assert cited, "the book cites nothing"
    assert cited <= keys, f"cited but not in references.bib: {sorted(cited - keys)}"
    for entry in re.findall(r"@\w+\{[^@]+", bib):
        has_id = "eprint" in entry or "doi" in entry or "url" in entry
        assert has_id, f"no arXiv id, DOI or URL: {entry[:60]}"
