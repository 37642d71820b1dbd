"""Results tables and the glue records that the book's pages paste."""

import pytest

from metalearn_course.evaluate import Accuracy
from metalearn_course.report import Table, glue, percent, results_table

OURS = {"5-way 1-shot": Accuracy(0.9612, 0.0031, 600), "20-way 1-shot": Accuracy(0.88, 0.004, 600)}


def test_percent_and_table():
    assert percent(OURS["5-way 1-shot"]) == "96.1 ± 0.3"
    table = results_table(OURS, {"5-way 1-shot": 98.8}, label="paper")
    lines = str(table).splitlines()
    assert "ours (%)" in lines[0] and "paper" in lines[0]
    assert "96.12 ± 0.31" in lines[2]
    assert lines[2].rstrip().endswith("98.8")
    assert lines[3].rstrip().endswith("–")  # no published number for this setting
    assert repr(table) == str(table)  # the text/plain Jupyter stores (and nbval compares)
    html = table._repr_html_()  # what Jupyter and the book render
    assert html.count("<tr>") == 3 and "<th>paper</th>" in html and "<td>96.12 ± 0.31</td>" in html
    with pytest.raises(ValueError, match="same keys"):
        results_table(OURS, {"5-way 5-shot": 99.7})


def test_table_escapes_html_and_checks_its_rows():
    table = Table(["rule", "x < y"], [["a<b", "1"]], title="T & U", notes=["(note)"])
    html = table._repr_html_()
    assert "a&lt;b" in html and "x &lt; y" in html and "T &amp; U" in html and "(note)" in html
    assert str(table).splitlines() == [
        "T & U",
        "rule | x < y",
        "-----+------",
        "a<b  |     1",
        "(note)",
    ]
    with pytest.raises(ValueError, match=r"rows\[0\] has 1 cells"):
        Table(["a", "b"], [["only one"]])


def test_glue_writes_myst_nb_scrapbook_metadata(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append((a, k)))
    glue("protonet_5w1s", "96.1 ± 0.3")
    ((args, kwargs),) = shown
    # recorded under MyST-NB's prefix: pasted by the book's pages, shown by no notebook viewer
    assert args == ({"application/papermill.record/text/plain": "96.1 ± 0.3"},)
    assert kwargs["raw"] is True
    assert kwargs["metadata"] == {
        "scrapbook": {"name": "protonet_5w1s", "mime_prefix": "application/papermill.record/"}
    }
    with pytest.raises(ValueError, match="name"):
        glue("bad name!", "x")
