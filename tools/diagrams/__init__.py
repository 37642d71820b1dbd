"""The book's diagrams, drawn from source with matplotlib (issue 26, item 1).

``python tools/diagrams`` (or ``python -m tools.diagrams`` from the repository root) writes every
diagram to ``book/_static/diagrams/<name>.svg``. The SVGs are committed, so JupyterLab, GitHub and
the book show them without a build step; tests/test_diagrams.py regenerates them and checks that
the committed files are byte-identical, so a script changed without re-generated SVGs fails.

* ``draw``: the drawing helpers (boxes, arrows, labels, small image tiles) in the course's
  palette and style (metalearn_course.plots), and the deterministic SVG writer.
* ``figures``: one function per diagram, ``DIAGRAMS`` maps each file name to its function.
"""
