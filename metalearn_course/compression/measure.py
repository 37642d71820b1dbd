"""What compression buys: parameters, bytes on disk, and CPU time per episode.

Three measures, each with its trap:

* `parameter_count` counts weights; with ``nonzero=True`` only those not pruned away. A masked
  network still stores (and multiplies by) every zero, so the nonzero count is a *potential*
  saving, realised only by sparse storage or by removing whole channels.
* `size_on_disk` is the size of the saved state_dict, measured in memory (no files). A masked
  network's checkpoint is LARGER than the original (weight_orig plus weight_mask): fold the
  masks in with pruning.make_permanent first. ``compressed=True`` reports what a zlib-compressed
  checkpoint would weigh, which is where unstructured zeros pay off (long runs of zero bytes).
  An int8 network stores 1 byte per weight instead of 4, so about 4× smaller.
* `latency_per_episode` is wall-clock time, which depends on the machine, its load and the
  number of threads: compare RATIOS against the uncompressed model measured in the same run,
  never absolute times across machines (and never assert them in tests).
"""

from __future__ import annotations

import contextlib
import io
import statistics
import time
import zlib
from collections.abc import Mapping

import torch
from torch import nn

from metalearn_course.data.episodes import Episode
from metalearn_course.nets import mode


def parameter_count(module: nn.Module, nonzero: bool = False) -> int:
    """Number of parameters of `module` (pruned weights count through their effective value
    weight_orig · weight_mask). nonzero=True counts only entries that are not exactly zero.

    A quantized network keeps its int8 weights packed, outside .parameters(), so it is refused:
    count the float network instead (quantization keeps the number of weights and changes the
    bytes per weight, which size_on_disk shows).
    """
    named = dict(module.named_parameters())
    if not named:
        raise ValueError(
            f"{type(module).__name__} has no parameters (a quantized network keeps its weights"
            " packed); count the float network's parameters and compare sizes with size_on_disk"
        )
    total = 0
    for name, value in named.items():
        owner, _, leaf = name.rpartition(".")
        if leaf.endswith("_orig"):  # a pruned weight: use what the forward pass uses
            value = getattr(module.get_submodule(owner), leaf[: -len("_orig")])
        total += int((value != 0).sum()) if nonzero else value.numel()
    return total


def size_on_disk(module: nn.Module, compressed: bool = False) -> int:
    """Bytes of ``torch.save(module.state_dict())`` (written to an in-memory buffer).

    compressed=True: bytes after zlib compression (level 6), as a zip or gzip of the checkpoint
    would be; float weights hardly compress, runs of pruned zeros compress well.
    """
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    data = buffer.getvalue()
    return len(zlib.compress(data, 6)) if compressed else len(data)


def latency_per_episode(
    methods: Mapping[str, nn.Module], episode: Episode, repeats: int = 20, warmup: int = 3
) -> dict[str, float]:
    """Median wall-clock seconds of one forward pass ``method(episode)`` of each of `methods`
    (name -> method), in eval mode under no_grad, after `warmup` untimed passes each (first
    calls allocate memory and pick kernels).

    The methods are timed in turns, one pass of each per round, so that a change in the
    machine's load (another program, or another notebook of the test suite) falls on all of
    them alike; timed one after the other, a model measured in a busy moment would look slow
    next to one measured in a quiet one. The median, not the mean: a shared machine adds
    occasional long pauses. Every method's modes are restored afterwards. Report ratios to one
    of them: seconds depend on the machine.
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats}; use repeats >= 1")
    if warmup < 0:
        raise ValueError(f"warmup={warmup}; use warmup >= 0")
    if not methods:
        raise ValueError("methods is empty; give name -> method for every model to time")
    times: dict[str, list[float]] = {name: [] for name in methods}
    with contextlib.ExitStack() as modes, torch.no_grad():
        for method in methods.values():
            modes.enter_context(mode(method, training=False))
        for i in range(warmup + repeats):
            for name, method in methods.items():
                start = time.perf_counter()
                method(episode)
                if episode.query_x.is_cuda:  # GPU kernels run asynchronously: wait for them
                    torch.cuda.synchronize()
                if i >= warmup:
                    times[name].append(time.perf_counter() - start)
    return {name: statistics.median(seconds) for name, seconds in times.items()}
