"""One function per diagram of the book; ``DIAGRAMS`` maps each SVG's name to its function.

Each function returns a matplotlib Figure drawn with the helpers of ``draw``. What a diagram
says follows the concept page that shows it and the library (names, shapes and formulas of
metalearn_course); the docstring of each function names the page.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from matplotlib.figure import Figure

from tools.diagrams.draw import (
    BLACK,
    BLUE,
    FONT,
    GREEN,
    GREY,
    LIGHT_GREY,
    ORANGE,
    PURPLE,
    SMALL,
    VERMILLION,
    arrow,
    box,
    canvas,
    dot,
    line,
    text,
    tile,
)

CLASS_COLOURS = (BLUE, ORANGE, GREEN, VERMILLION, PURPLE)


def two_level_loop() -> Figure:
    """book/01_foundations/what_is_meta_learning.md: class-disjoint splits and the two loops."""
    fig, ax = canvas(7.4, 3.7)
    text(ax, 0.8, 3.5, "Omniglot classes,\nsplit by class", size=SMALL, weight="bold")
    # The classes, as one column cut into three disjoint parts, next to the loop that uses them.
    box(ax, 0.8, 2.3, 1.4, 1.45, "meta-training\n4,112 classes", BLUE, size=SMALL, radius=0.03)
    box(ax, 0.8, 1.25, 1.4, 0.5, "validation 688", GREY, size=SMALL, radius=0.03)
    box(
        ax,
        0.8,
        0.5,
        1.4,
        0.85,
        "meta-test\n1,692 classes",
        ORANGE,
        dashed=True,
        size=SMALL,
        radius=0.03,
    )
    # Meta-training: the two loops.
    y = 2.55
    box(
        ax,
        2.55,
        y,
        1.65,
        0.75,
        "sample a task $\\mathcal{T}_i$\n$\\mathcal{S}_i$ and $\\mathcal{Q}_i$",
        BLUE,
        size=SMALL,
    )
    box(
        ax,
        4.6,
        y,
        1.95,
        0.75,
        "inner loop\n$\\phi_i = \\mathcal{A}_\\omega(\\mathcal{S}_i)$",
        BLUE,
        size=SMALL,
    )
    box(
        ax,
        6.5,
        y,
        1.5,
        0.75,
        "query loss\n$\\mathcal{L}(\\phi_i;\\, \\mathcal{Q}_i)$",
        BLUE,
        size=SMALL,
    )
    arrow(ax, (1.52, y), (1.71, y), BLUE)
    arrow(ax, (3.39, y), (3.61, y))
    arrow(ax, (5.59, y), (5.74, y))
    arrow(ax, (6.5, y + 0.39), (2.55, y + 0.39), BLUE, rad=0.25, lw=1.8)
    text(
        ax,
        4.55,
        3.52,
        "outer loop: update the meta-parameters $\\omega$, over many episodes",
        size=SMALL,
        color=BLUE,
    )
    text(ax, 1.7, 1.93, "meta-training", size=SMALL, color=BLUE, ha="left", weight="bold")
    # Meta-test: the same inner loop, ω frozen, tasks of classes never seen in training.
    y = 0.5
    box(ax, 2.55, y, 1.65, 0.75, "sample a task\nof new classes", ORANGE, dashed=True, size=SMALL)
    box(
        ax,
        4.6,
        y,
        1.95,
        0.75,
        "$\\phi = \\mathcal{A}_{\\omega}(\\mathcal{S})$\n$\\omega$ frozen",
        ORANGE,
        dashed=True,
        size=SMALL,
    )
    box(
        ax,
        6.5,
        y,
        1.5,
        0.75,
        "accuracy on $\\mathcal{Q}$\n(600 episodes)",
        ORANGE,
        dashed=True,
        size=SMALL,
    )
    arrow(ax, (1.52, y), (1.71, y), ORANGE, dashed=True)
    arrow(ax, (3.39, y), (3.61, y), dashed=True)
    arrow(ax, (5.59, y), (5.74, y), dashed=True)
    arrow(ax, (4.6, 2.16), (4.6, 0.9), GREY, lw=1.2)
    text(ax, 4.7, 1.5, "meta-trained $\\omega$", size=SMALL, color=GREY, ha="left")
    text(ax, 1.7, 1.05, "meta-test", size=SMALL, color=ORANGE, ha="left", weight="bold")
    return fig


def episode() -> Figure:
    """book/01_foundations/what_is_meta_learning.md: an N-way K-shot episode (N=5, K=2, Q=3)."""
    way, shot, queries = 5, 2, 3
    fig, ax = canvas(7.2, 4.35)
    top, step = 3.4, 0.5
    names = [
        "Greek/character05/rot180",
        "Latin/character12/rot000",
        "Cyrillic/character29/rot090",
        "Korean/character07/rot270",
        "Tifinagh/character41/rot000",
    ]
    text(ax, 1.3, top + 0.55, "N = 5 classes drawn\nfrom the split", size=SMALL)
    text(ax, 3.53, top + 0.55, "support set\nN × K = 10 images", size=SMALL, weight="bold")
    text(ax, 5.37, top + 0.55, "query set\nN × Q = 15 images", size=SMALL, weight="bold")
    for c in range(way):
        y = top - c * step
        colour = CLASS_COLOURS[c]
        text(ax, 2.55, y, names[c], size=9, color=GREY, ha="right")
        arrow(ax, (2.6, y), (2.93, y), GREY, lw=1.0, head=9)
        text(ax, 3.03, y, f"{c}", size=FONT, weight="bold", ha="left")
        for k in range(shot):
            tile(ax, 3.5 + 0.38 * k, y, 0.32, colour, f"{c}", size=SMALL)
        for q in range(queries):
            tile(ax, 4.99 + 0.38 * q, y, 0.32, colour, "?", dashed=True, size=SMALL)
    line(ax, [4.5, 4.5], [top + 0.25, top - 4 * step - 0.25], GREY, dashed=True, lw=1.0)
    text(ax, 3.03, top + 0.28, "label", size=9, color=GREY, ha="left")
    bottom = top - 4 * step - 0.45
    text(
        ax,
        3.5,
        bottom - 0.05,
        "labels remapped to 0 … N−1 afresh in every episode (label i = the i-th class drawn)",
        size=SMALL,
    )
    text(
        ax,
        0.15,
        bottom - 0.42,
        "support_x [N·K, 1, 28, 28], support_y = [0, 0, 1, 1, …, 4, 4]:"
        " the learner sees these labels",
        size=SMALL,
        ha="left",
    )
    text(
        ax,
        0.15,
        bottom - 0.72,
        "query_x [N·Q, 1, 28, 28], query_y: hidden from the learner,"
        " used for the loss and the accuracy",
        size=SMALL,
        ha="left",
    )
    text(ax, 6.95, top + 0.55, "5-way\n2-shot\nQ = 3", size=SMALL, ha="right", color=GREY)
    return fig


def _panel(ax, x0, y0, w, h, title, subtitle=""):
    """A light frame with a title, for one part of a side-by-side diagram."""
    box(ax, x0 + w / 2, y0 + h / 2, w, h, color=LIGHT_GREY, fill=False, lw=1.0, radius=0.08)
    text(ax, x0 + 0.15, y0 + h - 0.22, title, size=FONT, weight="bold", ha="left")
    if subtitle:
        text(ax, x0 + 0.15, y0 + 0.2, subtitle, size=9, color=GREY, ha="left")


def metric_architectures() -> Figure:
    """book/02_metric/metric_learning.md: Siamese, Matching, Prototypical, Relation networks."""
    fig, ax = canvas(7.4, 5.7)
    w, h = 3.6, 2.75
    # Siamese (Koch et al. 2015): a pair, twin encoders, weighted L1 distance, sigmoid.
    x0, y0 = 0.05, 2.9
    _panel(ax, x0, y0, w, h, "Siamese", "loss: balanced binary cross-entropy on pairs")
    for y, name in ((y0 + 1.85, "$x_1$"), (y0 + 0.85, "$x_2$")):
        tile(ax, x0 + 0.35, y, 0.34, BLUE, name)
        box(ax, x0 + 0.95, y, 0.42, 0.42, "$f$", BLUE)
        arrow(ax, (x0 + 0.54, y), (x0 + 0.72, y))
        arrow(ax, (x0 + 1.18, y), (x0 + 1.55, y0 + 1.35 + (0.12 if y > y0 + 1.35 else -0.12)))
    text(ax, x0 + 0.95, y0 + 1.35, "shared\nweights", size=9, color=GREY)
    box(ax, x0 + 2.1, y0 + 1.35, 1.1, 0.62, "$|f(x_1) - f(x_2)|$\nweighted L1", BLUE, size=9)
    arrow(ax, (x0 + 2.1, y0 + 1.03), (x0 + 2.1, y0 + 0.78))
    text(ax, x0 + 2.0, y0 + 0.6, "p(same) = $\\sigma(\\alpha^\\top |f(x_1) - f(x_2)| + b)$", size=9)
    # Matching networks (Vinyals et al. 2016): cosine attention over every support image.
    x0, y0 = 3.75, 2.9
    _panel(ax, x0, y0, w, h, "Matching", "loss: $-\\log \\hat{y}_y$ (true label)")
    for j, c in enumerate((0, 1, 2)):
        tile(ax, x0 + 0.35, y0 + 2.05 - 0.42 * j, 0.32, CLASS_COLOURS[c], f"{c}")
        arrow(
            ax, (x0 + 0.52, y0 + 2.05 - 0.42 * j), (x0 + 0.68, y0 + 2.05 - 0.42 * j), head=8, lw=1.1
        )
    arrow(ax, (x0 + 0.52, y0 + 0.72), (x0 + 0.68, y0 + 0.72), head=8, lw=1.1)
    box(ax, x0 + 0.9, y0 + 1.63, 0.42, 1.15, "$g$", ORANGE)
    tile(ax, x0 + 0.35, y0 + 0.72, 0.32, GREY, "$\\hat{x}$")
    box(ax, x0 + 0.9, y0 + 0.72, 0.42, 0.42, "$f$", ORANGE)
    arrow(ax, (x0 + 1.13, y0 + 1.63), (x0 + 1.45, y0 + 1.35))
    arrow(ax, (x0 + 1.13, y0 + 0.72), (x0 + 1.45, y0 + 1.05))
    box(
        ax,
        x0 + 2.35,
        y0 + 1.2,
        1.75,
        0.9,
        "attention over all $x_i$:\nsoftmax$_i$ of cosine\n$c(f(\\hat{x}), g(x_i))$",
        ORANGE,
        size=9,
    )
    text(ax, x0 + 2.35, y0 + 0.58, "$\\hat{y} = \\Sigma_i\\, a_i\\, y_i$ (one-hot $y_i$)", size=9.5)
    text(ax, x0 + 3.45, y0 + 2.45, "course: $f = g$", size=9, color=GREY, ha="right")
    # Prototypical networks (Snell et al. 2017): class means, squared Euclidean distance.
    x0, y0 = 0.05, 0.05
    _panel(ax, x0, y0, w, h, "Prototypical", "loss: cross-entropy")
    for c in range(2):
        for k in range(2):
            tile(ax, x0 + 0.3 + 0.36 * k, y0 + 1.95 - 0.55 * c, 0.3, CLASS_COLOURS[c], f"{c}")
    box(ax, x0 + 1.2, y0 + 1.67, 0.4, 0.95, "$f$", GREEN)
    for c in range(2):
        arrow(
            ax, (x0 + 0.84, y0 + 1.95 - 0.55 * c), (x0 + 0.99, y0 + 1.95 - 0.55 * c), head=8, lw=1.1
        )
    for c in range(2):
        arrow(ax, (x0 + 1.41, y0 + 1.95 - 0.55 * c), (x0 + 1.62, y0 + 1.95 - 0.55 * c))
        dot(ax, x0 + 1.75, y0 + 1.95 - 0.55 * c, CLASS_COLOURS[c], size=8, marker="D")
        text(ax, x0 + 1.95, y0 + 1.95 - 0.55 * c, f"$c_{c}$", size=FONT)
    text(ax, x0 + 2.75, y0 + 2.15, "class mean\n$c_k$ of $K$ shots", size=9)
    tile(ax, x0 + 0.48, y0 + 0.78, 0.3, GREY, "$\\hat{x}$")
    box(ax, x0 + 1.2, y0 + 0.78, 0.4, 0.4, "$f$", GREEN)
    arrow(ax, (x0 + 0.64, y0 + 0.78), (x0 + 0.99, y0 + 0.78))
    box(
        ax,
        x0 + 2.55,
        y0 + 0.82,
        1.7,
        0.62,
        "$-\\|f(\\hat{x}) - c_k\\|^2$\nsoftmax over $k$",
        GREEN,
        size=9.5,
    )
    arrow(ax, (x0 + 1.41, y0 + 0.8), (x0 + 1.69, y0 + 0.8))
    arrow(ax, (x0 + 1.85, y0 + 1.3), (x0 + 2.0, y0 + 1.14))
    # Relation networks (Sung et al. 2018): a learned comparison of concatenated feature maps.
    x0, y0 = 3.75, 0.05
    _panel(ax, x0, y0, w, h, "Relation", "loss: squared error to one-hot labels")
    for k in range(2):
        tile(ax, x0 + 0.3 + 0.36 * k, y0 + 1.9, 0.3, CLASS_COLOURS[0], "0")
    box(ax, x0 + 1.2, y0 + 1.9, 0.4, 0.4, "$f$", VERMILLION)
    arrow(ax, (x0 + 0.82, y0 + 1.9), (x0 + 0.99, y0 + 1.9))
    text(ax, x0 + 1.95, y0 + 2.17, "sum of\n$K$ maps", size=9)
    tile(ax, x0 + 0.48, y0 + 1.0, 0.3, GREY, "$\\hat{x}_j$")
    box(ax, x0 + 1.2, y0 + 1.0, 0.4, 0.4, "$f$", VERMILLION)
    arrow(ax, (x0 + 0.64, y0 + 1.0), (x0 + 0.99, y0 + 1.0))
    box(ax, x0 + 2.0, y0 + 1.45, 0.55, 1.05, "concat\n$\\mathcal{C}$", VERMILLION, size=9)
    arrow(ax, (x0 + 1.41, y0 + 1.9), (x0 + 1.71, y0 + 1.75))
    arrow(ax, (x0 + 1.41, y0 + 1.0), (x0 + 1.71, y0 + 1.15))
    box(ax, x0 + 3.05, y0 + 1.45, 0.85, 0.8, "$g$: CNN\n+ sigmoid", VERMILLION, size=9)
    arrow(ax, (x0 + 2.29, y0 + 1.45), (x0 + 2.61, y0 + 1.45))
    text(ax, x0 + 2.45, y0 + 0.58, "relation score $r_{k,j} \\in [0, 1]$", size=9.5)
    return fig


# A fixed picture of parameter space shared by the MAML and Reptile diagrams.
_THETA = (1.9, 1.1)
_OPTIMA = ((0.75, 2.75), (3.5, 2.85), (3.75, 0.45))
_PATHS = (  # k = 3 inner steps from θ, each shorter than the last, towards the task's optimum
    ((1.9, 1.1), (1.45, 1.75), (1.2, 2.1), (1.06, 2.3)),
    ((1.9, 1.1), (2.5, 1.75), (2.8, 2.05), (2.98, 2.22)),
    ((1.9, 1.1), (2.6, 0.8), (2.95, 0.67), (3.17, 0.62)),
)


def _tasks(ax, paths=_PATHS, names=("$\\phi_1$", "$\\phi_2$", "$\\phi_3$"), contours=True):
    """θ, the optimum of each task's loss (a star, with contours), and the inner steps."""
    colours = (BLUE, ORANGE, GREEN)
    for (ox, oy), path, colour, name in zip(_OPTIMA, paths, colours, names, strict=True):
        if contours:
            for r in (0.28, 0.55):
                ax.add_patch(_ellipse(ox, oy, r, colour))
        dot(ax, ox, oy, colour, size=11, marker="*")
        xs, ys = zip(*path, strict=True)
        for a, b in itertools.pairwise(path):
            arrow(ax, a, b, colour, lw=1.4, head=11, dashed=True)
        dot(ax, xs[-1], ys[-1], colour, size=6)
        dx = -0.27 if xs[-1] < _THETA[0] else 0.27
        text(ax, xs[-1] + dx, ys[-1] - 0.13, name, size=FONT + 1, color=BLACK)
    dot(ax, *_THETA, BLACK, size=8)


def _ellipse(x, y, r, colour):
    from matplotlib.patches import Ellipse

    return Ellipse(
        (x, y),
        2.2 * r,
        1.4 * r,
        angle=20,
        fill=False,
        edgecolor=colour,
        linewidth=0.8,
        linestyle=(0, (1.5, 2)),
    )


def maml_init() -> Figure:
    """book/03_gradient/optimization_based.md: one θ, k inner steps to each φ_i, the meta-step."""
    fig, ax = canvas(7.4, 3.3)
    _tasks(ax)
    text(ax, _THETA[0] - 0.2, _THETA[1] - 0.15, "$\\theta$", size=FONT + 2)
    arrow(ax, _THETA, (2.02, 1.68), BLACK, lw=2.6, head=16)
    text(ax, 2.12, 1.52, "$\\theta'$", size=FONT + 1, ha="left")
    # The key, on the right: every mark of the picture with what it means.
    x = 4.55
    arrow(ax, (x, 2.9), (x + 0.5, 2.9), BLUE, dashed=True, lw=1.4, head=11)
    text(
        ax,
        x + 0.65,
        2.9,
        "inner loop, per task: $k$ steps\n"
        "$\\phi \\leftarrow \\phi - \\alpha \\nabla \\mathcal{L}_{\\mathcal{S}_i}(\\phi)$",
        size=SMALL,
        ha="left",
    )
    dot(ax, x + 0.25, 2.2, ORANGE, size=11, marker="*")
    text(ax, x + 0.65, 2.2, "optimum of task $i$'s loss", size=SMALL, ha="left")
    arrow(ax, (x, 1.45), (x + 0.5, 1.45), BLACK, lw=2.6, head=16)
    text(
        ax,
        x + 0.65,
        1.45,
        "outer loop: meta-gradient step\n"
        "$\\theta \\leftarrow \\theta - \\beta \\nabla_\\theta \\Sigma_i\\, "
        "\\mathcal{L}_{\\mathcal{Q}_i}(\\phi_i)$",
        size=SMALL,
        ha="left",
    )
    text(
        ax,
        x,
        0.55,
        "$\\theta$ is chosen to be good after $k$ steps,\nnot to be good on every task as it is",
        size=SMALL,
        ha="left",
        color=GREY,
    )
    return fig


def maml_graph() -> Figure:
    """book/03_gradient/optimization_based.md: second-order MAML against first-order MAML."""
    fig, ax = canvas(7.4, 4.05)
    arrow(ax, (1.6, 3.88), (2.1, 3.88))
    text(ax, 2.2, 3.88, "forward", size=SMALL, ha="left")
    arrow(ax, (3.4, 3.88), (3.9, 3.88), VERMILLION, dashed=True, lw=1.6)
    text(ax, 4.0, 3.88, "backward (the meta-gradient)", size=SMALL, ha="left")
    for x0, first_order in ((0.05, False), (3.75, True)):
        title = "first-order MAML (FOMAML)" if first_order else "second-order MAML"
        _panel(ax, x0, 0.05, 3.6, 3.65, title)
        yt, yp, yq = 2.75, 1.75, 0.85
        box(ax, x0 + 0.4, yt, 0.45, 0.42, "$\\theta$", BLACK, fill=False)
        box(
            ax,
            x0 + 1.35,
            yt,
            0.95,
            0.45,
            "$\\mathcal{L}_{\\mathcal{S}}(\\theta)$",
            GREY,
            size=SMALL,
        )
        grad_label = (
            "$g$, a constant\n(detached copy)"
            if first_order
            else "$g = \\nabla_\\theta \\mathcal{L}_{\\mathcal{S}}$\n(graph recorded)"
        )
        box(ax, x0 + 2.75, yt, 1.4, 0.62, grad_label, GREY, size=9, dashed=first_order)
        box(ax, x0 + 2.75, yp, 1.2, 0.45, "$\\phi = \\theta - \\alpha g$", GREY, size=SMALL)
        box(ax, x0 + 2.75, yq, 1.2, 0.45, "$\\mathcal{L}_{\\mathcal{Q}}(\\phi)$", GREY, size=SMALL)
        # forward: solid black, above or left of the nodes
        arrow(ax, (x0 + 0.63, yt + 0.08), (x0 + 0.87, yt + 0.08))
        arrow(ax, (x0 + 1.83, yt + 0.08), (x0 + 2.04, yt + 0.08))
        arrow(ax, (x0 + 2.6, yt - 0.31), (x0 + 2.6, yp + 0.23))
        arrow(ax, (x0 + 2.6, yp - 0.23), (x0 + 2.6, yq + 0.23))
        arrow(ax, (x0 + 0.32, yt - 0.21), (x0 + 2.14, yp), rad=0.25)
        # backward: dashed vermillion, below or right of the nodes
        back = dict(color=VERMILLION, dashed=True, lw=1.6)
        arrow(ax, (x0 + 2.95, yq + 0.23), (x0 + 2.95, yp - 0.23), **back)
        arrow(ax, (x0 + 2.14, yp - 0.12), (x0 + 0.5, yt - 0.21), rad=-0.25, **back)
        text(ax, x0 + 1.05, 1.55, "$I$", size=FONT, color=VERMILLION)
        if first_order:
            text(
                ax, x0 + 2.72, 2.21, "no backward\nthrough $g$", size=9, color=VERMILLION, ha="left"
            )
            formula = "$\\nabla_\\theta \\approx \\nabla_\\phi \\mathcal{L}_{\\mathcal{Q}}(\\phi)$"
            memory = "memory constant in $k$"
        else:
            arrow(ax, (x0 + 2.95, yp + 0.23), (x0 + 2.95, yt - 0.31), **back)
            arrow(ax, (x0 + 2.04, yt - 0.1), (x0 + 1.83, yt - 0.1), **back)
            arrow(ax, (x0 + 0.87, yt - 0.1), (x0 + 0.63, yt - 0.1), **back)
            text(
                ax,
                x0 + 1.35,
                yt + 0.38,
                "$-\\alpha H$, $H = \\nabla^2 \\mathcal{L}_{\\mathcal{S}}$",
                size=9,
                color=VERMILLION,
            )
            formula = (
                "$\\nabla_\\theta = (I - \\alpha H)\\, "
                "\\nabla_\\phi \\mathcal{L}_{\\mathcal{Q}}(\\phi)$"
            )
            memory = "memory grows with $k$"
        text(ax, x0 + 1.8, 0.5 - 0.05, formula, size=SMALL)
        text(ax, x0 + 1.8, 0.2, memory, size=9, color=GREY)
    return fig


def reptile_vs_maml() -> Figure:
    """book/03_gradient/optimization_based.md: Reptile's update against MAML's, one task."""
    fig, ax = canvas(7.4, 3.7)
    theta = (0.75, 0.95)
    path = ((0.75, 0.95), (1.55, 1.3), (1.95, 1.8), (2.1, 2.2))  # k = 3 inner steps
    for x0, reptile in ((0.05, False), (3.75, True)):
        _panel(ax, x0, 0.05, 3.6, 3.6, "Reptile" if reptile else "MAML")
        t = (x0 + theta[0], theta[1])
        pts = [(x0 + x, y) for x, y in path]
        ax.add_patch(_ellipse(x0 + 2.85, 2.75, 0.3, GREEN))
        dot(ax, x0 + 2.85, 2.75, GREEN, size=11, marker="*")
        for a, b in itertools.pairwise(pts):
            arrow(ax, a, b, GREEN, lw=1.4, head=11, dashed=True)
        dot(ax, *pts[-1], GREEN, size=6)
        dot(ax, *t, BLACK, size=8)
        text(ax, t[0] - 0.12, t[1] - 0.2, "$\\theta$", size=FONT + 2)
        if reptile:
            text(ax, pts[-1][0] - 0.05, pts[-1][1] + 0.25, "$\\tilde{\\phi}$", size=FONT + 2)
            text(
                ax,
                x0 + 1.75,
                1.15,
                "$k$ steps of SGD\nor Adam on the\ntask's data",
                size=9,
                ha="left",
                color=GREY,
            )
            line(ax, [t[0], pts[-1][0]], [t[1], pts[-1][1]], GREY, dotted=True, lw=1.2)
            eps = 0.35
            end = (t[0] + eps * (pts[-1][0] - t[0]), t[1] + eps * (pts[-1][1] - t[1]))
            arrow(
                ax,
                (t[0] + 0.06, t[1] - 0.06),
                (end[0] + 0.06, end[1] - 0.06),
                BLACK,
                lw=2.6,
                head=16,
            )
            text(
                ax,
                x0 + 1.8,
                0.75,
                "$\\theta \\leftarrow \\theta + \\epsilon\\, (\\tilde{\\phi} - \\theta)$",
                size=FONT,
            )
            text(
                ax, x0 + 1.8, 0.35, "no query loss, no derivative of the steps", size=9, color=GREY
            )
        else:
            text(ax, pts[-1][0] - 0.05, pts[-1][1] + 0.25, "$\\phi$", size=FONT + 2)
            text(
                ax,
                x0 + 1.75,
                1.15,
                "$k$ gradient steps\non the support set",
                size=9,
                ha="left",
                color=GREY,
            )
            q_end = (pts[-1][0] + 0.55, pts[-1][1] - 0.45)
            arrow(ax, pts[-1], q_end, VERMILLION, lw=1.8, head=12)
            text(
                ax,
                q_end[0] + 0.05,
                q_end[1] - 0.18,
                "$\\nabla_\\phi \\mathcal{L}_{\\mathcal{Q}}(\\phi)$",
                size=SMALL,
                color=VERMILLION,
            )
            back = [(x - 0.12, y + 0.12) for x, y in pts][::-1]
            for a, b in itertools.pairwise(back):
                arrow(ax, a, b, VERMILLION, lw=1.3, head=10, dashed=True)
            text(
                ax,
                x0 + 0.2,
                2.35,
                "carried back\nthrough each step:\n$\\times (I - \\alpha H^{(j)})$",
                size=9,
                color=VERMILLION,
                ha="left",
            )
            arrow(
                ax, (t[0] + 0.06, t[1] - 0.06), (t[0] + 0.48, t[1] - 0.04), BLACK, lw=2.6, head=16
            )
            text(
                ax,
                x0 + 1.8,
                0.75,
                "$\\theta \\leftarrow \\theta - \\beta\\, "
                "\\nabla_\\theta \\mathcal{L}_{\\mathcal{Q}}(\\phi)$",
                size=FONT,
            )
            text(ax, x0 + 1.8, 0.35, "the query-loss gradient at $\\phi$", size=9, color=GREY)
    return fig


def mann() -> Figure:
    """book/04_memory/memory_based.md: the label-offset sequence and one MANN step."""
    fig, ax = canvas(7.4, 5.9)
    # The sequence: x_t is shown with the label of the previous step, y_t is to be predicted.
    labels = (2, 0, 2, 1, 0, 1)
    top = 5.65
    text(
        ax,
        0.1,
        top,
        "an episode as a sequence: input$_t$ = [$f(x_t)$, onehot($y_{t-1}$)], predict $y_t$",
        size=FONT,
        ha="left",
        weight="bold",
    )
    text(ax, 0.1, top - 0.6, "input", size=SMALL, ha="left", color=GREY)
    text(ax, 0.1, top - 1.4, "target", size=SMALL, ha="left", color=GREY)
    for t, y in enumerate(labels):
        x = 1.05 + 1.05 * t
        text(ax, x + 0.1, top - 0.27, f"t = {t + 1}", size=9, color=GREY)
        tile(ax, x - 0.05, top - 0.6, 0.36, CLASS_COLOURS[y], f"$x_{t + 1}$", size=9)
        prev = "—" if t == 0 else f"{labels[t - 1]}"
        box(ax, x + 0.35, top - 0.6, 0.32, 0.36, prev, GREY, size=SMALL, radius=0.03)
        box(
            ax,
            x + 0.15,
            top - 1.4,
            0.4,
            0.36,
            f"{y}",
            CLASS_COLOURS[y],
            size=SMALL,
            radius=0.03,
            dashed=True,
        )
        if t + 1 < len(labels):
            arrow(ax, (x + 0.37, top - 1.25), (x + 1.35, top - 0.8), GREY, lw=1.0, head=9)
    text(
        ax,
        7.3,
        top - 1.75,
        "the label of step $t$ comes with step $t + 1$; labels 0 … N−1 reassigned every episode",
        size=9,
        color=GREY,
        ha="right",
    )
    # One step of the memory: write (LRUA) first, then read by content.
    text(ax, 0.1, 3.45, "one step $t$", size=FONT, ha="left", weight="bold")
    cy = 2.45
    box(ax, 1.0, cy, 1.2, 0.9, "controller\nLSTM $h_t$", BLUE)
    arrow(ax, (1.0, 1.55), (1.0, cy - 0.46))
    text(ax, 1.0, 1.4, "[$x_t$, onehot($y_{t-1}$), $r_{t-1}$]", size=9)
    arrow(ax, (1.61, cy + 0.2), (3.3, cy + 0.2))
    text(ax, 2.5, cy + 0.37, "key $k_t$: ① write, ② read", size=SMALL)
    rows, mtop, mx = 6, 3.15, 3.5
    for i in range(rows):
        kind = {1: (BLUE, False), 4: (ORANGE, True)}.get(i, (GREY, False))
        ax.add_patch(_slot(mx, mtop - 0.3 * i, kind[0], kind[1]))
    text(ax, mx + 0.6, mtop + 0.3, "memory $M_t$ (slots)", size=SMALL)
    text(ax, mx + 1.3, mtop - 0.3, "← last read $w^r_{t-1}$", size=9, ha="left", color=BLUE)
    text(
        ax,
        mx + 1.3,
        mtop - 1.2,
        "← least used $w^{lu}_{t-1}$ (cleared)",
        size=9,
        ha="left",
        color=ORANGE,
    )
    arrow(ax, (mx - 0.05, mtop - 1.55), (1.62, cy - 0.3), GREEN, rad=-0.15, dashed=True)
    text(ax, 2.75, 1.3, "② read vector $r_t$", size=SMALL, color=GREEN)
    lines = (
        "① write $k_t$ to the slot just read or to the least-used one:  "
        "$w^w_t = \\sigma(\\alpha)\\, w^r_{t-1} + (1 - \\sigma(\\alpha))\\, w^{lu}_{t-1}$",
        "② read by content:  $w^r_t(i) = \\mathrm{softmax}_i \\cos(k_t, M_t(i))$,  "
        "$r_t = \\Sigma_i\\, w^r_t(i)\\, M_t(i)$",
        "output: a linear layer on [$h_t$, $r_t$] gives $\\hat{y}_t$;  usage "
        "$w^u_t = \\gamma w^u_{t-1} + w^r_t + w^w_t$",
        'the course\'s MANN (write="bind") writes [$a_{t-1}$, onehot($y_{t-1}$)] instead of $k_t$',
    )
    for j, s in enumerate(lines):
        text(ax, 0.1, 1.0 - 0.28 * j, s, size=9, ha="left", color=GREY if j > 1 else BLACK)
    return fig


def _slot(x, y, colour, dashed):
    from matplotlib.patches import Rectangle

    return Rectangle(
        (x, y - 0.12),
        1.2,
        0.24,
        edgecolor=colour,
        linewidth=1.5 if colour != GREY else 1.0,
        facecolor="white",
        linestyle=(0, (3, 2)) if dashed else "-",
    )


def hypernetwork() -> Figure:
    """book/04_memory/memory_based.md: a generator maps the support set to the head's weights."""
    fig, ax = canvas(7.4, 3.6)
    for c in range(3):
        for k in range(2):
            tile(ax, 0.3 + 0.36 * k, 2.75 - 0.45 * c, 0.3, CLASS_COLOURS[c], f"{c}", size=9)
    text(ax, 0.48, 3.3, "support set", size=SMALL)
    box(ax, 1.25, 2.3, 0.42, 1.25, "$f$", BLUE)
    for c in range(3):
        arrow(ax, (0.84, 2.75 - 0.45 * c), (1.03, 2.75 - 0.45 * c), head=8, lw=1.1)
    box(ax, 2.35, 2.3, 1.3, 1.25, "class means\n$\\bar{z}_k$\nand their\nmean $c$", BLUE, size=9.5)
    arrow(ax, (1.47, 2.3), (1.69, 2.3))
    text(ax, 1.8, 3.25, "task encoder", size=SMALL, color=BLUE, weight="bold")
    box(
        ax,
        4.15,
        2.3,
        1.7,
        1.25,
        "generator $g_\\phi$\n$[\\bar{z}_k,\\; \\bar{z}_k - c]$\n$\\mapsto [\\Delta w_k, b_k]$",
        PURPLE,
        size=9.5,
    )
    arrow(ax, (3.01, 2.3), (3.29, 2.3))
    box(
        ax,
        6.3,
        2.3,
        1.75,
        1.25,
        "head of the task\n$w_k = \\phi_{avg} \\odot \\bar{z}_k"
        " + \\Delta w_k$\n$W$ [N, D], $b$ [N]",
        GREY,
        dashed=True,
        size=9,
    )
    arrow(ax, (5.01, 2.3), (5.42, 2.3))
    text(ax, 4.15, 3.25, "hypernetwork", size=SMALL, color=PURPLE, weight="bold")
    # Queries go through the same f, then the generated head.
    tile(ax, 0.48, 0.75, 0.3, GREY, "$x$", size=9)
    text(ax, 0.48, 1.12, "query", size=SMALL)
    box(ax, 1.25, 0.75, 0.42, 0.42, "$f$", BLUE)
    arrow(ax, (0.64, 0.75), (1.03, 0.75))
    arrow(ax, (1.47, 0.75), (5.2, 0.75))
    text(ax, 2.4, 0.92, "$f(x)$", size=SMALL)
    box(
        ax,
        6.3,
        0.75,
        1.75,
        0.8,
        "logit$_k$ = $s\\, \\cos(f(x), w_k) + b_k$\nsoftmax over $k$",
        GREY,
        size=9,
    )
    arrow(ax, (6.3, 1.67), (6.3, 1.16), GREY, dashed=True)
    text(
        ax,
        3.7,
        0.2,
        "meta-trained on episodes: $f$, $g_\\phi$, $\\phi_{avg}$, $s$;  "
        "made per episode in one forward pass: $W$, $b$ (dashed)",
        size=9,
        color=GREY,
    )
    return fig


def rl2_trial() -> Figure:
    """book/05_rl/meta_rl.md: an RL² trial, the GRU state carried across episodes."""
    fig, ax = canvas(7.4, 4.3)
    xs = [0.75 + 0.78 * i for i in range(6)] + [6.15, 6.9]
    y = 2.45
    # a trial of three episodes of two steps each; then the next trial begins
    for a, b, name in ((0, 1, "episode 1"), (2, 3, "episode 2"), (4, 5, "episode 3")):
        text(ax, (xs[a] + xs[b]) / 2, 3.4, name, size=SMALL)
        line(ax, [xs[a] - 0.3, xs[b] + 0.3], [3.22, 3.22], GREY, lw=1.0)
    for a in (2, 4):
        line(ax, [xs[a] - 0.39] * 2, [1.55, 3.5], GREY, dashed=True, lw=1.0)
    line(ax, [5.65] * 2, [1.3, 4.2], BLACK, lw=2.0)
    text(
        ax,
        2.7,
        3.95,
        "one trial: one task $M \\sim \\rho$, $n$ episodes of it",
        size=FONT,
        weight="bold",
    )
    text(ax, 6.52, 3.85, "next trial:\nnew task", size=SMALL, weight="bold")
    for i, x in enumerate(xs):
        step = i + 1 if i < 6 else i - 5
        box(ax, x, y, 0.5, 0.5, "GRU", BLUE, size=9)
        arrow(ax, (x, y - 0.72), (x, y - 0.26), lw=1.1, head=9)
        text(ax, x, y - 0.86, f"$x_{{{step}}}$", size=SMALL)
        arrow(ax, (x, y + 0.26), (x, y + 0.55), lw=1.1, head=9)
        text(ax, x, y + 0.68, f"$a_{{{step}}}$", size=SMALL)
        if i in (0, 6):
            text(ax, x - 0.3, y + 0.03, "$h_0 = 0$", size=9, ha="right", color=BLUE)
        else:
            arrow(ax, (xs[i - 1] + 0.26, y), (x - 0.26, y), BLUE, lw=2.2, head=12)
    for a in (2, 4):
        text(
            ax,
            xs[a] - 0.39,
            y - 0.25,
            "$h$ kept",
            size=9,
            color=BLUE,
            bbox=dict(facecolor="white", edgecolor="none", pad=0.5),
        )
    text(
        ax,
        0.1,
        1.0,
        "$x_t$ = (observation $s_t$, previous action $a_{t-1}$, reward "
        "$r_{t-1}$, done flag $d_{t-1}$);  $a_t \\sim \\pi_\\theta(\\cdot \\mid h_t)$",
        size=9.5,
        ha="left",
    )
    text(
        ax,
        0.1,
        0.6,
        "hidden state $h$ reset to 0 only between trials; the weights $\\theta$ "
        "are frozen after meta-training",
        size=9.5,
        ha="left",
    )
    text(
        ax,
        0.1,
        0.2,
        "course's bandits: each pull is a one-step episode, $x_t$ = (one-hot previous arm "
        "$e$, $r\\,e$, reward $r$, fraction of pulls left)",
        size=9,
        ha="left",
        color=GREY,
    )
    return fig


def transfer_vs_meta() -> Figure:
    """book/06_transfer/transfer_learning.md: pre-train then adapt, against meta-learning."""
    fig, ax = canvas(7.4, 3.7)
    text(ax, 0.1, 3.5, "transfer learning", size=FONT, weight="bold", color=BLUE, ha="left")
    y = 2.75
    box(
        ax,
        1.05,
        y,
        1.9,
        0.85,
        "source: 1,028\ntraining characters\n(one 1,028-way task)",
        BLUE,
        size=9,
    )
    box(
        ax,
        3.2,
        y,
        1.95,
        0.85,
        "pre-train $f_\\theta$ + head $W$\n$\\min\\, \\mathcal{L}_{source}(\\theta, W)$",
        BLUE,
        size=9,
    )
    box(
        ax,
        5.65,
        y,
        2.6,
        0.85,
        "drop $W$; on each target episode:\nnew head on the support set"
        "\n(probe, head, fine-tune, cosine)",
        BLUE,
        size=9,
    )
    arrow(ax, (2.01, y), (2.21, y))
    arrow(ax, (4.19, y), (4.34, y))
    text(ax, 3.7, 2.05, "the adaptation is never part of training", size=9, color=GREY)
    text(ax, 0.1, 1.7, "meta-learning", size=FONT, weight="bold", color=ORANGE, ha="left")
    y = 0.85
    box(
        ax,
        1.05,
        y,
        1.9,
        0.85,
        "many episodes\nfrom the same\ntraining classes",
        ORANGE,
        dashed=True,
        size=9,
    )
    box(
        ax,
        3.2,
        y,
        1.95,
        0.85,
        "adapt: $\\phi_i = \\mathcal{A}_\\omega(\\mathcal{S}_i)$\n"
        "loss on $\\mathcal{Q}_i$, update $\\omega$",
        ORANGE,
        dashed=True,
        size=9,
    )
    box(
        ax,
        5.65,
        y,
        2.6,
        0.85,
        "on each target episode:\nthe same adaptation $\\mathcal{A}_\\omega(\\mathcal{S})$",
        ORANGE,
        dashed=True,
        size=9,
    )
    arrow(ax, (2.01, y), (2.21, y), dashed=True)
    arrow(ax, (4.19, y), (4.34, y), dashed=True)
    arrow(ax, (3.9, y + 0.44), (2.5, y + 0.44), ORANGE, rad=0.6, lw=1.5)
    text(ax, 3.95, 1.62, "repeat over episodes", size=9, color=ORANGE, ha="left")
    text(
        ax,
        3.7,
        0.15,
        "trained through the adaptation, on tasks like the test tasks",
        size=9,
        color=GREY,
    )
    return fig


def icl_tokens() -> Figure:
    """book/08_incontext/in_context_learning.md: the prompt as tokens and what each may read."""
    fig, ax = canvas(7.4, 5.6)
    # Top: Garg et al.'s regression prompt, x-token [x, 0] and y-token [0_d, y], causal mask.
    text(
        ax,
        0.1,
        5.35,
        "in-context regression: the prompt as tokens, read with a causal mask",
        size=FONT,
        ha="left",
        weight="bold",
    )
    names = ("x_1", "y_1", "x_2", "y_2", "x_3", "y_3", "x_4", "y_4")
    xs = [0.7 + 0.86 * i for i in range(len(names))]
    row, query = 3.75, 4  # the token of x_3 is where the prediction of y_3 is read
    for i, (x, name) in enumerate(zip(xs, names, strict=True)):
        is_x = name.startswith("x")
        hidden = i > query
        colour = LIGHT_GREY if hidden else (BLUE if is_x else ORANGE)
        box(
            ax,
            x,
            row,
            0.62,
            0.42,
            f"${name}$",
            colour,
            dashed=not is_x,
            size=FONT,
            radius=0.04,
            textcolor=GREY if hidden else BLACK,
        )
        vector = f"[${name}$, 0]" if is_x else f"[$0_d$, ${name}$]"
        text(ax, x, row - 0.38, vector, size=9, color=GREY if hidden else BLACK)
    box(ax, xs[query], 4.75, 0.62, 0.38, "$\\hat{y}_3$", GREEN, size=FONT, radius=0.04)
    for i in range(query):
        arrow(ax, (xs[i], row + 0.23), (xs[query] - 0.2, 4.55), GREEN, lw=1.1, head=9, rad=-0.25)
    arrow(ax, (xs[query], row + 0.23), (xs[query], 4.55), GREEN, lw=1.1, head=9)
    text(
        ax,
        (xs[query + 1] + xs[-1]) / 2,
        4.35,
        "masked: not read by $\\hat{y}_3$",
        size=9,
        color=GREY,
    )
    text(
        ax,
        0.1,
        2.9,
        "$\\hat{y}_i$ is read at the token of $x_i$ and sees $x_1, y_1, \\dots, x_{i-1}, "
        "y_{i-1}, x_i$ only (token $t$ reads tokens $\\leq t$)",
        size=9.5,
        ha="left",
    )
    # Bottom: few-shot classification as a prompt (fewshot.py): labelled supports, then queries.
    text(
        ax,
        0.1,
        2.4,
        "in-context few-shot classification: 2-way 2-shot, 2 queries, no positions",
        size=FONT,
        ha="left",
        weight="bold",
    )
    trow = 1.2
    supports = [(0.75, 0), (1.75, 0), (2.75, 1), (3.75, 1)]
    for j, (x, label) in enumerate(supports):
        tile(ax, x - 0.19, trow, 0.34, CLASS_COLOURS[label], f"$x_{j + 1}$", size=9)
        box(ax, x + 0.2, trow, 0.38, 0.34, f"{label}", GREY, size=SMALL, radius=0.03)
        text(ax, x, trow - 0.35, f"$s_{j + 1}$", size=SMALL)
    queries = [(5.35, 0), (6.55, 1)]
    for m, (x, label) in enumerate(queries):
        tile(ax, x - 0.19, trow, 0.34, CLASS_COLOURS[label], f"$x'_{m + 1}$", size=9, dashed=True)
        box(ax, x + 0.2, trow, 0.38, 0.34, "?", GREY, size=SMALL, radius=0.03, dashed=True)
        text(ax, x, trow - 0.35, f"$q_{m + 1}$", size=SMALL)
    target = queries[0][0]
    for x, _ in supports:
        arrow(ax, (x, trow + 0.2), (target - 0.1, trow + 0.22), GREEN, lw=1.1, head=9, rad=-0.3)
    line(ax, [5.95, 5.95], [trow - 0.25, trow + 0.25], VERMILLION, dashed=True, lw=1.2)
    text(
        ax,
        0.1,
        0.5,
        "arrows: what $q_1$ reads, every support and itself;  dashed line: no query reads"
        " another query",
        size=9.5,
        ha="left",
    )
    text(
        ax,
        0.1,
        0.15,
        'support token $P f(x) + E[y]$, query token $P f(x) + e_?$ ("no label");'
        " logits $W h$ at each query",
        size=9.5,
        ha="left",
    )
    return fig


DIAGRAMS: dict[str, Callable[[], Figure]] = {
    "two_level_loop": two_level_loop,
    "episode": episode,
    "metric_architectures": metric_architectures,
    "maml_init": maml_init,
    "maml_graph": maml_graph,
    "reptile_vs_maml": reptile_vs_maml,
    "mann": mann,
    "hypernetwork": hypernetwork,
    "rl2_trial": rl2_trial,
    "transfer_vs_meta": transfer_vs_meta,
    "icl_tokens": icl_tokens,
}
