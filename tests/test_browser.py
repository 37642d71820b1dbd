"""The published book, as a reader's browser sees it.

Serves ``_build/html`` on 127.0.0.1, opens every page listed in ``_toc.yml`` in headless Chromium
(Debian's package, driven by Playwright through its executable path: no browser download) and
checks: HTTP 200, a title and one top-level heading, no JavaScript errors, every formula typeset by
the locally served MathJax, every image loaded and described (alt text), no broken internal link
or anchor, no request leaving the machine, and a page weight (HTML and its images) under
MAX_PAGE_BYTES. The search page must find the book's pages, and at a phone's width the sidebar
must fold behind its toggle. Screenshots (a chapter page, the phone layout) are saved to
``test-artifacts/``.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

import pytest
from helpers import CHROMIUM_ARGS, chromium
from notebooks import ROOT, toc_files

pytestmark = pytest.mark.browser

SITE = ROOT / "_build" / "html"
BOOK_TITLE = "Learning to learn: a hands-on course on meta-learning"
MAX_PAGE_BYTES = 3 * 2**20  # a page and its images; the largest is about 0.4 MB
ARTIFACTS = ROOT / "test-artifacts"


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

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS)
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

    # A title of its own (not just the book's) and exactly one top-level heading, matching it.
    title = page.title()
    assert title.endswith(BOOK_TITLE), f"{page_path}: title {title!r}"
    headings = page.evaluate(
        """() => [...document.querySelectorAll('main h1')]
                   .filter(h => !h.closest('.onlyprint'))
                   .map(h => h.innerText.replace('#', '').trim())"""
    )
    assert len(headings) == 1 and headings[0], f"{page_path}: top-level headings {headings}"
    assert title.startswith(headings[0][:20]), f"{page_path}: title {title!r}, h1 {headings[0]!r}"
    assert page.locator("main h2").count() + page.locator("main p").count() > 0, page_path

    weight = page_weight(page_path)
    assert weight < MAX_PAGE_BYTES, f"{page_path}: {weight / 2**20:.1f} MB with its images"

    assert not errors, f"{page_path}: JavaScript errors: {errors}"
    assert not outside, f"{page_path}: requests leaving the machine: {outside}"

    if "baselines" in page_path:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "chapter1-baselines.png"), full_page=True)
    context.close()


def page_weight(page_path: str) -> int:
    """Bytes of a built page and of the local images it shows."""
    html = SITE / page_path
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', html.read_text(encoding="utf-8"))
    images = {(html.parent / unquote(s)).resolve() for s in sources if not s.startswith("data:")}
    return html.stat().st_size + sum(i.stat().st_size for i in images if i.is_file())


@pytest.mark.parametrize("query, expected", [("prototypical", "protonet"), ("episode", "episodes")])
def test_search_finds_the_pages(browser, site_url, query, expected):
    page = browser.new_page()
    response = page.goto(urljoin(site_url, f"search.html?q={query}"))
    assert response is not None and response.status == 200
    # Sphinx's search runs in the page, over searchindex.js, and adds its results one at a time
    # (5 ms apart): wait for its closing status line, not for the first result.
    page.wait_for_function(
        "() => /Search finished/.test(document.querySelector('#search-results')?.innerText)",
        timeout=30_000,
    )
    found = page.evaluate(
        "() => [...document.querySelectorAll('#search-results li a')].map(a => a.href)"
    )
    assert any(f"{expected}.html" in href for href in found), (query, found[:10])
    page.close()


def test_phone_width_folds_the_sidebar(browser, site_url):
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    page.goto(site_url + "book/02_metric/protonet.html", wait_until="load")
    toggle = page.locator("button.primary-toggle").filter(visible=True).first
    assert toggle.count() == 1, "no visible sidebar toggle at a phone's width"
    sidebar = page.locator("#pst-primary-sidebar")
    assert not sidebar.is_visible() or sidebar.bounding_box()["x"] < 0, "sidebar not folded"
    main_width = page.evaluate("() => document.querySelector('main').getBoundingClientRect().width")
    assert main_width <= 390, f"the text column is {main_width}px wide on a 390px screen"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "phone-protonet.png"))
    toggle.click()  # at this width the theme opens the navigation as a modal dialog
    menu = page.locator("#pst-primary-sidebar-modal")
    menu.wait_for(state="visible", timeout=5_000)
    assert menu.get_by_role("link", name="Prototypical").count() > 0, "no chapter links in menu"
    page.screenshot(path=str(ARTIFACTS / "phone-protonet-menu.png"))
    context.close()
