"""Data and networks that several test modules share (tests/ is on sys.path: tests/conftest.py).

Test modules import these from here, never from one another.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from metalearn_course.data.episodes import EpisodeBatch
from metalearn_course.gradient import BodyHead, conv4_classifier

WAY = 3  # classes per task of random_tasks and tiny_classifier


def blob_images(n_classes: int = 12, n_per_class: int = 20, seed: int = 0) -> torch.Tensor:
    """uint8 [n_classes, n_per_class, 28, 28]: noise 0..59 plus a class-specific 7×7 blob."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 60, (n_classes, n_per_class, 28, 28), generator=generator)
    for c in range(n_classes):
        row, col = divmod(c % 12, 4)
        images[c, :, 7 * row : 7 * row + 7, 7 * col : 7 * col + 7] += 180
    return images.to(torch.uint8)


def tiny_classifier(seed: int = 0, transductive: bool = True) -> BodyHead:
    """A seeded float64 WAY-way classifier: 2 conv blocks of 4 channels on 8×8 images, with
    TaskBatchNorm (transductive=False: running statistics in eval mode)."""
    torch.manual_seed(seed)
    model = conv4_classifier(WAY, hidden=4, blocks=2, image_size=8, transductive=transductive)
    return model.double()


def random_tasks(tasks: int = 3, shot: int = 2, queries: int = 3, seed: int = 0) -> EpisodeBatch:
    """A float64 meta-batch of WAY-way random-image tasks (random images: generic gradients),
    class-major like EpisodeSampler's, for tiny_classifier."""
    generator = torch.Generator().manual_seed(seed)

    def images(n: int) -> torch.Tensor:
        return torch.randn(tasks, WAY * n, 1, 8, 8, generator=generator, dtype=torch.float64)

    def labels(n: int) -> torch.Tensor:
        return torch.arange(WAY).repeat_interleave(n).repeat(tasks, 1)

    classes = torch.arange(WAY).repeat(tasks, 1)
    return EpisodeBatch(images(shot), labels(shot), images(queries), labels(queries), classes)


CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Without these, Chromium phones home at start; the closed network refuses it noisily.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    """Debian's headless Chromium, which Playwright drives by its path (no browser download);
    fails the test with the fix when it is missing."""
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("Debian's chromium is not installed: run `make setup` (tools/setup_env.sh)")
    return executable
