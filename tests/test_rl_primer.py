"""The RL primer's example (book/05_rl/rl_primer.md) runs and prints what the page says it
prints: REINFORCE with a baseline learns the better arm, and the baseline lowers the variance
of the gradient estimate without moving its mean."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "book" / "05_rl" / "rl_primer.md"


def example() -> tuple[str, str]:
    """The page's first ```python block and the ```text block that shows its output."""
    text = PAGE.read_text()
    code = re.search(r"^```python\n(.*?)^```$", text, re.M | re.S)
    shown = re.search(r"^```text\n(.*?)^```$", text[code.end() :], re.M | re.S)
    assert code and shown, f"{PAGE.name}: no ```python block followed by a ```text block"
    return code.group(1), shown.group(1)


def test_the_primer_example_prints_what_the_page_shows():
    code, shown = example()
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout == shown, f"the page shows\n{shown}\nthe example printed\n{run.stdout}"


def test_the_claims_next_to_the_output_hold():
    """What the text says about the printed numbers: the better arm is learned, both estimates
    are near the true gradient 0.1, and the baseline cuts the spread by about a third."""
    _, shown = example()
    numbers = [float(x) for x in re.findall(r"\d+\.\d+", shown)]
    learned, mean_plain, sd_plain, mean_base, sd_base = numbers
    assert learned > 0.95
    assert abs(mean_plain - 0.1) < 0.005 and abs(mean_base - 0.1 * 63 / 64) < 0.005
    assert 0.55 < sd_base / sd_plain < 0.75
