"""Which notebooks the project has: the ones published in _toc.yml, and the lessons."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def toc_files() -> list[str]:
    """Every page of _toc.yml, as a path without suffix relative to the repository root."""

    def files(node) -> list[str]:
        if isinstance(node, dict):
            own = [node[k] for k in ("root", "file") if k in node]
            return own + [f for v in node.values() for f in files(v)]
        if isinstance(node, list):
            return [f for item in node for f in files(item)]
        return []

    return files(yaml.safe_load((ROOT / "_toc.yml").read_text()))


def book_notebooks() -> list[Path]:
    return [ROOT / f"{f}.ipynb" for f in toc_files() if (ROOT / f"{f}.ipynb").exists()]


def lesson_notebooks() -> list[Path]:
    lessons = ROOT / "lessons"
    found = sorted(lessons.rglob("*.ipynb")) if lessons.exists() else []
    return [p for p in found if ".ipynb_checkpoints" not in p.parts]


def all_notebooks() -> list[Path]:
    return book_notebooks() + lesson_notebooks()
