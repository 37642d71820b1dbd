"""The install cell every notebook starts with, built from one setting: `repository.url` in
_config.yml (where the course is published; Colab and Binder install the package from there).

    python tools/install_cell.py          # check every notebook's first code cell
    python tools/install_cell.py --write  # rewrite them after changing repository.url

Three lines of code, hidden in the book (tag remove-cell): in the project's virtualenv the
package is there and the cell does nothing; in Colab or a fresh environment it installs it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]


def install_cell_source(root: Path = ROOT) -> str:
    url = yaml.safe_load((root / "_config.yml").read_text())["repository"]["url"]
    return (
        "import importlib.util  # Colab or a fresh environment: install the course if missing\n"
        "\n"
        'if importlib.util.find_spec("metalearn_course") is None:\n'
        f'    %pip install -q "metalearn-course @ git+{url}"'
    )


def notebooks(root: Path = ROOT) -> list[Path]:
    """The book's and the lessons' notebooks (not nbgrader's generated copies)."""
    found = sorted((root / "book").rglob("*.ipynb")) + sorted(
        (root / "lessons" / "source").rglob("*.ipynb")
    )
    return [p for p in found if ".ipynb_checkpoints" not in p.parts and "_build" not in p.parts]


def main(argv: list[str]) -> int:
    write = argv == ["--write"]
    if argv and not write:
        print(__doc__)
        return 2
    wanted, stale = install_cell_source(), []
    for path in notebooks():
        nb = nbformat.read(path, as_version=4)
        first = next(c for c in nb.cells if c.cell_type == "code")
        if first.source != wanted:
            stale.append(path)
            if write:
                first.source = wanted
                nbformat.write(nb, path)
    verb = "rewrote" if write else "out of date"
    for path in stale:
        print(f"{verb}: {path.relative_to(ROOT)}")
    return 0 if write or not stale else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
