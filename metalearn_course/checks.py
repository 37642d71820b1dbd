"""Your run next to the book's: the claims a notebook's text makes, compared and explained.

A chapter states results ("at least 97% in 5-way 1-shot", "more shots help"). At the end of
its notebook, `BookComparison` collects each claim with the value this run produced and shows a
table: the claim, what the book's run gives, your value, ✓ or ✗, and what usually explains a
difference. A learner who changed a parameter, trained on a GPU or on another CPU, or stopped
early gets that table and an explanation, not an AssertionError.

The test suite holds the book to its word with the same table: with the environment variable
``METALEARN_STRICT=1`` (set by ``make test`` for nbval, and by CI) `BookComparison.show`
raises on any ✗, so a change that breaks a claim the text makes fails the build.

    book = BookComparison()
    book.at_least("5-way 1-shot accuracy", acc.mean, 0.97, percent=True)
    book.holds("more shots help", all(a < b for a, b in pairwise(curve)), "increasing")
    book.show()
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from metalearn_course.report import Table

STRICT_ENV = "METALEARN_STRICT"
WHY = (
    "other parameters, fewer training steps, another device or CPU (other rounding, so another"
    " training path), or another seed"
)


def strict() -> bool:
    """True when claims must hold (METALEARN_STRICT=1: the test suite and CI)."""
    value = os.environ.get(STRICT_ENV, "0").strip().lower()
    if value not in ("", "0", "1", "false", "true", "no", "yes"):
        raise ValueError(f"{STRICT_ENV}={value!r}; use 1 (claims must hold) or 0 (explain)")
    return value in ("1", "true", "yes")


@dataclass(frozen=True)
class Claim:
    """One row of the comparison: what the book claims, and this run's value."""

    what: str  # e.g. "5-way 1-shot accuracy"
    book: str  # what the book's run gives, e.g. "≥ 97.0%"
    yours: str  # this run's value, e.g. "97.3%"
    holds: bool
    why: str  # what usually causes a difference


class BookComparison:
    """The claims of one notebook, checked against this run (see the module docstring)."""

    def __init__(self, title: str = "Your run vs the book") -> None:
        self.title = title
        self.claims: list[Claim] = []
        # (claim, value) of the claims whose value is a wall-clock time or a ratio of times: it
        # changes from run to run, so show() prints it on a line of its own ("timed | claim |
        # value"), which the test suite's nbval sanitizer masks, and the table (compared digit
        # for digit) keeps only whether the claim holds.
        self.timed: list[tuple[str, str]] = []

    @staticmethod
    def _show(value: float, percent: bool, digits: int) -> str:
        return f"{100 * value:.{digits}f}%" if percent else f"{value:.{digits}f}"

    def at_least(
        self,
        what: str,
        value: float,
        bound: float,
        *,
        percent: bool = False,
        digits: int = 2,
        why: str = WHY,
        timed: bool = False,
    ) -> bool:
        """Claim value ≥ bound (e.g. an accuracy target of the book's budget)."""
        book, yours = f"≥ {self._show(bound, percent, digits)}", self._show(value, percent, digits)
        return self._add(what, book, yours, value >= bound, why, timed)

    def at_most(
        self,
        what: str,
        value: float,
        bound: float,
        *,
        percent: bool = False,
        digits: int = 2,
        why: str = WHY,
        timed: bool = False,
    ) -> bool:
        """Claim value ≤ bound (e.g. a loss or an interval's width)."""
        book, yours = f"≤ {self._show(bound, percent, digits)}", self._show(value, percent, digits)
        return self._add(what, book, yours, value <= bound, why, timed)

    def between(
        self,
        what: str,
        value: float,
        low: float,
        high: float,
        *,
        percent: bool = False,
        digits: int = 2,
        why: str = WHY,
        timed: bool = False,
    ) -> bool:
        """Claim low ≤ value ≤ high (e.g. a number the text quotes, with its tolerance)."""
        if low > high:
            raise ValueError(f"low={low} > high={high}; give the range as low, high")
        book = f"{self._show(low, percent, digits)} to {self._show(high, percent, digits)}"
        yours = self._show(value, percent, digits)
        return self._add(what, book, yours, low <= value <= high, why, timed)

    def holds(
        self,
        what: str,
        condition: bool,
        book: str,
        yours: str = "",
        *,
        why: str = WHY,
        timed: bool = False,
    ) -> bool:
        """Claim a property (e.g. "more shots help"): `book` says what the book's run shows,
        `yours` what this run shows (default ✓/✗ alone)."""
        yours = yours or ("yes" if condition else "no")
        return self._add(what, book, yours, bool(condition), why, timed)

    def _add(
        self, what: str, book: str, yours: str, holds: bool, why: str, timed: bool = False
    ) -> bool:
        if timed:  # wall-clock: printed by show() on a line of its own, not in the table
            self.timed.append((what, yours))
            yours = "timed, printed above"
        self.claims.append(Claim(what, book, yours, bool(holds), why))
        return bool(holds)

    @property
    def failed(self) -> list[Claim]:
        return [c for c in self.claims if not c.holds]

    def table(self) -> Table:
        """The claims as a table: what the book shows, this run's value, ✓ or ✗, and below it
        what usually explains each ✗ (or that all claims hold)."""
        rows = [(c.what, c.book, c.yours, "✓" if c.holds else "✗") for c in self.claims]
        notes = [f"✗ {c.what}: usually {c.why}." for c in self.failed]
        return Table(
            ("claim", "the book", "your run", ""),
            rows,
            title=self.title,
            notes=notes or [f"All {len(self.claims)} claims hold."],
            left_aligned=True,
        )

    def __str__(self) -> str:
        return str(self.table())

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def show(self) -> None:
        """Display the table (HTML in Jupyter, text elsewhere); in strict mode, raise
        AssertionError naming every claim that does not hold."""
        if not self.claims:
            raise ValueError("no claims to show; add them with at_least, between, holds, ...")
        for what, yours in self.timed:
            print(f"timed | {what} | {yours}")
        try:
            from IPython.display import display
        except ImportError:  # plain Python: the text table
            print(self)
        else:
            display(self)
        if strict() and self.failed:
            broken = "; ".join(f"{c.what}: {c.yours} (book: {c.book})" for c in self.failed)
            raise AssertionError(f"{STRICT_ENV}=1 and a claim of the book fails: {broken}")

    def __repr__(self) -> str:  # the text/plain form Jupyter stores next to the HTML
        return str(self)
