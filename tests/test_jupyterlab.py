"""The notebooks as a reader of `make lab` sees them: MyST rendered by jupyterlab-myst.

Starts one JupyterLab server from the project's environment (the interpreter running the tests:
`.venv`) on a free port of 127.0.0.1, with private config, data, runtime, settings and workspace
folders, no token, no news or update checks. Headless Chromium (Debian's package, driven by
Playwright as in test_browser.py) opens a few of the book's notebooks and checks the rendered
markdown cells: every cell rendered by jupyterlab-myst, no raw role (`{cite}`...) or directive
fence (```{...) left as text, every formula typeset, and every solution folded: a sentence of a
solution is hidden until its "Solution to ..." toggle is clicked, and visible after.

The notebooks are never written: JupyterLab's autosave is off, and any request that would
change a file (jupyterlab-myst marks a notebook dirty when it renders it) is refused by the
browser and fails the test; the files' bytes are compared before and after.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from helpers import CHROMIUM_ARGS, chromium
from notebooks import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import Page, Route

pytestmark = pytest.mark.browser

# One notebook of the foundations, the metric and the gradient-based chapters: between them
# every form of MyST the notebooks use (citations, links to pages, same-notebook references,
# glued numbers, exercises with folded solutions, images, inline and display math).
NOTEBOOKS = [
    "book/01_foundations/baselines.ipynb",
    "book/02_metric/protonet.ipynb",
    "book/03_gradient/reptile_omniglot.ipynb",
]
RAW_ROLE = re.compile(r"\{[a-z][a-z:-]*\}`")
RAW_DIRECTIVE = re.compile(r"(`{3,}|:{3,})\s*\{[a-z]")
RAW_MATH = re.compile(r"\$\$|\$[^$\s][^$\n]*\$")
SOLUTION_START = re.compile(r"^ {0,3}(`{3,}|:{3,})\{solution\}")
# What jupyterlab-myst may flag: a citation (the key is shown; the book's bibliography is a
# Sphinx extension that JupyterLab does not have).
ACCEPTED_WARNINGS = {"Citation Not Found"}
SERVER_START_S = 120
RENDER_S = 60

# JupyterLab's settings for the test, as a user's settings folder holds them: the whole notebook
# in the page (JupyterLab 4 otherwise keeps only the visible cells in the DOM), no autosave (a
# rendered notebook is marked dirty), no news or update notices (the network is closed).
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def solution_probe(notebook: Path) -> tuple[int, str]:
    """How many solutions the notebook has, and a few words of the first one's first line
    (the text before any markup), to look for on the page."""
    cells = json.loads(notebook.read_text())["cells"]
    lines = [
        line
        for cell in cells
        if cell["cell_type"] == "markdown"
        for line in "".join(cell["source"]).splitlines()
    ]
    starts = [i for i, line in enumerate(lines) if SOLUTION_START.match(line)]
    for start in starts:
        for line in lines[start + 1 :]:
            if not line.strip() or line.lstrip().startswith(":"):
                continue  # options and blank lines before the body
            words = re.split(r"[`$*\[{<_~(]", line.strip(), maxsplit=1)[0].split()
            if len(words) >= 3:
                return len(starts), " ".join(words[:6])
            break
    return len(starts), ""


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    jupyter = Path(sys.executable).parent / "jupyter"  # the project's environment (.venv)
    if not jupyter.exists():
        pytest.fail(f"no jupyter next to {sys.executable}: run `make setup`")
    home = tmp_path_factory.mktemp("jupyterlab")
    for plugin, values in SETTINGS.items():
        path = home / "settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    port = free_port()
    command = [
        str(jupyter),
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={ROOT}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        # JupyterLab saves a checkpoint of a notebook it opens: into the temporary folder, not
        # the repository's .ipynb_checkpoints/ (an absolute folder replaces the relative one)
        f"--FileCheckpoints.checkpoint_dir={home / 'checkpoints'}",
        # window.jupyterapp: the test opens each notebook with JupyterLab's own command (no
        # reload of the whole application per notebook)
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]
    if os.geteuid() == 0:  # containers and CI run as root, which Jupyter refuses by default
        command.append("--allow-root")
    log_path = home / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if server.poll() is not None:
                pytest.fail(f"jupyter lab exited ({server.returncode}):\n{log_path.read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/api/status", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"jupyter lab did not answer in {SERVER_START_S} s")
            time.sleep(0.25)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def page(lab_url: str) -> Iterator[Page]:
    """One browser page for the module; requests that would write a file are refused."""
    from playwright.sync_api import sync_playwright

    writes: list[str] = []

    def read_only(route: Route) -> None:
        request = route.request
        checkpoint = request.method == "POST" and "/checkpoints" in request.url
        if request.method in ("PUT", "PATCH", "DELETE", "POST") and not checkpoint:
            writes.append(f"{request.method} {request.url}")
            route.abort()
        else:
            route.continue_()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.route("**/api/contents/**", read_only)
        page.writes = writes  # type: ignore[attr-defined]
        page.goto(f"{lab_url}/lab?reset", wait_until="domcontentloaded")
        page.wait_for_function("() => window.jupyterapp", timeout=60_000)
        page.evaluate("() => window.jupyterapp.restored")  # a promise: the layout is ready
        yield page
        browser.close()
    assert not writes, f"the test tried to change files: {writes}"


# The rendered markdown of the notebook on show: `text` as a reader sees it (innerText: not
# what a closed <details> holds); `prose` all of it, folded solutions included, with code blocks
# removed and each code span as `CODE` (a role shown as code is not markup, but the body of a
# raw {role}`body`, which a Markdown renderer makes a code span, stays visible to RAW_ROLE),
# without the TeX source KaTeX keeps for screen readers; `fences`, code blocks whose language
# is a {directive} (how plain Markdown shows a ```{directive}); cell and formula counts.
RENDERED = """(root) => {
  const cells = [...root.querySelectorAll('.jp-MarkdownCell')];
  const rendered = cells.map(c => c.querySelector('.jp-MarkdownOutput, .myst'))
                        .filter(r => r && r.offsetParent !== null);
  const text = rendered.map(r => r.innerText).join('\\n');
  const prose = rendered.map(r => {
    const clone = r.cloneNode(true);
    clone.querySelectorAll('pre, script, style, .katex-mathml').forEach(e => e.remove());
    clone.querySelectorAll('code').forEach(e => { e.textContent = '`CODE`'; });
    return clone.textContent;
  }).join('\\n');
  const count = (selector) => rendered.reduce((n, r) => n + r.querySelectorAll(selector).length, 0);
  return {
    cells: cells.length,
    rendered: rendered.length,
    text: text,
    prose: prose,
    warnings: rendered.flatMap(r => [...r.querySelectorAll('.text-yellow-600[title]')])
                      .map(e => e.title),
    fences: count('pre code[class*="{"]'),
    path_links: rendered.flatMap(r => [...r.querySelectorAll('a[href*="/files/"]')])
      .map(a => [a.textContent.trim(), decodeURIComponent(new URL(a.href).pathname)])
      .filter(([text, path]) => {
        const bare = (s) => s.replace(/^(\\.\\.?\\/)+/, '').replace(/\\.(ipynb|md)$/, '');
        return bare(text) && bare(path).endsWith(bare(text));
      }).map(([text]) => text),
    math: count('.katex'),
    math_errors: count('.katex-error'),
  };
}"""


# Open a notebook with JupyterLab's command, and close it without the "save your changes?"
# dialog (dispose: a notebook jupyterlab-myst has rendered counts as changed). JupyterLab starts
# the notebook's kernel (refusing it brings up a modal error dialog): it is shut down on close.
OPEN = """async (path) => {
  const widget = await window.jupyterapp.commands.execute('docmanager:open', {path});
  await widget.context.ready;
  return widget.id;
}"""
CLOSE = """async (id) => {
  for (const widget of window.jupyterapp.shell.widgets('main')) {
    if (widget.id === id) {
      await widget.sessionContext.shutdown();
      widget.dispose();
    }
  }
}"""


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda n: Path(n).stem)
def test_notebook_markup_renders_in_jupyterlab(page: Page, notebook: str) -> None:
    path = ROOT / notebook
    before = digest(path)
    n_markdown = sum(c["cell_type"] == "markdown" for c in json.loads(path.read_text())["cells"])
    n_solutions, probe = solution_probe(path)

    widget_id = page.evaluate(OPEN, notebook)
    panel = page.locator(f"[id='{widget_id}']")
    panel.locator(".jp-MarkdownCell").first.wait_for(timeout=60_000)
    # jupyterlab-myst renders each cell asynchronously, then again once it has read the whole
    # notebook (references between cells): poll until every markdown cell is rendered and the
    # text stays the same between two polls, or the time is up.
    deadline = time.monotonic() + RENDER_S
    previous = None
    while True:
        state = panel.evaluate(RENDERED)
        if state["rendered"] == n_markdown and state == previous:
            break
        if time.monotonic() > deadline:
            break  # the assertions below say what is missing
        previous = state
        page.wait_for_timeout(250)
    counts = {k: v for k, v in state.items() if isinstance(v, int)}
    assert state["rendered"] == n_markdown, f"{notebook}: {n_markdown} markdown cells, {counts}"
    text, prose = state["text"], state["prose"]
    assert not RAW_ROLE.findall(prose), f"{notebook}: raw roles {RAW_ROLE.findall(prose)[:5]}"
    raw_directives = [m.group(0) for m in RAW_DIRECTIVE.finditer(prose)]
    assert not raw_directives, f"{notebook}: raw directives {raw_directives[:5]}"
    assert state["fences"] == 0, f"{notebook}: {state['fences']} directives shown as code"
    # a link to another page shows its title, not its path ({doc} rendered by jupyterlab-myst)
    assert not state["path_links"], f"{notebook}: links showing a path {state['path_links'][:5]}"
    assert "Unknown Directive" not in text, f"{notebook}: a directive jupyterlab-myst lacks"
    # jupyterlab-myst flags what it cannot resolve or typeset (a yellow warning sign with the
    # reason as its title): only citations may be flagged, as JupyterLab has no bibliography
    problems = sorted(set(state["warnings"]) - ACCEPTED_WARNINGS)
    assert not problems, f"{notebook}: jupyterlab-myst warns: {problems[:5]}"
    # jupyterlab-myst typesets with KaTeX as it renders: formulas are there, none failed, and
    # no $...$ is left as text
    assert state["math"] > 0 and state["math_errors"] == 0, f"{notebook}: math {counts}"
    raw_math = RAW_MATH.findall(prose)
    assert not raw_math, f"{notebook}: formulas left as text {raw_math[:5]}"

    # Solutions: one folded block each, none open, and a sentence of the first is hidden until
    # its toggle is clicked.
    assert n_solutions and probe, f"{notebook}: no solution to look for"
    folded = panel.locator(".myst details:has(> summary:has-text('Solution'))")
    assert folded.count() == n_solutions, f"{notebook}: {folded.count()} of {n_solutions} folded"
    assert panel.locator("details[open]:has(> summary:has-text('Solution'))").count() == 0
    assert probe not in text, f"{notebook}: solution text {probe!r} shown"
    # in the rendered cell, not in the (hidden) editor that holds the cell's source
    sentence = panel.locator(".jp-MarkdownCell .myst").get_by_text(probe).first
    assert not sentence.is_visible(), f"{notebook}: solution text {probe!r} visible"
    block = folded.filter(has_text=probe).first
    block.locator("summary").first.click()
    sentence.wait_for(state="visible", timeout=5_000)

    page.evaluate(CLOSE, widget_id)
    assert digest(path) == before, f"{notebook} was changed on disk"
    assert not page.writes, f"{notebook}: write requests {page.writes}"  # type: ignore[attr-defined]
