"""Episodes per second: our vectorised EpisodeSampler against a naive per-image sampler.

The naive peer is how a `torch.utils.data.Dataset`-style task sampler works (e.g. learn2learn's
TaskDataset): the data set is a Python list of per-image float tensors, an episode picks its
classes and images with Python's `random`, indexes the list one image at a time and
`torch.stack`s the result. It does strictly less work than ours per image (its images are
converted to float once, up front), so the ratio is, if anything, flattering to it.

Both samplers are measured in the same run, alternating, so a busy machine slows both alike;
the ratio is the number to compare across machines.

    python benchmarks/episode_sampler.py              # synthetic data shaped like Omniglot
    python benchmarks/episode_sampler.py --omniglot   # the real Vinyals test split
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

import torch

from metalearn_course.data.episodes import EpisodeSampler


class NaiveSampler:
    """One image at a time from a Python list, the way per-item Dataset samplers work."""

    def __init__(self, images: torch.Tensor, way: int, shot: int, queries: int, seed: int = 0):
        n_classes, n_per_class = images.shape[:2]
        self.items = [images[c, i].float().div(255).unsqueeze(0) for c in range(n_classes)
                      for i in range(n_per_class)]  # fmt: skip
        self.by_class = [list(range(c * n_per_class, (c + 1) * n_per_class))
                         for c in range(n_classes)]  # fmt: skip
        self.way, self.shot, self.queries = way, shot, queries
        self.rng = random.Random(seed)

    def sample(self) -> tuple[torch.Tensor, ...]:
        classes = self.rng.sample(range(len(self.by_class)), self.way)
        support, query = [], []
        for c in classes:
            chosen = self.rng.sample(self.by_class[c], self.shot + self.queries)
            support += [self.items[i] for i in chosen[: self.shot]]
            query += [self.items[i] for i in chosen[self.shot :]]
        labels = torch.arange(self.way)
        return (
            torch.stack(support),
            labels.repeat_interleave(self.shot),
            torch.stack(query),
            labels.repeat_interleave(self.queries),
            torch.tensor(classes),
        )


def rate(draw: Callable[[], object], episodes: int) -> float:
    """Episodes per second for `episodes` calls of `draw`."""
    start = time.perf_counter()
    for _ in range(episodes):
        draw()
    return episodes / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--omniglot", action="store_true", help="use the real vinyals-test split")
    parser.add_argument("--episodes", type=int, default=5000, help="episodes per timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per sampler (median)")
    args = parser.parse_args()

    if args.omniglot:
        from metalearn_course.data import load_omniglot

        images = load_omniglot("vinyals-test").images
        source = "Omniglot vinyals-test"
    else:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (1692, 20, 28, 28), dtype=torch.uint8, generator=generator)
        source = "synthetic uint8"
    print(f"{source} images {list(images.shape)}, torch threads {torch.get_num_threads()}")
    print(f"median of {args.repeats} timings of {args.episodes} episodes each\n")
    print(f"{'task':<22}{'ours ep/s':>12}{'naive ep/s':>12}{'ratio':>8}")

    for way, shot, queries in [(5, 1, 15), (20, 1, 5)]:
        ours = iter(EpisodeSampler(images, way, shot, queries, seed=0))
        naive = NaiveSampler(images, way, shot, queries, seed=0)
        # Ours is timed through __iter__, the way training loops consume it. The naive sampler
        # is several times slower, so it gets fewer episodes per timing to keep the run short.
        naive_episodes = max(1, args.episodes // 5)
        timings: dict[str, list[float]] = {"ours": [], "naive": []}
        rate(ours.__next__, 1000)  # warm-up: allocator, caches
        rate(naive.sample, 100)
        for _ in range(args.repeats):  # alternate, so both see the same machine load
            timings["ours"].append(rate(ours.__next__, args.episodes))
            timings["naive"].append(rate(naive.sample, naive_episodes))
        ours_rate = statistics.median(timings["ours"])
        naive_rate = statistics.median(timings["naive"])
        task = f"{way}-way {shot}-shot {queries}-query"
        print(f"{task:<22}{ours_rate:>12,.0f}{naive_rate:>12,.0f}{ours_rate / naive_rate:>7.1f}x")


if __name__ == "__main__":
    main()
