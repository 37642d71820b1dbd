"""Write every diagram to book/_static/diagrams/<name>.svg (or to the folder given).

    python tools/diagrams            # from the repository root
    python -m tools.diagrams [OUT] [--png]

``--png`` writes PNG previews next to the SVGs instead (not committed; for looking at them).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if __package__ in (None, ""):  # run as a script: make `tools.diagrams` importable
    sys.path.insert(0, str(ROOT))

from tools.diagrams.build import OUT, write_all  # noqa: E402


def main(argv: list[str]) -> None:
    png = "--png" in argv
    args = [a for a in argv if a != "--png"]
    out = Path(args[0]) if args else OUT
    for path in write_all(out, suffix=".png" if png else ".svg"):
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
