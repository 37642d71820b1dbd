"""Results tables and the glue records that the book's pages paste."""

import pytest

from metalearn_course.evaluate import Accuracy
from metalearn_course.report import glue, percent, results_table

OURS = {"5-way 1-shot": Accuracy(0.9612, 0.0031, 600), "20-way 1-shot": Accuracy(0.88, 0.004, 600)}


def test_percent_and_table():
    assert percent(OURS["5-way 1-shot"]) == "96.1 ± 0.3"
    table = results_table(OURS, {"5-way 1-shot": 98.8}, label="paper")
    lines = table.splitlines()
    assert "ours (%)" in lines[0] and "paper" in lines[0]
    assert "96.12 ± 0.31" in lines[2]
    assert lines[2].rstrip().endswith("98.8")
    assert lines[3].rstrip().endswith("–")  # no published number for this setting
    with pytest.raises(ValueError, match="same keys"):
        results_table(OURS, {"5-way 5-shot": 99.7})


def test_glue_writes_myst_nb_scrapbook_metadata(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append((a, k)))
    glue("protonet_5w1s", "96.1 ± 0.3")
    ((args, kwargs),) = shown
    assert args == ({"text/plain": "96.1 ± 0.3"},)
    assert kwargs["raw"] is True
    assert kwargs["metadata"] == {"scrapbook": {"name": "protonet_5w1s", "mime_prefix": ""}}
    with pytest.raises(ValueError, match="name"):
        glue("bad name!", "x")
