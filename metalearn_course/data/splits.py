"""Which Omniglot classes are used for meta-training, validation and meta-testing.

Two conventions are common, and they give different numbers, so a results table must say which:

* **Lake** (Lake et al. 2015, Science): the two archives of the release. ``lake-background``
  (30 alphabets, 964 characters) is for learning, ``lake-evaluation`` (20 alphabets, 659
  characters) for testing. No rotations.
* **Vinyals** (Vinyals et al. 2016, "Matching Networks for One Shot Learning",
  arXiv:1606.04080): all 1,623 characters are pooled and split into 1,200 for training and
  validation and 423 for testing; then every character is rotated by 0, 90, 180 and 270
  degrees, and each rotation counts as a class of its own. The split is by *character*: no
  character (in any rotation) is on two sides, and the alphabets are too, except one
  (Gurmukhi: 41 characters in train, 4 in test; tests/test_omniglot.py). That gives 4112 train
  + 688 val = 4800 trainval, and 1692 test classes. The class lists
  in ``splits/vinyals/`` are those of the prototypical-networks code (Snell et al. 2017,
  github.com/jakesnell/prototypical-networks, MIT license), which most later papers reuse.

A class is named ``"<Alphabet>/characterNN"`` (Lake) or ``"<Alphabet>/characterNN/rotDDD"``
(Vinyals), e.g. ``"Angelic/character01/rot090"``.
"""

from __future__ import annotations

import re
from importlib import resources

VINYALS_SPLITS = ("vinyals-train", "vinyals-val", "vinyals-test", "vinyals-trainval")
LAKE_SPLITS = ("lake-background", "lake-evaluation")
SPLITS = VINYALS_SPLITS + LAKE_SPLITS

_CLASS = re.compile(r"(?P<character>[^/]+/character\d+)(?:/rot(?P<degrees>000|090|180|270))?")


def check_split(name: str) -> None:
    """Raise a ValueError listing the valid names if ``name`` is not a known split."""
    if name not in SPLITS:
        valid = ", ".join(SPLITS)
        raise ValueError(f"unknown Omniglot split {name!r}; split must be one of: {valid}")


def split_classes(name: str, characters: list[str], archives: list[str]) -> list[str]:
    """The class names of split ``name``, in the split's order.

    ``characters`` are all ``"<Alphabet>/characterNN"`` names and ``archives`` says, for each,
    whether it comes from the ``"background"`` or the ``"evaluation"`` archive.
    """
    check_split(name)
    if name in LAKE_SPLITS:
        archive = name.removeprefix("lake-")
        return sorted(c for c, a in zip(characters, archives, strict=True) if a == archive)
    # Package data, so that the split travels with the code and cannot drift from it.
    part = name.removeprefix("vinyals-")
    file = resources.files(__package__) / "splits" / "vinyals" / f"{part}.txt"
    return file.read_text(encoding="utf-8").split()


def parse_class(name: str) -> tuple[str, int]:
    """Split a class name into its character and its number of quarter turns (counter-clockwise).

    >>> parse_class("Angelic/character01/rot090")
    ('Angelic/character01', 1)
    >>> parse_class("Angelic/character01")
    ('Angelic/character01', 0)
    """
    match = _CLASS.fullmatch(name)
    if match is None:
        raise ValueError(
            f"bad Omniglot class name {name!r}; expected '<Alphabet>/characterNN' "
            "or '<Alphabet>/characterNN/rotDDD' with DDD one of 000, 090, 180, 270"
        )
    return match["character"], int(match["degrees"] or 0) // 90
