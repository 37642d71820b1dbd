"""Results next to the published numbers, and recorded for the book's other pages.

A chapter notebook ends with its numbers beside the papers' (`results_table`), shown as a
`Table`: HTML in Jupyter and the book, with a text form that plain Python prints and nbval
compares. It records them with `glue` so that a summary page of the book can quote them without
retyping: a number the book states is then always the one the notebook computed (and checked).

`glue` speaks the protocol of MyST-NB's ``myst_nb.glue(name, value, display=False)``: a display
output whose metadata names the value and whose MIME types carry MyST-NB's prefix. The book's
markdown pages paste it with ``{glue:text}`notebook.ipynb::name:s```; the notebook's own page,
JupyterLab and Colab have no renderer for the prefixed types and show nothing, so a cell that
records 38 numbers does not print 38 bare values. The notebooks need only IPython, which every
Jupyter kernel has.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only annotations: the tables need no torch (checks.py uses them too)
    from metalearn_course.evaluate import Accuracy

# MyST-NB's prefix for a glued value that is recorded but not displayed (myst_nb.ext.glue)
GLUE_PREFIX = "application/papermill.record/"


def glue(name: str, text: str) -> None:
    """Record `text` under `name` for the book's pages, without showing it in the notebook."""
    from IPython.display import display  # only notebooks glue; the library needs no IPython

    if not name.replace("_", "").isalnum():
        raise ValueError(f"name={name!r}; use letters, digits and underscores only")
    # What myst_nb.glue(name, text, display=False) writes, minus the quotes that repr() would
    # add around a string: MyST-NB strips the prefix when a page pastes the value.
    metadata = {"scrapbook": {"name": name, "mime_prefix": GLUE_PREFIX}}
    display({GLUE_PREFIX + "text/plain": text}, raw=True, metadata=metadata)


class Table:
    """A small table of results: HTML in Jupyter (and the book), text in plain Python.

    Display it (the last expression of a cell, or ``display(table)``); ``print(table)`` gives
    the text form, which is also what Jupyter stores as text/plain next to the HTML. Columns
    after the first are right-aligned (numbers) unless left_aligned=True (text).

        Table(["setting", "ours (%)"], [["5-way 1-shot", "97.3 ± 0.3"]], title="ProtoNet")
    """

    def __init__(
        self,
        header: Sequence[str],
        rows: Sequence[Sequence[object]],
        *,
        title: str = "",
        notes: Sequence[str] = (),
        left_aligned: bool = False,
    ) -> None:
        self.header = [str(h) for h in header]
        self.rows = [[str(cell) for cell in row] for row in rows]
        for number, row in enumerate(self.rows):
            if len(row) != len(self.header):
                raise ValueError(
                    f"rows[{number}] has {len(row)} cells and the header {len(self.header)};"
                    " give every row one cell per column"
                )
        self.title, self.notes = title, [str(n) for n in notes]
        self.left_aligned = left_aligned  # every column; default: numbers right-aligned

    def __str__(self) -> str:
        table = [self.header, *self.rows]
        widths = [max(len(row[i]) for row in table) for i in range(len(self.header))]

        def line(row: list[str]) -> str:
            # first column left-aligned (names), the others right-aligned (numbers)
            right = not self.left_aligned
            rest = [
                c.rjust(w) if right else c.ljust(w)
                for c, w in zip(row[1:], widths[1:], strict=True)
            ]
            cells = [row[0].ljust(widths[0]), *rest]
            return " | ".join(cells).rstrip()

        lines = [self.title] if self.title else []
        lines += [line(self.header), "-+-".join("-" * w for w in widths)]
        lines += [line(row) for row in self.rows] + self.notes
        return "\n".join(lines)

    def __repr__(self) -> str:  # the text/plain form Jupyter stores next to the HTML
        return str(self)

    def _repr_html_(self) -> str:
        def cells(row: list[str], tag: str) -> str:
            return "".join(f"<{tag}>{html.escape(c)}</{tag}>" for c in row)

        title = f"<p><strong>{html.escape(self.title)}</strong></p>" if self.title else ""
        body = "".join(f"<tr>{cells(row, 'td')}</tr>" for row in self.rows)
        notes = "".join(f"<p>{html.escape(n)}</p>" for n in self.notes)
        return (
            f"{title}<table><thead><tr>{cells(self.header, 'th')}</tr></thead>"
            f"<tbody>{body}</tbody></table>{notes}"
        )


def percent(accuracy: Accuracy, digits: int = 1) -> str:
    """'98.1 ± 0.3': an accuracy and its 95% CI half-width in percent."""
    return f"{100 * accuracy.mean:.{digits}f} ± {100 * accuracy.ci95:.{digits}f}"


def results_table(
    ours: Mapping[str, Accuracy],
    published: Mapping[str, float] | None = None,
    label: str = "published",
) -> Table:
    """One row per setting: our accuracy ± CI (%) and the published one, as a `Table`.

    ours: setting -> Accuracy, e.g. {"5-way 1-shot": few_shot(...)}.
    published: setting -> accuracy in percent as the paper prints it (missing: "–").
    """
    published = published or {}
    unknown = set(published) - set(ours)
    if unknown:
        raise ValueError(
            f"published has settings {sorted(unknown)} that ours lacks; use the same keys"
        )
    rows = []
    for setting, accuracy in ours.items():
        paper = published.get(setting)
        rows.append([setting, percent(accuracy, 2), "–" if paper is None else f"{paper:.1f}"])
    return Table(["setting", "ours (%)", label], rows)
