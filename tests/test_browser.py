"""The published book, as a reader's browser sees it.

Serves ``_build/html`` on 127.0.0.1, opens every page listed in ``_toc.yml`` in headless Chromium
(Debian's package, driven by Playwright through its executable path: no browser download) and
checks: HTTP 200, no JavaScript errors, every formula typeset by the locally served MathJax, every
image loaded, no broken internal link or anchor, and no request leaving the machine.
A screenshot of a chapter page is saved to ``test-artifacts/``.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest
from notebooks import ROOT, toc_files

pytestmark = pytest.mark.browser

SITE = ROOT / "_build" / "html"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, Chromium phones home at start; the closed network refuses it noisily.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def toc_pages() -> list[str]:
    """HTML paths (relative to the site root) of every page in _toc.yml."""
    return [f"{f}.html" for f in toc_files()]


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


@functools.cache
def anchors_of(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


@pytest.fixture(scope="module")
def site_url():
    if not (SITE / "index.html").exists():
        pytest.fail("_build/html is missing: build the book first (`make book`)")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(SITE))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("Debian's chromium is not installed: run `make setup` (tools/setup_env.sh)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def test_every_toc_page_is_listed_and_built():
    pages = toc_pages()
    assert len(pages) >= 4, pages
    missing = [p for p in pages if not (SITE / p).exists()]
    assert not missing, f"pages of _toc.yml missing from _build/html: {missing}"


@pytest.mark.parametrize("page_path", toc_pages())
def test_page_renders(browser, site_url, page_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    outside: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def only_local(route):
        if route.request.url.startswith(site_url) or route.request.url.startswith("data:"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)

    response = page.goto(site_url + page_path, wait_until="load")
    assert response is not None and response.status == 200, f"{page_path}: {response}"

    # MathJax (served from _static/mathjax) typesets asynchronously: wait for it to finish.
    n_math = page.locator(".math").count()
    if n_math:
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
        page.evaluate("() => MathJax.startup.promise")
        untypeset = page.evaluate(
            """() => [...document.querySelectorAll('.math')]
                   .filter(el => !el.querySelector('mjx-container')).length"""
        )
        assert untypeset == 0, f"{page_path}: {untypeset} of {n_math} formulas not typeset"
    raw = page.evaluate(
        """() => { const main = document.querySelector('main') || document.body;
                   const clone = main.cloneNode(true);
                   clone.querySelectorAll('pre, code, script, style').forEach(e => e.remove());
                   return clone.innerText.includes('$$'); }"""
    )
    assert not raw, f"{page_path}: raw $$ math left in the page"

    page.wait_for_load_state("networkidle")
    broken_images = page.evaluate(
        """() => [...document.images].filter(i => !(i.complete && i.naturalWidth > 0))
                   .map(i => i.getAttribute('src'))"""
    )
    assert not broken_images, f"{page_path}: images not loaded: {broken_images}"
    missing_alt = page.evaluate(
        "() => [...document.querySelectorAll('main img')].filter(i => !i.alt).length"
    )
    assert missing_alt == 0, f"{page_path}: {missing_alt} images without alt text"

    # Internal links: the target file exists and, if there is a fragment, so does the anchor.
    hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
    broken = []
    for href in hrefs:
        url, fragment = urldefrag(href)
        if not url.startswith(site_url):
            continue
        target = SITE / unquote(urlparse(url).path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.exists():
            broken.append(href)
        elif fragment and target.suffix == ".html" and fragment not in anchors_of(target):
            broken.append(href)
    assert not broken, f"{page_path}: broken internal links: {sorted(set(broken))}"

    assert not errors, f"{page_path}: JavaScript errors: {errors}"
    assert not outside, f"{page_path}: requests leaving the machine: {outside}"

    if "baselines" in page_path:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "chapter1-baselines.png"), full_page=True)
    context.close()


def test_search_page_loads(browser, site_url):
    page = browser.new_page()
    response = page.goto(urljoin(site_url, "search.html?q=episode"))
    assert response is not None and response.status == 200
    page.close()
