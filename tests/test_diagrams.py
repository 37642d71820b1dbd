"""The book's diagrams (tools/diagrams, issue 26): committed, up to date, shown, described, offline.

* Regenerating every diagram gives files byte-identical to the committed SVGs in
  book/_static/diagrams, so a drawing script changed without re-generated SVGs fails here
  (``python tools/diagrams`` rewrites them), and so does a stray SVG that no script draws.
* Every SVG is shown by a page of the book, in a MyST figure with alt text (a sentence, for
  screen readers), and every diagram a page shows exists.
* Every SVG is well-formed XML, loads nothing (no http:// or https:// other than the SVG and
  XML namespace names and the SVG 1.1 DTD identifier, which browsers never fetch; every href is
  an in-file reference), and uses only the course's palette, white, black and greys.

Fast: no book build; drawing the ten diagrams takes a few seconds.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from matplotlib.text import Text
from notebooks import ROOT

from metalearn_course.plots import PALETTE
from tools.diagrams.build import OUT, write_all
from tools.diagrams.draw import course_style
from tools.diagrams.figures import DIAGRAMS

BOOK = ROOT / "book"
SVGS = sorted(OUT.glob("*.svg"))
MIN_FONT = 9  # points: about 11 px when a 7.4-inch diagram is shown 660 px wide

# Identifiers that look like web addresses but are never fetched: namespace names and the DTD.
IDENTIFIERS = {
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/xlink",
    "http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd",
    "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "http://purl.org/dc/elements/1.1/",
    "http://creativecommons.org/ns#",
}
URL = re.compile(r"https?://[^\s\"'<>)]*")
COLOUR = re.compile(r"(?:fill|stroke|stop-color|color)\s*[:=]\s*\"?\s*(#?[0-9A-Za-z]+)")
FIGURE = re.compile(r"^([`:]{3,})\{figure\}\s+(\S+)\s*\n((?:[ \t]*:[\w-]+:.*\n)*)", re.M)


def test_there_are_at_least_ten_diagrams():
    assert len(DIAGRAMS) >= 10
    assert len(SVGS) >= 10, f"only {len(SVGS)} SVGs in {OUT}; run `python tools/diagrams`"


def test_committed_svgs_are_what_the_scripts_draw(tmp_path):
    committed = {p.stem for p in SVGS}
    assert committed == set(DIAGRAMS), (
        f"SVGs without a script: {sorted(committed - set(DIAGRAMS))}; "
        f"scripts without a committed SVG: {sorted(set(DIAGRAMS) - committed)}"
    )
    stale = [
        path.name
        for path in write_all(tmp_path)
        if path.read_bytes() != (OUT / path.name).read_bytes()
    ]
    assert not stale, (
        f"{stale} differ from what tools/diagrams draws now: run `python tools/diagrams` "
        "and commit the SVGs"
    )


@pytest.mark.parametrize("name", sorted(DIAGRAMS))
def test_text_is_large_enough_to_read(name):
    with course_style():
        fig = DIAGRAMS[name]()
        small = {
            t.get_text(): t.get_fontsize()
            for t in fig.findobj(Text)
            if t.get_text() and t.get_fontsize() < MIN_FONT
        }
    assert not small, f"{name}: text under {MIN_FONT} pt: {small}"


def figures_in_pages() -> dict[Path, list[tuple[Path, str, str]]]:
    """For each diagram file, the (page, options, alt text) of every figure that shows it."""
    shown: dict[Path, list[tuple[Path, str, str]]] = {}
    for page in sorted(BOOK.glob("**/*.md")):
        if "_build" in page.parts:
            continue
        for _fence, target, options in FIGURE.findall(page.read_text(encoding="utf-8")):
            if "diagrams/" not in target:
                continue
            alt = re.search(r"^[ \t]*:alt:[ \t]*(.*)$", options, re.M)
            path = (page.parent / target).resolve()
            shown.setdefault(path, []).append((page, options, alt.group(1).strip() if alt else ""))
    return shown


def test_every_diagram_is_shown_by_a_page_with_alt_text():
    shown = figures_in_pages()
    unused = [p.name for p in SVGS if p.resolve() not in shown]
    assert not unused, f"diagrams no page shows: {unused}"
    missing = [str(p) for p in shown if not p.is_file()]
    assert not missing, f"pages show diagrams that do not exist: {missing}"
    for path, uses in shown.items():
        for page, _options, alt in uses:
            where = f"{page.relative_to(ROOT)} ({path.name})"
            assert len(alt.split()) >= 8, f"{where}: the alt text is not a full description"
            assert alt[0].isupper() and alt.endswith("."), f"{where}: alt text is not a sentence"


@pytest.mark.parametrize("path", SVGS, ids=[p.name for p in SVGS])
def test_svg_is_well_formed_and_loads_nothing(path):
    text = path.read_text(encoding="utf-8")
    root = ET.fromstring(text)  # raises on malformed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.endswith("href"):
                assert value.startswith("#"), f"{path.name}: {name}={value!r} is not in the file"
            assert "url(" not in value or value.startswith("url(#"), f"{path.name}: {value!r}"
    urls = set(URL.findall(text)) - IDENTIFIERS
    assert not urls, f"{path.name} refers to {sorted(urls)}"


def _allowed(colour: str) -> bool:
    colour = colour.lower()
    if colour in ("none", "white", "black"):
        return True
    if re.fullmatch(r"#[0-9a-f]{3}", colour):
        colour = "#" + "".join(c * 2 for c in colour[1:])
    if not re.fullmatch(r"#[0-9a-f]{6}", colour):
        return False
    r, g, b = colour[1:3], colour[3:5], colour[5:7]
    return colour in {c.lower() for c in PALETTE} or r == g == b  # the palette, or a grey


@pytest.mark.parametrize("path", SVGS, ids=[p.name for p in SVGS])
def test_svg_uses_only_the_course_palette_and_greys(path):
    colours = set(COLOUR.findall(path.read_text(encoding="utf-8")))
    assert colours, f"{path.name}: no colour found (has the SVG writer changed?)"
    wrong = sorted(c for c in colours if not _allowed(c))
    assert not wrong, f"{path.name}: colours outside the palette and greys: {wrong}"
