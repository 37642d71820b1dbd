"""Write the diagrams: ``write_all(folder)`` draws every one of ``figures.DIAGRAMS``."""

from __future__ import annotations

from pathlib import Path

from tools.diagrams.draw import course_style, save
from tools.diagrams.figures import DIAGRAMS

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "book" / "_static" / "diagrams"


def write_all(out: Path = OUT, suffix: str = ".svg", names: list[str] | None = None) -> list[Path]:
    """Draw and write each diagram (all of them, or ``names``) as out/<name><suffix>."""
    written = []
    for name in names or list(DIAGRAMS):
        with course_style():
            written.append(save(DIAGRAMS[name](), out / f"{name}{suffix}"))
    return written
