"""Which notebooks the project has: the ones published in _toc.yml, and the lessons."""

from __future__ import annotations

from pathlib import Path

from metalearn_course import cli

ROOT = Path(__file__).resolve().parent.parent


def toc_files() -> list[str]:
    """Every page of _toc.yml, as a path without suffix relative to the repository root."""
    return cli.toc_files(ROOT)


def book_notebooks() -> list[Path]:
    return [ROOT / f"{f}.ipynb" for f in toc_files() if (ROOT / f"{f}.ipynb").exists()]


def all_notebooks() -> list[Path]:
    """The book's notebooks and the lessons: everything nbval and papermill check."""
    return cli.toc_notebooks(ROOT)
