"""Results next to the published numbers, and recorded for the book's other pages.

A chapter notebook ends with its numbers beside the papers' (`results_table`), and records
them with `glue` so that a summary page of the book can quote them without retyping: a number
the book states is then always the one the notebook computed (and asserted).

`glue` speaks the protocol of MyST-NB's ``myst_nb.glue`` (a display output whose metadata names
the value), so the book's markdown pages paste it with ``{glue:text}`notebook.ipynb::name:s```,
while the notebooks themselves need only IPython, which every Jupyter kernel has.
"""

from __future__ import annotations

from collections.abc import Mapping

from metalearn_course.evaluate import Accuracy


def glue(name: str, text: str) -> None:
    """Show `text` as this cell's output and record it under `name` for the book's pages."""
    from IPython.display import display  # only notebooks glue; the library needs no IPython

    if not name.replace("_", "").isalnum():
        raise ValueError(f"name={name!r}; use letters, digits and underscores only")
    # "scrapbook" metadata with an empty mime prefix: what myst_nb.glue(name, text) writes
    # when the value is displayed, minus the quotes that repr() would add around a string.
    metadata = {"scrapbook": {"name": name, "mime_prefix": ""}}
    display({"text/plain": text}, raw=True, metadata=metadata)


def percent(accuracy: Accuracy, digits: int = 1) -> str:
    """'98.1 ± 0.3': an accuracy and its 95% CI half-width in percent."""
    return f"{100 * accuracy.mean:.{digits}f} ± {100 * accuracy.ci95:.{digits}f}"


def results_table(
    ours: Mapping[str, Accuracy],
    published: Mapping[str, float] | None = None,
    label: str = "published",
) -> str:
    """A plain-text table: one row per setting, our accuracy ± CI (%) and the published one.

    ours: setting -> Accuracy, e.g. {"5-way 1-shot": few_shot(...)}.
    published: setting -> accuracy in percent as the paper prints it (missing: "–").
    """
    published = published or {}
    unknown = set(published) - set(ours)
    if unknown:
        raise ValueError(
            f"published has settings {sorted(unknown)} that ours lacks; use the same keys"
        )
    width = max(len("setting"), *(len(s) for s in ours))
    lines = [f"{'setting':<{width}} | {'ours (%)':>13} | {label:>9}"]
    lines.append("-" * len(lines[0]))
    for setting, accuracy in ours.items():
        paper = published.get(setting)
        shown = "–" if paper is None else f"{paper:.1f}"
        lines.append(f"{setting:<{width}} | {percent(accuracy, 2):>13} | {shown:>9}")
    return "\n".join(lines)
