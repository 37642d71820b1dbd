"""Figures shared by the chapters: the course's style, an episode as a grid of images, accuracies.

Every figure is drawn on a fresh matplotlib ``Figure`` and returned, so a notebook can show it,
save it, or add to it. Importing this module changes no global matplotlib state; a notebook opts
in to the course's look with one line, ``plt.style.use(plots.STYLE)``.

Colours come from the palette of Okabe and Ito, which stays distinguishable under the common
forms of colour blindness (Wong 2011, "Points of view: Color blindness", Nature Methods 8, 441,
doi:10.1038/nmeth.1618). About one man in twelve has a red-green deficiency, so no figure may
carry its meaning in red against green; where it matters (right and wrong answers) a second cue,
a line style or a label, carries it too.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib import cycler
from matplotlib.figure import Figure

from .data.episodes import Episode
from .evaluate import Accuracy

# Okabe-Ito, reordered so that the first colours of a line plot are the most distinct ones.
PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#D55E00",  # vermillion
    "#CC79A7",  # reddish purple
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)
CORRECT, WRONG = PALETTE[0], PALETTE[3]  # blue and vermillion, not green and red

# The course's figure style, for ``plt.style.use``: the palette as the colour cycle (so "C0",
# "C1", ... and every default line use it), a perceptually uniform colour map that is readable
# in grey and by colour-blind readers, and less chart junk.
STYLE = {
    "axes.prop_cycle": cycler(color=PALETTE),
    "image.cmap": "viridis",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "figure.dpi": 100,
}


def _show(ax, image: torch.Tensor) -> None:
    # Omniglot is stored with ink = 1, so a reversed grey map draws dark ink on white paper.
    ax.imshow(image.detach().cpu().squeeze(0).numpy(), cmap="gray_r", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(True)  # a thin frame on all four sides, whatever the style hides


def show_episode(
    episode: Episode,
    predicted: torch.Tensor | None = None,
    queries_per_class: int = 3,
    class_names: Sequence[str] | None = None,
) -> Figure:
    """One row per class: its support images, then some of its queries.

    With ``predicted`` (one label per query) each query is framed in ``CORRECT`` (blue) when it
    is classified correctly and in dashed ``WRONG`` (vermillion), with the predicted label, when
    it is not: the dashes and the label say it without colour.
    """
    way, shot, n_q = episode.way, episode.shot, episode.queries
    shown = min(queries_per_class, n_q)
    fig, axes = plt.subplots(
        way, shot + shown, figsize=(1.1 * (shot + shown) + 1.2, 1.1 * way + 0.4), squeeze=False
    )
    for c in range(way):
        for k in range(shot):
            ax = axes[c, k]
            _show(ax, episode.support_x[c * shot + k])
            if c == 0:
                ax.set_title("support", fontsize=8)
        for j in range(shown):
            ax = axes[c, shot + j]
            q = c * n_q + j  # queries are ordered class by class
            _show(ax, episode.query_x[q])
            if c == 0:
                ax.set_title("query", fontsize=8)
            if predicted is not None:
                ok = int(predicted[q]) == int(episode.query_y[q])
                for spine in ax.spines.values():
                    spine.set_color(CORRECT if ok else WRONG)
                    spine.set_linewidth(3)
                    spine.set_capstyle("butt")  # square caps would fill the gaps of the dashes
                    spine.set_linestyle("-" if ok else (0, (2, 1)))
                if not ok:
                    ax.set_xlabel(f"→ {int(predicted[q])}", color=WRONG, fontsize=8)
        label = f"label {c}"
        if class_names is not None:
            label += "\n" + class_names[c].replace("/", "\n", 1)
        axes[c, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.tight_layout()
    return fig


def plot_accuracies(results: dict[str, dict[str, Accuracy]], title: str = "") -> Figure:
    """Grouped bars: ``results[setting][method]`` with 95% CI error bars, in percent."""
    settings = list(results)
    methods = list(dict.fromkeys(m for r in results.values() for m in r))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(1.6 * len(settings) + 2, 3.2))
    for i, method in enumerate(methods):
        xs = [s + (i - (len(methods) - 1) / 2) * width for s in range(len(settings))]
        accs = [results[s].get(method) for s in settings]
        ax.bar(
            xs,
            [100 * a.mean if a else 0 for a in accs],
            width,
            yerr=[100 * a.ci95 if a else 0 for a in accs],
            capsize=3,
            label=method,
            color=PALETTE[i % len(PALETTE)],
        )
    ax.set_xticks(range(len(settings)), settings)
    ax.set_ylabel("test accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(frameon=False, fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
