"""The nbval sanitizer hides what varies with timing in a progress bar, and nothing else."""

import configparser
import re
from pathlib import Path

import nbformat
from nbval.plugin import coalesce_streams

CONFIG = Path(__file__).with_name("nbval_sanitize.cfg")


def sanitized_stderr(chunks: list[str]) -> str:
    """What nbval compares: stream chunks coalesced, carriage returns resolved, then sanitized."""
    outputs = [nbformat.v4.new_output("stream", name="stderr", text=c) for c in chunks]
    (stream,) = coalesce_streams(outputs)
    cfg = configparser.ConfigParser()
    cfg.read(CONFIG)
    text = stream.text
    for section in cfg.sections():
        text = re.sub(cfg[section]["regex"], cfg[section]["replace"], text)
    return text


def test_bars_of_different_widths_and_refresh_counts_compare_equal():
    # leave=False: tqdm finally blanks the line with as many spaces as the last refresh was wide
    fast = ["\r  0%|          | 0/600 [00:00<?, ?it/s]", "\r" + " " * 39, "\r"]
    slow = [
        "\r  0%|          | 0/600 [00:00<?, ?it/s]",
        "\r 50%|█████     | 300/600 [00:10<00:10, 29.87it/s, loss=0.412]",
        "\r" + " " * 61,
        "\r",
    ]
    assert sanitized_stderr(fast) == sanitized_stderr(slow)


def test_a_real_difference_still_shows():
    assert sanitized_stderr(["warning: x = 1\n"]) != sanitized_stderr(["warning: x = 2\n"])
    assert sanitized_stderr(["(took 3 s)\n"]) == sanitized_stderr(["(took 41 s)\n"])
