"""Data parallelism across processes for runs that outgrow one device: torchrun + DDP.

    torchrun --nproc_per_node=4 -m metalearn_course.cli reproduce maml --setting omniglot-5w1s

torchrun starts one process per device and tells each its RANK and the WORLD_SIZE; PyTorch's
DistributedDataParallel (DDP) then averages the gradients of all processes during `backward`
(NCCL between GPUs, gloo between CPU processes). This module only connects the two to the
course's training loop; the distribution itself is torch.distributed's.

How a meta-batch is split: every process draws the SAME meta-batch of B tasks from the same
seeded sampler and keeps its own B / world tasks (`shard`). The sampler's position is therefore
identical in every process (a resumed run continues everywhere alike), and the shares together
are exactly the meta-batch one process would train on. Each process's loss is the mean over its
tasks; DDP's mean of the per-process gradients is then the gradient of the mean over all B tasks,

    (1/W) Σ_r ∇ (W/B) Σ_{i ∈ share r} L_i  =  ∇ (1/B) Σ_i L_i,

the single-process update, up to the order of float additions (tests/test_distributed.py checks
a 2-process gloo run against one process).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from metalearn_course.data.episodes import EpisodeBatch
from metalearn_course.device import pick_device


@dataclass(frozen=True)
class Process:
    """This process's place in the run: rank r of `world` processes, and its device."""

    rank: int
    world: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 writes files and prints; the others compute."""
        return self.rank == 0


def launch(device: str | torch.device = "auto") -> Process:
    """Join the process group torchrun set up (RANK, WORLD_SIZE, LOCAL_RANK in the environment):
    NCCL on CUDA, gloo on the CPU. Started without torchrun, this is process 0 of 1 and nothing
    is initialised. Under torchrun with device "auto"/"cuda", process r uses GPU LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device)
    if world == 1:
        return Process(0, 1, device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"LOCAL_RANK={local} but only {torch.cuda.device_count()} GPU(s) are visible;"
                " use torchrun --nproc_per_node <= the number of GPUs"
            )
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"device={device} has no torch.distributed backend; use cuda or cpu")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(rank, world, device)


def shard(batch: EpisodeBatch, rank: int, world: int) -> EpisodeBatch:
    """Process `rank`'s share of a meta-batch [B, ...]: tasks rank·B/world ... (rank+1)·B/world."""
    tasks = len(batch)
    if tasks % world:
        raise ValueError(
            f"a meta-batch of {tasks} tasks cannot be split evenly over {world} processes;"
            f" use a meta-batch that is a multiple of {world}"
        )
    share = tasks // world
    return batch[rank * share : (rank + 1) * share]


def wrap(method: nn.Module, process: Process) -> nn.Module:
    """DDP around `method` when there are several processes (it broadcasts rank 0's weights, then
    averages gradients in backward); `method` itself when there is one."""
    if process.world == 1:
        return method
    ids = [process.device.index] if process.device.type == "cuda" else None
    return DistributedDataParallel(method.to(process.device), device_ids=ids)


def unwrap(method: nn.Module) -> nn.Module:
    """The method inside a DDP wrapper (its own loss, state_dict without 'module.' prefixes)."""
    return method.module if isinstance(method, DistributedDataParallel) else method


def is_main() -> bool:
    """True in rank 0, or when torch.distributed is not in use."""
    return not dist.is_initialized() or dist.get_rank() == 0
