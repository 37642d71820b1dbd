"""The nbval sanitizer hides what varies with timing in a progress bar, and nothing else."""

import configparser
import re
from pathlib import Path

import nbformat
from nbval.plugin import coalesce_streams

from metalearn_course.cli import final_lines

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


def test_a_finished_bar_left_in_place_compares_equal_whatever_its_padding():
    # leave=True: the last refresh may be shorter than the one before, padded with spaces
    short = [
        "\r 99%|█████████▉| 594/600 [00:30<00:00, 19.87it/s]",
        "\r100%|██████████| 600/600 [00:30<00:00, 19.9it/s]  \n",
    ]
    wide = ["\r100%|██████████| 600/600 [00:31<00:00, 19.12it/s]\n"]
    assert sanitized_stderr(short) == sanitized_stderr(wide) == "PROGRESS-BAR\n"


def test_stored_final_lines_are_what_nbval_compares():
    """make refresh stores final_lines(outputs); nbval must see the same as in a fresh run,
    whose bar refreshes arrive one by one, interleaved with prints."""
    chunks = [
        ("stderr", "\r  0%|          | 0/9 [00:00<?, ?it/s]"),
        ("stdout", "step 3: loss 0.41\n"),
        ("stderr", "\r 50%|█████     | 4/9 [00:01<00:01,  3.1it/s]"),
        ("stdout", "step 6: loss 0.22\n"),
        ("stderr", "\r100%|██████████| 9/9 [00:03<00:00,  3.0it/s]\n"),
    ]

    def fresh():
        return [nbformat.v4.new_output("stream", name=n, text=t) for n, t in chunks]

    stored = final_lines(fresh())
    assert [(o.name, o.text) for o in stored] == [
        ("stderr", "100%|██████████| 9/9 [00:03<00:00,  3.0it/s]\n"),
        ("stdout", "step 3: loss 0.41\nstep 6: loss 0.22\n"),
    ]
    assert [(o.name, o.text) for o in coalesce_streams(stored)] == [
        (o.name, o.text) for o in coalesce_streams(fresh())
    ]
    assert final_lines(stored) == stored  # a second refresh changes nothing


def test_a_timed_claim_compares_equal_whatever_its_value():
    def stdout(text: str) -> str:
        (stream,) = coalesce_streams([nbformat.v4.new_output("stream", name="stdout", text=text)])
        cfg = configparser.ConfigParser()
        cfg.read(CONFIG)
        for section in cfg.sections():
            text = re.sub(cfg[section]["regex"], cfg[section]["replace"], stream.text)
            stream.text = text
        return text

    fast = "before\ntimed | int8: time / reference's | 0.52\nafter 0.52\n"
    slow = "before\ntimed | int8: time / reference's | 0.63\nafter 0.52\n"
    assert (
        stdout(fast) == stdout(slow) == "before\ntimed | int8: time / reference's | T\nafter 0.52\n"
    )
    assert stdout(fast) != stdout(fast.replace("after 0.52", "after 0.63"))  # only timed lines
