"""MAML meta-training speed against its peers: higher, torchopt, learn2learn, a plain loop.

The configuration is MAML's Omniglot one on the course's Conv4 (Finn et al. 2017,
arXiv:1703.03400): 5-way 1-shot tasks with 15 queries per class, meta-batches of 16 tasks, one
inner SGD step at lr 0.4, the exact second-order meta-gradient. Every method computes the SAME
function from the SAME initial weights on the SAME meta-batches:

    [conv 3×3 → batch norm (the batch's statistics, no running averages) → 2×2 max-pool
    → ReLU] × 4 → linear;  meta-loss = mean over tasks of the query cross-entropy after one
    inner step on the support set.

- ours: `metalearn_course.gradient.MAML` run by the engine (`engine.fast`: plain-autograd
  inner gradients, the first block folded) as train.fit drives it, with a Python loop over the
  tasks (`fast(MAML(...))`) and one backward per task (`tasks_per_backward=1`), or vmap
  (`fast(MAML(...), vmap=True)`) and one backward per meta-batch, in PyTorch's default memory
  layout or channels-last (the model and the images, see channels_last_images); and the
  teaching core alone (`MAML(...)` without the engine: torch.func.grad, no folding), the
  loop a student reads, to show what the engine buys;
- plain loop: the inner step unrolled with `torch.autograd.grad(create_graph=True)` on Conv4
  written with torch.nn.functional, task by task, no library;
- higher 0.2.1: `higher.innerloop_ctx` with a differentiable SGD step, as in its MAML example;
- torchopt 0.7.3: `torchopt.MetaSGD` with extract/recover_state_dict, as in its MAML example;
- learn2learn 0.2.0: `l2l.algorithms.MAML`, `clone()` and `adapt()`; it does not install on
  Python 3.11, so it is timed only when it can be imported (see benchmarks/README.md).

The peers use torch's own `nn.BatchNorm2d` in training mode with `track_running_stats=False`
(the same function as TaskBatchNorm), run in the default layout as their examples do
(`--same-layout`: channels-last, like ours), and, as their examples do, call `backward()` once
per task, which frees each task's graph before the next task starts.

Measured for each method:

- meta-iterations per second: forward and backward of one meta-batch, i.e. the meta-gradient
  in the parameters' .grad (the outer optimizer step is left out: it is the same for all). The
  median of `--repeats` timings; the methods take turns, so that a busy moment of the machine
  slows all of them alike. The ratio is against the fastest peer of the same run. On a machine
  busy with other work, `--clock cpu` counts this process's CPU seconds instead of elapsed
  seconds (meta-iterations per CPU-second; two busy threads spend two CPU-seconds a second);
- peak memory: the most memory one meta-iteration adds (CUDA: the allocator's peak; CPU: the
  peak of the resident set size, Linux only);
- exactness: the largest relative error ||g - g_ref|| / ||g_ref|| over the parameter tensors,
  (1) of the float32 meta-gradient of one meta-batch against the plain loop in float64 on the
  same weights and data, and (2) in float64 on a tiny configuration (2 tasks, 2 queries per
  class, 8 channels), where every method must agree to ~1e-12. Conv biases are left out: batch
  norm cancels them, so their exact meta-gradient is zero and their "relative" error would
  only compare rounding noise. First-order MAML's error is printed too: the check separates it;
- work: the FLOPs of one meta-iteration, counted by `torch.utils.flop_counter` for every
  method, and the share of the machine's convolution throughput each method reaches: the
  plain loop's conv FLOPs per meta-iteration × meta-iterations/s, divided by a ceiling
  measured in the same run, between the timings: forward and backward of Conv4's four conv
  layers alone at one task's support and query batch sizes, in the faster layout. (The counter
  ignores `groups` in the weight-gradient term of `convolution_backward` in torch 2.13, so it
  over-counts vmapped convolutions, which are grouped: hence the plain loop's count.)

    python benchmarks/maml_peers.py                        # synthetic images shaped like Omniglot
    python benchmarks/maml_peers.py --omniglot             # the real Vinyals training split
    python benchmarks/maml_peers.py --same-layout          # the peers channels-last too
    python benchmarks/maml_peers.py --tasks 2 --repeats 2  # a quick look
    python benchmarks/maml_peers.py --clock cpu            # on a machine busy with other work
"""

from __future__ import annotations

import argparse
import copy
import ctypes
import gc
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from importlib.metadata import version

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from metalearn_course.data import EpisodeBatch, EpisodeSampler
from metalearn_course.device import pick_device
from metalearn_course.engine import fast
from metalearn_course.gradient import MAML, TaskBatchNorm, conv4_classifier
from metalearn_course.train import accumulate_gradient


@dataclass(frozen=True)
class Config:
    """One MAML problem: task shape, meta-batch, inner step, network width."""

    way: int = 5
    shot: int = 1
    queries: int = 15
    tasks: int = 16  # the meta-batch
    inner_lr: float = 0.4
    hidden: int = 64  # Conv4's channels
    image_size: int = 28


@dataclass
class Runner:
    """A method, ready to run: step(meta_batch) leaves the meta-gradient in the .grad of
    `params`. channels_last: it wants its images in the channels-last layout."""

    name: str
    step: Callable[[EpisodeBatch], None]
    params: dict[str, torch.Tensor]  # the meta-parameters, by their names in conv4_classifier
    channels_last: bool
    peer: bool = True

    def meta_gradient(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        self.step(in_layout(batch, self.channels_last))
        return {name: p.grad.detach().clone() for name, p in self.params.items()}


def tasks_of(batch: EpisodeBatch) -> Iterator[tuple[torch.Tensor, ...]]:
    """(support_x, support_y, query_x, query_y) of each task of a meta-batch."""
    yield from zip(batch.support_x, batch.support_y, batch.query_x, batch.query_y, strict=True)


def clear_grads(params: dict[str, torch.Tensor]) -> None:
    for p in params.values():
        p.grad = None


def channels_last_images(x: torch.Tensor) -> torch.Tensor:
    """Images [..., C, H, W] stored channels-last (C varies fastest in memory).

    Not `x.contiguous(memory_format=torch.channels_last)`: with one channel the two layouts
    hold the same bytes, that call changes nothing, and a convolution then reads the ambiguous
    strides as the default layout, so the whole first block (the largest activations) runs in
    the slow layout. Strides that say "channels-last" (C's stride 1) settle it.
    """
    *lead, c, h, w = x.shape
    # An empty [..., H, W, C] tensor seen as [..., C, H, W]: C's stride is 1.
    return x.new_empty((*lead, h, w, c)).movedim(-1, -3).copy_(x)


def in_layout(batch: EpisodeBatch, channels_last: bool) -> EpisodeBatch:
    if not channels_last:
        return batch
    return replace(
        batch,
        support_x=channels_last_images(batch.support_x),
        query_x=channels_last_images(batch.query_x),
    )


def with_dtype(batch: EpisodeBatch, dtype: torch.dtype) -> EpisodeBatch:
    return replace(batch, support_x=batch.support_x.to(dtype), query_x=batch.query_x.to(dtype))


# ---------------------------------------------------------------------------------------------
# The methods


def ours(
    init: nn.Module, cfg: Config, batched: bool, channels_last: bool, engine: bool = True
) -> Runner:
    """The library's MAML as train.fit drives it: the loop over tasks with one backward per
    task (fit's tasks_per_backward=1), or vmap with one forward and one backward of the whole
    meta-batch. engine=False: the teaching core alone (the loop only)."""
    model = MAML(copy.deepcopy(init), inner_steps=1, inner_lr=cfg.inner_lr)
    if engine:
        model = fast(model, vmap=batched)
    if channels_last:
        model.to(memory_format=torch.channels_last)

    def step(batch: EpisodeBatch) -> None:
        model.zero_grad(set_to_none=True)
        accumulate_gradient(model, batch, model.loss, None if batched else 1)

    layout = f"{'vmap' if batched else 'loop'}{', channels-last' if channels_last else ''}"
    name = f"{'ours' if engine else 'core only'}, {layout}"
    return Runner(name, step, dict(model.model.named_parameters()), channels_last, peer=False)


def peer_network(init: nn.Module, channels_last: bool) -> nn.Module:
    """A copy of the initial network for the peers: torch's own BatchNorm2d with the batch's
    statistics always and no running averages, i.e. the same function as TaskBatchNorm."""
    net = copy.deepcopy(init)
    for parent in list(net.modules()):
        for name, child in parent.named_children():
            if isinstance(child, TaskBatchNorm):
                norm = nn.BatchNorm2d(len(child.weight), child.eps, track_running_stats=False)
                norm.weight, norm.bias = child.weight, child.bias  # the copy's own Parameters
                setattr(parent, name, norm)
    return net.to(memory_format=torch.channels_last) if channels_last else net


def conv4_forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """conv4_classifier written out with torch.nn.functional, parameters in its order."""
    *blocks, head_weight, head_bias = params
    for i in range(0, len(blocks), 4):
        conv_weight, conv_bias, gamma, beta = blocks[i : i + 4]
        x = F.conv2d(x, conv_weight, conv_bias, padding=1)
        x = F.batch_norm(x, None, None, gamma, beta, training=True)
        x = F.relu(F.max_pool2d(x, 2))  # the library's block order: pool, then ReLU
    return F.linear(x.flatten(1), head_weight, head_bias)


PLAIN = "plain autograd loop"  # the reference: the float64 checks compare against it


def plain_loop(init: nn.Module, cfg: Config, channels_last: bool = False) -> Runner:
    """The inner step unrolled by hand, as a tutorial does it without a meta-learning library."""
    net = peer_network(init, channels_last)
    params = {k: v.detach().clone().requires_grad_() for k, v in net.named_parameters()}
    weights = list(params.values())

    def step(batch: EpisodeBatch) -> None:
        clear_grads(params)
        for support_x, support_y, query_x, query_y in tasks_of(batch):
            inner = F.cross_entropy(conv4_forward(weights, support_x), support_y)
            # create_graph=True: the inner gradient is itself differentiable, so the outer
            # backward contains the Hessian-vector product of the exact meta-gradient.
            grads = torch.autograd.grad(inner, weights, create_graph=True)
            adapted = [w - cfg.inner_lr * g for w, g in zip(weights, grads, strict=True)]
            outer = F.cross_entropy(conv4_forward(adapted, query_x), query_y)
            (outer / cfg.tasks).backward()  # the mean over tasks, accumulated task by task

    return Runner(PLAIN, step, params, channels_last)


def higher_peer(init: nn.Module, cfg: Config, channels_last: bool = False) -> Runner:
    """higher's MAML example: a functional, monkey-patched copy of the module per task."""
    import higher

    net = peer_network(init, channels_last)
    params = dict(net.named_parameters())
    inner_opt = torch.optim.SGD(net.parameters(), lr=cfg.inner_lr)

    def step(batch: EpisodeBatch) -> None:
        clear_grads(params)
        for support_x, support_y, query_x, query_y in tasks_of(batch):
            # copy_initial_weights=False: the patched module starts from the real parameters,
            # so that the meta-gradient reaches their .grad.
            with higher.innerloop_ctx(net, inner_opt, copy_initial_weights=False) as (f, opt):
                opt.step(F.cross_entropy(f(support_x), support_y))
                (F.cross_entropy(f(query_x), query_y) / cfg.tasks).backward()

    return Runner(f"higher {version('higher')}", step, params, channels_last)


def torchopt_peer(init: nn.Module, cfg: Config, channels_last: bool = False) -> Runner:
    """torchopt's MAML example: MetaSGD swaps the module's parameters for differentiable
    updated tensors; recover_state_dict puts the meta-parameters back after each task."""
    import torchopt

    net = peer_network(init, channels_last)
    params = dict(net.named_parameters())
    inner_opt = torchopt.MetaSGD(net, lr=cfg.inner_lr)
    net_state = torchopt.extract_state_dict(net, by="reference", detach_buffers=True)
    opt_state = torchopt.extract_state_dict(inner_opt, by="reference")

    def step(batch: EpisodeBatch) -> None:
        clear_grads(params)
        for support_x, support_y, query_x, query_y in tasks_of(batch):
            inner_opt.step(F.cross_entropy(net(support_x), support_y))
            (F.cross_entropy(net(query_x), query_y) / cfg.tasks).backward()
            torchopt.recover_state_dict(net, net_state)
            torchopt.recover_state_dict(inner_opt, opt_state)

    return Runner(f"torchopt {version('torchopt')}", step, params, channels_last)


def learn2learn_peer(init: nn.Module, cfg: Config, channels_last: bool = False) -> Runner:
    """learn2learn's MAML example: clone() the wrapped module per task, adapt() the clone."""
    import learn2learn as l2l

    net = peer_network(init, channels_last)
    params = dict(net.named_parameters())
    maml = l2l.algorithms.MAML(net, lr=cfg.inner_lr, first_order=False)

    def step(batch: EpisodeBatch) -> None:
        clear_grads(params)
        for support_x, support_y, query_x, query_y in tasks_of(batch):
            learner = maml.clone()
            learner.adapt(F.cross_entropy(learner(support_x), support_y))
            (F.cross_entropy(learner(query_x), query_y) / cfg.tasks).backward()

    return Runner(f"learn2learn {version('learn2learn')}", step, params, channels_last)


PEERS: dict[str, Callable[[nn.Module, Config, bool], Runner]] = {
    "plain loop": plain_loop,
    "higher": higher_peer,
    "torchopt": torchopt_peer,
    "learn2learn": learn2learn_peer,
}


def build_runners(
    init: nn.Module, cfg: Config, same_layout: bool, skipped: dict[str, str]
) -> list[Runner]:
    """Our four engine variants and the core alone, then the peers, each on its own copy of
    `init`. A peer that cannot be imported is left out, with the reason in `skipped`."""
    runners = [
        ours(init, cfg, batched=batched, channels_last=channels_last)
        for batched in (False, True)
        for channels_last in (False, True)
    ]
    runners.append(ours(init, cfg, batched=False, channels_last=True, engine=False))
    for name, build in PEERS.items():
        try:
            runners.append(build(init, cfg, same_layout))
        except ImportError as error:  # not installed, or a compiled part that does not load
            skipped[name] = f"{type(error).__name__}: {error}"
    return runners


# ---------------------------------------------------------------------------------------------
# Measurements


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# Wall-clock seconds, or the CPU seconds of this process (all its threads): on a machine shared
# with other programs, a process waiting for a core uses no CPU time, so the CPU clock is far
# less disturbed by them (it still counts the time the threads spend waiting for each other).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def seconds(run: Callable[[], None], device: torch.device, clock: str = "wall") -> float:
    now = CLOCKS[clock]
    synchronize(device)  # a GPU runs asynchronously: time the work, not its launch
    start = now()
    run()
    synchronize(device)
    return now() - start


def _resident(field: str) -> int:
    """VmRSS (now) or VmHWM (the peak since the last reset) of this process, in bytes."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"no {field} in /proc/self/status")


def peak_memory(runner: Runner, batch: EpisodeBatch, device: torch.device) -> float | None:
    """Bytes one meta-iteration adds at its peak; None where that cannot be measured."""
    batch = in_layout(batch, runner.channels_last)
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        runner.step(batch)
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    try:
        # Hand the memory freed so far back to the system, so that this step has to fetch its
        # own again, then reset the kernel's high-water mark of this process ("5").
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
        before = _resident("VmRSS")
        runner.step(batch)
        return _resident("VmHWM") - before
    except OSError:  # not Linux (no libc.so.6, no /proc), or not allowed
        return None


def flops(run: Callable[[], None]) -> tuple[float, float]:
    """(all FLOPs, convolution FLOPs) of one call of `run`, forward and backward."""
    counter = FlopCounterMode(display=False)
    with counter:
        run()
    counts = counter.get_flop_counts()["Global"]
    conv = sum(n for op, n in counts.items() if "convolution" in str(op))
    return float(sum(counts.values())), float(conv)


def conv_workloads(cfg: Config, device: torch.device) -> dict[str, Callable[[], None]]:
    """The ceiling's workload in each memory layout: forward and backward of Conv4's four conv
    layers alone, at one task's support and at its query batch size; MAML's second-order
    graph is made of convolutions of these shapes. (The images' gradient is never needed.)"""
    sizes = [cfg.image_size // 2**i for i in range(4)]  # each block's input: 28, 14, 7, 3
    channels = [1] + [cfg.hidden] * 3
    workloads = {}
    for channels_last in (False, True):
        layout = torch.channels_last if channels_last else torch.contiguous_format
        pairs = []
        for batch in (cfg.way * cfg.shot, cfg.way * cfg.queries):
            for block, (c, s) in enumerate(zip(channels, sizes, strict=True)):
                conv = nn.Conv2d(c, cfg.hidden, 3, padding=1).to(device, memory_format=layout)
                x = torch.randn(batch, c, s, s, device=device)
                x = channels_last_images(x) if channels_last else x
                pairs.append((conv, x.requires_grad_(block > 0)))

        def run(pairs: list[tuple[nn.Module, torch.Tensor]] = pairs) -> None:
            for conv, x in pairs:
                conv(x).sum().backward()

        workloads["channels-last" if channels_last else "default"] = run
    return workloads


def max_relative_error(
    gradient: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]
) -> float:
    """max over parameter tensors of ||g - g_ref|| / ||g_ref||, in float64, conv biases left
    out (batch norm cancels them: their exact meta-gradient is zero)."""
    errors = []
    for name, ref in reference.items():
        if name.endswith(".0.bias"):  # body.encoder.<block>.0 is the block's convolution
            continue
        ref = ref.double()
        errors.append(((gradient[name].double() - ref).norm() / ref.norm()).item())
    return max(errors)


def exactness(
    runners: list[Runner], init: nn.Module, cfg: Config, batch: EpisodeBatch, same_layout: bool
) -> tuple[dict[str, float], dict[str, float], float]:
    """Relative meta-gradient errors of every method, in float32 on `batch` and in float64 on
    a tiny configuration, each against the plain loop in float64 on the same weights and data;
    and the error of first-order MAML on `batch`, which the check must be able to see."""
    reference = plain_loop(copy.deepcopy(init).double(), cfg)
    expected = reference.meta_gradient(with_dtype(batch, torch.float64))
    single = {r.name: max_relative_error(r.meta_gradient(batch), expected) for r in runners}
    fomaml = fast(MAML(copy.deepcopy(init), 1, cfg.inner_lr, first_order=True))
    fomaml.loss(fomaml(batch), batch).backward()
    first_order = {name: p.grad for name, p in fomaml.model.named_parameters()}
    first_order_error = max_relative_error(first_order, expected)

    tiny = replace(cfg, tasks=2, queries=2, hidden=8)
    torch.manual_seed(1)
    device = batch.support_x.device
    tiny_init = conv4_classifier(tiny.way, hidden=tiny.hidden).to(device, torch.float64)
    images = torch.rand(tiny.way, tiny.shot + tiny.queries, 28, 28, dtype=torch.float64)
    sampler = EpisodeSampler(images, tiny.way, tiny.shot, tiny.queries, seed=1)
    tiny_batch = with_dtype(sampler.sample_batch(tiny.tasks), torch.float64).to(device)
    expected = plain_loop(tiny_init, tiny).meta_gradient(tiny_batch)
    double = {
        r.name: max_relative_error(r.meta_gradient(tiny_batch), expected)
        for r in build_runners(tiny_init, tiny, same_layout, {})
    }
    return single, double, first_order_error


# ---------------------------------------------------------------------------------------------
# The run


def torchopt_note() -> str | None:
    """Why torchopt runs its pure-Python path, if it does."""
    try:
        import torchopt._C  # noqa: F401  (its compiled ops, built against an older torch)
    except ImportError as error:
        why = "undefined symbol" if "undefined symbol" in str(error) else type(error).__name__
        return f"torchopt: its C++ extension does not load ({why}); it runs its Python path"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--omniglot", action="store_true", help="use the real Vinyals train split")
    parser.add_argument("--tasks", type=int, default=16, help="meta-batch size")
    parser.add_argument("--repeats", type=int, default=10, help="timed meta-iterations each")
    parser.add_argument("--device", default="auto", help="auto (a GPU if there is one), cpu, cuda")
    parser.add_argument(
        "--same-layout", action="store_true", help="run the peers channels-last too"
    )
    parser.add_argument(
        "--clock",
        choices=CLOCKS,
        default="wall",
        help="wall: elapsed time; cpu: CPU time of this process, for a busy shared machine",
    )
    args = parser.parse_args()
    # auto: a CUDA GPU if there is one (not MPS: the float64 checks need a device that has it)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = device if args.device == "auto" else pick_device(args.device)
    if args.clock == "cpu" and device.type != "cpu":
        parser.error("--clock cpu measures CPU work; on a GPU use the wall clock")
    cfg = Config(tasks=args.tasks)
    if args.omniglot:
        from metalearn_course.data import load_omniglot

        images = load_omniglot("vinyals-train").images
    else:
        generator = torch.Generator().manual_seed(0)
        images = torch.randint(0, 255, (4112, 20, 28, 28), dtype=torch.uint8, generator=generator)
    sampler = EpisodeSampler(images, cfg.way, cfg.shot, cfg.queries, seed=0)
    batches = [sampler.sample_batch(cfg.tasks).to(device) for _ in range(args.repeats)]
    # Each layout gets its own copy of the images, made before the timings (a data loader's job).
    layouts = {cl: [in_layout(b, cl) for b in batches] for cl in (False, True)}
    torch.manual_seed(0)
    init = conv4_classifier(cfg.way, hidden=cfg.hidden).to(device)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}; "
        f"{cfg.way}-way {cfg.shot}-shot {cfg.queries}-query, meta-batch {cfg.tasks}, one inner "
        f"step at lr {cfg.inner_lr}, second order; {'Omniglot' if args.omniglot else 'random'} "
        f"images; peers in the {'channels-last' if args.same_layout else 'default'} layout; "
        f"{args.clock} clock"
    )
    skipped: dict[str, str] = {}
    runners = build_runners(init, cfg, args.same_layout, skipped)
    peers = [r for r in runners if r.peer]
    for name, reason in skipped.items():
        print(f"skipped {name}: {reason}")
    if (note := torchopt_note()) and "torchopt" not in skipped:
        print(note)

    single, double, first_order_error = exactness(runners, init, cfg, batches[0], args.same_layout)
    memory = {r.name: peak_memory(r, batches[0], device) for r in runners}
    counted = {r.name: flops(partial(r.step, layouts[r.channels_last][0])) for r in runners}
    total, conv = counted[PLAIN]  # a per-task loop: no grouped convolutions to mis-count

    workloads = conv_workloads(cfg, device)
    workload_flop = {layout: flops(run)[1] for layout, run in workloads.items()}
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    ceilings = []
    for i in range(args.repeats):  # the methods take turns: a busy moment slows all alike
        for r in runners:
            run = partial(r.step, layouts[r.channels_last][i])
            times[r.name].append(seconds(run, device, args.clock))
        # The ceiling is a best case: the best of three calls, in the faster layout.
        best = {
            k: min(seconds(run, device, args.clock) for _ in range(3))
            for k, run in workloads.items()
        }
        ceilings.append(max(workload_flop[k] / best[k] / 1e9 for k in workloads))
    ceiling = statistics.median(ceilings)
    speed = {name: 1 / statistics.median(t) for name, t in times.items()}
    fastest_peer = max(peers, key=lambda p: speed[p.name])

    print(
        f"one meta-iteration (plain loop, flop_counter): {total / 1e9:.1f} GFLOP, convolutions"
        f" {conv / 1e9:.1f}; conv ceiling {ceiling:.0f} GFLOP/s; first-order MAML's"
        f" meta-gradient error would be {first_order_error:.1e}"
    )
    print(
        f"{'method':<30} {'meta-it/s':>9} {'vs peer':>7} {'peak MiB':>8} {'GFLOP':>6} "
        f"{'of ceiling':>10} {'err fp32':>8} {'err fp64':>8}"
    )
    for r in runners:
        mib = "n/a" if memory[r.name] is None else f"{memory[r.name] / 2**20:.0f}"
        fp64 = "(ref.)" if r.name == PLAIN else f"{double[r.name]:8.1e}"
        share = conv * speed[r.name] / 1e9 / ceiling
        print(
            f"{r.name:<30} {speed[r.name]:9.3f} {speed[r.name] / speed[fastest_peer.name]:6.2f}x "
            f"{mib:>8} {counted[r.name][0] / 1e9:6.1f} {share:10.0%} {single[r.name]:8.1e} "
            f"{fp64:>8}"
        )
    best = max((r for r in runners if not r.peer), key=lambda r: speed[r.name])
    print(
        f"median of {args.repeats} meta-iterations each; fastest peer: {fastest_peer.name}; "
        f"fastest of ours: {best.name}, {speed[best.name] / speed[fastest_peer.name]:.2f}x as fast"
    )


if __name__ == "__main__":
    main()
