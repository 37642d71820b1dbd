"""metalearn_course.checks: a learner's run is compared with the book's and explained; under the
test suite (METALEARN_STRICT=1) a claim that fails raises."""

from __future__ import annotations

import pytest

from metalearn_course.checks import STRICT_ENV, BookComparison, strict


def comparison(accuracy: float) -> BookComparison:
    book = BookComparison()
    book.at_least("5-way 1-shot accuracy", accuracy, 0.97, percent=True, digits=1)
    book.between("ratio to Gittins", 0.972, 0.9715, 0.9725, digits=4)
    book.holds("more shots help", True, "increasing")
    return book


def test_a_run_like_the_books_shows_every_claim_holding(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    book = comparison(0.973)
    book.show()  # strict, and nothing fails: no exception
    text = str(book)
    assert "5-way 1-shot accuracy | ≥ 97.0%" in text and "| 97.3%" in text
    assert "0.9715 to 0.9725" in text and "All 3 claims hold." in text
    assert "<table>" in book._repr_html_() and "✗" not in text


def test_a_learners_different_run_is_explained_not_raised(monkeypatch, capsys):
    monkeypatch.setenv(STRICT_ENV, "0")
    book = comparison(0.90)
    book.show()  # learner mode: no exception
    assert [c.what for c in book.failed] == ["5-way 1-shot accuracy"]
    text = str(book)
    assert "| 90.0%" in text and "| ✗" in text
    assert "✗ 5-way 1-shot accuracy: usually other parameters" in text


def test_strict_mode_raises_on_a_failed_claim(monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(AssertionError, match=r"5-way 1-shot accuracy: 90.0% \(book: ≥ 97.0%\)"):
        comparison(0.90).show()


def test_the_switch_and_bad_input(monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    assert not strict()  # a learner's default: explain
    monkeypatch.setenv(STRICT_ENV, "sometimes")
    with pytest.raises(ValueError, match="METALEARN_STRICT='sometimes'"):
        strict()
    with pytest.raises(ValueError, match="low=2 > high=1"):
        BookComparison().between("x", 1.5, 2, 1)
    with pytest.raises(ValueError, match="no claims"):
        BookComparison().show()


def test_html_escapes_text():
    book = BookComparison("a <b> title")
    book.holds("x < y", False, "<yes>")
    page = book._repr_html_()
    assert "a &lt;b&gt; title" in page and "x &lt; y" in page and "<yes>" not in page


def test_a_timed_claim_prints_its_value_and_keeps_the_table_the_same(capsys, monkeypatch):
    """A wall-clock value changes from run to run: show() prints it on a line the test suite's
    sanitizer masks, and the table (compared digit for digit) only says whether it holds."""
    monkeypatch.setenv(STRICT_ENV, "1")
    tables = []
    for ratio in (0.52, 0.63):
        book = BookComparison()
        book.at_most("int8: time / reference's", ratio, 0.8, timed=True)
        book.holds("faster", ratio < 1, "yes", f"{ratio:.2f}", timed=True)
        book.show()
        tables.append(str(book))
    assert tables[0] == tables[1] and "timed, printed above" in tables[0]
    out = capsys.readouterr().out
    assert "timed | int8: time / reference's | 0.52" in out and "timed | faster | 0.63" in out
    book = BookComparison()
    book.at_most("int8: time / reference's", 0.9, 0.8, timed=True)
    with pytest.raises(AssertionError, match="timed, printed above"):
        book.show()  # strict mode still holds a timed claim to its bound
