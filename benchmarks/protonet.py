"""ProtoNet training speed: our fit() + EpisodeSampler against a plain PyTorch loop.

Both train the same Conv4 Prototypical Network (Snell et al. 2017, arXiv:1703.05175) with Adam
on Omniglot-sized episodes, alternating in the same run, so a busy machine slows both alike.

- ours: `metalearn_course.train.fit(ProtoNet(), EpisodeSampler(...))`, with the model in the
  channels-last memory layout, as the chapter's notebooks train it;
- plain: the loop a tutorial would write: a Python list of per-image tensors, classes and images
  picked with `random`, `torch.stack`, prototypes by a Python loop over classes, then
  `loss.backward()` and `optimizer.step()`, in PyTorch's default layout, with Conv4 written as
  in the papers (ReLU, then max-pool; the library pools first, the same function).

Most of the gain is the layout: on a CPU, oneDNN's convolutions and batch norm run faster on
channels-last tensors. (`--same-layout` gives the plain loop channels-last too, to separate the
layout's share from the sampler's and the loop's.) The conv ceiling is the faster of the two
layouts.

It also reports the floating-point work of one training episode (`torch.utils.flop_counter`)
and the fraction of the machine's convolution throughput that reaches: the ceiling is measured
in the same run by timing forward + backward of the four conv layers alone at the same shapes.

    python benchmarks/protonet.py              # synthetic images shaped like Omniglot
    python benchmarks/protonet.py --omniglot   # the real Vinyals training split
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from metalearn_course.data import EpisodeSampler
from metalearn_course.metric import ProtoNet
from metalearn_course.train import fit


def ours(images: torch.Tensor, way: int, shot: int, queries: int, steps: int) -> float:
    model = ProtoNet().to(memory_format=torch.channels_last)
    sampler = EpisodeSampler(images, way, shot, queries, seed=0)
    fit(model, sampler, 2, progress=False)  # warm-up: allocator, first-call overheads
    start = time.perf_counter()
    fit(model, sampler, steps, progress=False)
    return steps / (time.perf_counter() - start)


def tutorial_conv4() -> torch.nn.Sequential:
    """Conv4 as the papers and tutorials write it: conv → batch norm → ReLU → max-pool, four
    times. (The library's conv_block pools before the ReLU: the same function, less work.)"""
    layers: list[torch.nn.Module] = []
    for c_in in (1, 64, 64, 64):
        layers += [
            torch.nn.Conv2d(c_in, 64, 3, padding=1),
            torch.nn.BatchNorm2d(64),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        ]
    return torch.nn.Sequential(*layers, torch.nn.Flatten())


def plain(
    images: torch.Tensor, way: int, shot: int, queries: int, steps: int, same_layout: bool
) -> float:
    data = [[img.float().div(255).unsqueeze(0) for img in cls] for cls in images]
    encoder = tutorial_conv4()
    if same_layout:
        encoder = encoder.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3)
    rng = random.Random(0)

    def step() -> None:
        classes = rng.sample(range(len(data)), way)
        support, query = [], []
        for c in classes:
            picked = rng.sample(range(len(data[c])), shot + queries)
            support += [data[c][i] for i in picked[:shot]]
            query += [data[c][i] for i in picked[shot:]]
        z = encoder(torch.stack(support + query))
        zs, zq = z[: way * shot], z[way * shot :]
        protos = torch.stack([zs[k * shot : (k + 1) * shot].mean(0) for k in range(way)])
        logits = -(torch.cdist(zq, protos) ** 2)
        labels = torch.arange(way).repeat_interleave(queries)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for _ in range(2):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def flops_per_episode(way: int, shot: int, queries: int) -> tuple[float, float]:
    """(all FLOPs, conv FLOPs) of one training episode, forward + backward."""
    model = ProtoNet()
    images = torch.randint(0, 255, (way, 20, 28, 28), dtype=torch.uint8)
    episode = EpisodeSampler(images, way, shot, queries, seed=0).sample()
    counter = FlopCounterMode(display=False)
    with counter:
        F.cross_entropy(model(episode), episode.query_y).backward()
    counts = counter.get_flop_counts()["Global"]
    conv = sum(v for k, v in counts.items() if "convolution" in str(k))
    return float(sum(counts.values())), float(conv)


def conv_ceiling(batch: int, repeats: int = 20) -> float:
    """GFLOP/s of the four conv layers alone (forward + backward) at Conv4's shapes, in the
    faster of the two memory layouts."""
    return max(_conv_gflops(batch, layout, repeats) for layout in LAYOUTS)


LAYOUTS = (torch.contiguous_format, torch.channels_last)


def _conv_gflops(batch: int, layout: torch.memory_format, repeats: int) -> float:
    shapes = [(1, 28), (64, 14), (64, 7), (64, 3)]  # (in channels, spatial size) per block
    convs = [torch.nn.Conv2d(c, 64, 3, padding=1).to(memory_format=layout) for c, _ in shapes]
    inputs = [
        torch.randn(batch, c, s, s).to(memory_format=layout).requires_grad_() for c, s in shapes
    ]
    counter = FlopCounterMode(display=False)
    with counter:
        for conv, x in zip(convs, inputs, strict=True):
            conv(x).sum().backward()
    flops = counter.get_total_flops()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for conv, x in zip(convs, inputs, strict=True):
            conv(x).sum().backward()
        times.append(time.perf_counter() - start)
    return flops / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--omniglot", action="store_true", help="use the real Vinyals train split")
    parser.add_argument("--steps", type=int, default=30, help="training episodes per timing")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--same-layout", action="store_true", help="train the plain loop channels-last too"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.omniglot:
        from metalearn_course.data import load_omniglot

        images = load_omniglot("vinyals-train").images
    else:
        images = torch.randint(0, 255, (4112, 20, 28, 28), dtype=torch.uint8)
    print(
        f"images {list(images.shape)}, torch threads {torch.get_num_threads()}, "
        f"median of {args.repeats} timings of {args.steps} training episodes"
    )
    print(
        f"{'task':<22} {'ours ep/s':>10} {'plain ep/s':>11} {'ratio':>6} "
        f"{'GFLOP/ep':>9} {'GFLOP/s':>8} {'conv ceiling':>13} {'of ceiling':>11}"
    )
    for way, shot, queries in [(5, 1, 15), (20, 1, 15)]:
        a, b = [], []
        for _ in range(args.repeats):
            a.append(ours(images, way, shot, queries, args.steps))
            b.append(plain(images, way, shot, queries, args.steps, args.same_layout))
        ep_s, peer = statistics.median(a), statistics.median(b)
        total, conv = flops_per_episode(way, shot, queries)
        ceiling = conv_ceiling(way * (shot + queries))
        achieved = conv * ep_s / 1e9  # conv GFLOP/s while training
        print(
            f"{f'{way}-way {shot}-shot {queries}-query':<22} {ep_s:10.2f} {peer:11.2f} "
            f"{ep_s / peer:5.2f}x {total / 1e9:9.2f} {total * ep_s / 1e9:8.1f} "
            f"{ceiling:10.1f} GF {achieved / ceiling:10.0%}"
        )


if __name__ == "__main__":
    main()
