"""Drawing helpers for the book's diagrams, in the course's palette and style.

A diagram is drawn on one axes that fills its figure, in inches: ``canvas(7, 3)`` gives a
7 × 3 inch figure whose data coordinates run from (0, 0) at the lower left to (7, 3), so a box
of height 0.4 holds one line of 11-point text. At the book's page width (about 700 px) a 7-inch
figure is shown at about its natural size, 100 px per inch.

Colour never carries meaning alone (metalearn_course.plots): every coloured element also has a
label, and where two kinds of element differ by colour they differ by line style too (solid and
dashed edges and arrows).

Deterministic SVG: glyphs are written as paths (no font lookup in the browser, the same look
everywhere), the ids derived from matplotlib's hash use a fixed salt, and the date and the
creator's version and address are left out of the metadata, so re-running the script gives
byte-identical files (tests/test_diagrams.py checks it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch, Rectangle

from metalearn_course.plots import PALETTE, STYLE

BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, YELLOW, BLACK = PALETTE
GREY = "#666666"  # secondary text and neutral outlines
LIGHT_GREY = "#bbbbbb"
TINT = 0.13  # opacity of a box's fill: a light tint of its edge colour

FONT = 11  # points; the smallest text of a diagram is SMALL
SMALL = 10

# Written into every SVG instead of matplotlib's default (its version and web address).
METADATA = {
    "Date": None,
    "Creator": "tools/diagrams (matplotlib)",
    "Type": None,  # matplotlib would write the DCMI type as a web address
    "Format": None,
}

RC = {
    "svg.fonttype": "path",
    "svg.hashsalt": "metalearn-course-diagrams",
    "font.family": "DejaVu Sans",  # shipped with matplotlib: the same glyphs on every machine
    "mathtext.fontset": "dejavusans",
    "font.size": FONT,
    "axes.unicode_minus": True,
}


@contextmanager
def course_style() -> Iterator[None]:
    """The course's figure style (plots.STYLE) and the diagrams' settings, for one block."""
    with plt.style.context(STYLE), mpl.rc_context(RC):
        yield


def canvas(width: float, height: float) -> tuple[Figure, plt.Axes]:
    """A width × height inch figure with one axes, in inch coordinates, without axis lines."""
    fig = Figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


def text(ax, x, y, s, size=FONT, color=BLACK, ha="center", va="center", **kw):
    """A label centred at (x, y) by default."""
    return ax.text(x, y, s, fontsize=size, color=color, ha=ha, va=va, **kw)


def box(
    ax,
    x,
    y,
    w,
    h,
    label="",
    color=GREY,
    *,
    dashed=False,
    fill=True,
    size=FONT,
    weight="normal",
    lw=1.5,
    radius=0.06,
    textcolor=BLACK,
):
    """A rounded box centred at (x, y), edged in ``color`` and tinted with it, with a label.

    ``dashed`` draws the edge dashed: the second cue where two kinds of box differ by colour.
    """
    patch = FancyBboxPatch(
        (x - w / 2, y - h / 2),
        w,
        h,
        boxstyle=f"round,pad=0,rounding_size={radius}",
        edgecolor=color,
        facecolor=to_rgba(color, TINT) if fill else "white",
        linewidth=lw,
        linestyle=(0, (4, 2.5)) if dashed else "-",
    )
    ax.add_patch(patch)
    if label:
        text(ax, x, y, label, size=size, color=textcolor, weight=weight, linespacing=1.3)
    return patch


def tile(ax, x, y, s=0.3, color=GREY, label="", *, dashed=False, size=SMALL, textcolor=BLACK):
    """A small square standing for one image, centred at (x, y), with an optional label."""
    ax.add_patch(
        Rectangle(
            (x - s / 2, y - s / 2),
            s,
            s,
            edgecolor=color,
            facecolor=to_rgba(color, 0.22),
            linewidth=1.2,
            linestyle=(0, (3, 2)) if dashed else "-",
        )
    )
    if label:
        text(ax, x, y, label, size=size, color=textcolor)


def arrow(
    ax,
    start,
    end,
    color=BLACK,
    *,
    dashed=False,
    lw=1.4,
    rad=0.0,
    head=12,
    both=False,
    shrink=0.0,
):
    """An arrow from ``start`` to ``end`` (curved by ``rad``; dashed for a second kind)."""
    patch = FancyArrowPatch(
        start,
        end,
        arrowstyle="<|-|>" if both else "-|>",
        mutation_scale=head,
        color=color,
        linewidth=lw,
        linestyle=(0, (4, 2.5)) if dashed else "-",
        connectionstyle=f"arc3,rad={rad}",
        shrinkA=shrink,
        shrinkB=shrink,
        capstyle="butt",
        joinstyle="miter",
    )
    ax.add_patch(patch)
    return patch


def line(ax, xs, ys, color=BLACK, *, dashed=False, lw=1.4, dotted=False):
    """A plain polyline (no arrow head)."""
    style = (0, (1.5, 2)) if dotted else (0, (4, 2.5)) if dashed else "-"
    ax.plot(xs, ys, color=color, linewidth=lw, linestyle=style, solid_capstyle="butt")


def dot(ax, x, y, color=BLACK, size=7, marker="o", zorder=5):
    """A point of parameter space (filled marker)."""
    ax.plot([x], [y], marker=marker, markersize=size, color=color, zorder=zorder, linestyle="")


def save(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a deterministic SVG (or PNG, for a preview, by the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".svg":
        fig.savefig(path, format="svg", metadata=METADATA)
    else:
        fig.savefig(path, dpi=100)
    return path
