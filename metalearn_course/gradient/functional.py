"""Shared pieces of the gradient-based learners: batch norm per task, the inner gradient, a
classifier split into body and head, meta-batches of episodes.

Batch norm per task. MAML normalises with the statistics of the current batch, at training
*and* at test time (the code of Finn et al. 2017, arXiv:1703.03400, keeps no running averages):

    BN(x) = γ (x - μ_B) / sqrt(σ²_B + ε) + β,    μ_B, σ²_B over (batch, height, width)

This is *transductive* (Nichol et al. 2018, arXiv:1803.02999, who name the setting): a test
query is normalised together with the episode's other queries, so it sees their statistics.
`TaskBatchNorm` is that layer, with the parameter and buffer names of torch's batch norm;
`conv4_classifier` builds the chapter's network with it, `use_task_batch_norm` converts a
network of your own (explicitly: the methods never rewrite the model they are given).

`transductive=False` is the usual, non-transductive batch norm: training normalises with the
batch statistics, evaluation (module.eval()) with running averages. The averages are updated
by `update_running_stats`, outside every torch.func transform (a transform may not mutate
captured buffers), from a no-grad pass of the adapted network over the query images.

Everything here runs one task at a time, the way the papers write it. Running the tasks of a
meta-batch together under vmap, folding the first batch norm into its convolution and the
faster plain-autograd inner gradient are the engine's (metalearn_course.engine, applied
explicitly with ``engine.fast(method)``), tested equal to this code in float64.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad
from torch.nn.modules.batchnorm import _BatchNorm

from metalearn_course.data.episodes import EpisodeBatch, EpisodeSampler
from metalearn_course.distributed import shard
from metalearn_course.nets import Conv4

# Parameters by name, as in model.named_parameters(): what torch.func.functional_call takes.
Params = dict[str, torch.Tensor]
# loss_fn(prediction, target) -> scalar, e.g. F.cross_entropy or F.mse_loss.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# One rate for every step (float or 0-d tensor), one per step (tensor [inner_steps]), or one
# tensor per parameter, shaped like it (Meta-SGD).
InnerLR = float | torch.Tensor | Mapping[str, torch.Tensor]


def check_inner_loop(inner_steps: int, inner_lr: InnerLR) -> None:
    """Raise ValueError unless inner_steps >= 1 and inner_lr is a valid rate (see InnerLR)."""
    if isinstance(inner_steps, bool) or not isinstance(inner_steps, int) or inner_steps < 1:
        raise ValueError(
            f"inner_steps={inner_steps!r}; use an int >= 1 (gradient steps on the support set)"
        )
    if isinstance(inner_lr, int | float):
        if not inner_lr >= 0:  # `not >=` also catches nan
            raise ValueError(f"inner_lr={inner_lr}; use a learning rate >= 0")
    elif isinstance(inner_lr, torch.Tensor):
        if inner_lr.ndim > 1 or (inner_lr.ndim == 1 and len(inner_lr) != inner_steps):
            raise ValueError(
                f"inner_lr has shape {tuple(inner_lr.shape)}; use a scalar or one rate per"
                f" step, shape [{inner_steps}]"
            )
    elif not isinstance(inner_lr, Mapping):
        raise TypeError(f"inner_lr is a {type(inner_lr).__name__}; see InnerLR for the choices")


# gradient_fn(loss_fn, params, create_graph) -> ∇ loss_fn(params) by name: how an inner loop
# takes its gradient (inner_gradient here; the engine swaps in a faster equivalent).
GradientFn = Callable[[Callable[[Params], torch.Tensor], Params, bool], Params]


def inner_gradient(
    loss_fn: Callable[[Params], torch.Tensor], params: Params, create_graph: bool = True
) -> Params:
    """∇ loss_fn(params), by name: ``torch.func.grad(loss_fn)(params)``.

    The result is itself a differentiable function of `params` whenever autograd records the
    caller (MAML's second-order term); detach `params` to make it a constant (first-order
    MAML). It runs under no_grad too (evaluation adapts without recording) and inside vmap.
    create_graph is ignored here: torch.func.grad decides by itself; it is the hint a
    plain-autograd version needs (engine.fast_gradient).
    """
    return grad(loss_fn)(params)


class TaskBatchNorm(nn.Module):
    """Batch norm over (batch, *spatial) written with plain tensor operations.

    Parameters and buffers have the names of nn.BatchNorm1d/2d (weight, bias, running_mean,
    running_var, num_batches_tracked), so state_dicts move between the two.
    transductive=True: batch statistics always, in eval mode too (MAML's batch norm).
    transductive=False: batch statistics in training mode, running averages in eval mode.
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        transductive: bool = True,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))
        self.eps, self.momentum, self.transductive = eps, momentum, transductive
        self.recording = False  # set only by update_running_stats, outside any transform

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.transductive or self.training):
            return self.normalize(x, self.running_mean, self.running_var)
        if not self.recording:  # torch's fused kernel: right derivatives of every order
            return F.batch_norm(x, None, None, self.weight, self.bias, True, 0.0, self.eps)
        mean, var = self.batch_statistics(x)
        self._record(mean, var, x.numel() // x.shape[1])
        return self.normalize(x, mean, var)

    def batch_statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and biased variance (the one batch norm divides by) per channel of `x`."""
        var, mean = torch.var_mean(x, [0, *range(2, x.ndim)], correction=0)
        return mean, var

    def normalize(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """γ (x - mean) / sqrt(var + ε) + β with plain tensor operations."""
        # One scale and one shift per channel: two passes over the large activation tensor
        # instead of five, in every order of autograd.
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        shape = (1, -1) + (1,) * (x.ndim - 2)  # broadcast per channel over [n, C, ...]
        return x * scale.view(shape) + shift.view(shape)

    @torch.no_grad()
    def _record(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        # Running variance is unbiased, like torch's batch norm.
        self.running_mean.lerp_(mean, self.momentum)
        self.running_var.lerp_(var * n / max(n - 1, 1), self.momentum)
        self.num_batches_tracked += 1

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, transductive={self.transductive}"


def use_task_batch_norm(model: nn.Module, transductive: bool = True) -> nn.Module:
    """Replace, in place, every torch batch-norm layer of `model` by a TaskBatchNorm holding the
    same parameter objects and statistics; set `transductive` on all of them. Returns `model`."""
    for name, child in model.named_children():
        if isinstance(child, _BatchNorm):
            if not child.affine:
                raise ValueError(f"batch norm {name!r} has affine=False; use affine=True")
            task_norm = TaskBatchNorm(child.num_features, child.eps, child.momentum or 0.1)
            task_norm.weight, task_norm.bias = child.weight, child.bias  # the same Parameters
            if child.running_mean is not None:
                task_norm.load_state_dict(child.state_dict())
            setattr(model, name, task_norm.to(child.weight.device, child.weight.dtype))
        else:
            use_task_batch_norm(child, transductive)
    for module in model.modules():
        if isinstance(module, TaskBatchNorm):
            module.transductive = transductive
    return model


def check_functional(model: nn.Module) -> None:
    """Raise ValueError if `model` has a torch batch-norm layer (see the module docstring)."""
    if any(isinstance(m, _BatchNorm) for m in model.modules()):
        raise ValueError(
            "model has torch.nn.BatchNorm layers, whose running statistics a functional"
            " inner loop cannot update; build it with TaskBatchNorm (conv4_classifier(way)"
            " does), or convert it first: use_task_batch_norm(model)"
        )


@contextlib.contextmanager
def _recording(model: nn.Module) -> Iterator[None]:
    norms = [m for m in model.modules() if isinstance(m, TaskBatchNorm)]
    try:
        for m in norms:
            m.recording = True
        yield
    finally:
        for m in norms:
            m.recording = False


def loop_over_tasks(
    task: Callable[..., tuple[torch.Tensor, Params]], data: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, Params]:
    """Run `task` (one task's tensors -> (output, adapted parameters)) on every task of a
    meta-batch, one after the other, and stack the results along a new task dimension."""
    outputs = [task(*one) for one in zip(*data, strict=True)]
    params = {k: torch.stack([out[1][k] for out in outputs]) for k in outputs[0][1]}
    return torch.stack([out[0] for out in outputs]), params


def update_running_stats(model: nn.Module, params: Params, x: torch.Tensor, batched: bool) -> None:
    """Fold the batch statistics of `model` with `params` on `x` into the running averages of
    its TaskBatchNorm layers (no gradients). batched: params and x have a leading task
    dimension, and each task is run with its own parameters."""
    tasks = range(x.shape[0]) if batched else [None]
    with torch.no_grad(), _recording(model):
        for t in tasks:
            task_params = params if t is None else {k: v[t] for k, v in params.items()}
            functional_call(model, task_params, (x if t is None else x[t],))


class BodyHead(nn.Module):
    """A feature extractor `body` followed by a linear `head`: the split ANIL needs (it adapts
    the head only); MAML adapts both. forward(x) = head(body(x))."""

    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def conv4_classifier(
    way: int,
    in_channels: int = 1,
    hidden: int = 64,
    blocks: int = 4,
    image_size: int = 28,
    transductive: bool = True,
) -> BodyHead:
    """The Omniglot classifier of the MAML chapter: Conv4 body + linear head with `way` logits,
    its batch norm TaskBatchNorm (transductive: batch statistics in eval mode too, the paper's).

    (The MAML paper's Omniglot network used stride-2 convolutions instead of max-pooling; the
    course keeps the one shared Conv4 so that every chapter's numbers use the same backbone.)
    """
    if way < 2:
        raise ValueError(f"way={way}; a classifier needs way >= 2 classes")
    size = image_size
    for _ in range(blocks):
        size //= 2  # each block's 2×2 max-pool halves the map (3×3 conv, padding 1, keeps it)
    if size < 1:
        raise ValueError(f"image_size={image_size} is too small for {blocks} blocks")
    net = BodyHead(Conv4(in_channels, hidden, blocks), nn.Linear(hidden * size * size, way))
    return use_task_batch_norm(net, transductive)  # our own new network: nobody else's


class MetaBatches:
    """An endless stream of meta-batches of `tasks` episodes each from `sampler`, for train.fit:
    ``fit(MAML(model), meta_batches(sampler, 16), steps)``.

    It keeps no episodes of its own, so its position is the sampler's: `state_dict` and
    `load_state_dict` pass through, and fit can save and resume a run.

    rank, world: in a run of `world` processes (metalearn_course.distributed), every process
    draws the whole meta-batch and keeps its share of `tasks / world` tasks.
    """

    def __init__(self, sampler: EpisodeSampler, tasks: int, rank: int = 0, world: int = 1) -> None:
        if tasks < 1:
            raise ValueError(f"tasks={tasks}; a meta-batch needs tasks >= 1")
        if not 0 <= rank < world:
            raise ValueError(f"rank={rank}, world={world}; use 0 <= rank < world")
        if tasks % world:
            raise ValueError(
                f"tasks={tasks} cannot be split evenly over world={world} processes;"
                f" use a multiple of {world}"
            )
        self.sampler, self.tasks, self.rank, self.world = sampler, tasks, rank, world

    def __iter__(self) -> Iterator[EpisodeBatch]:
        return self

    def __next__(self) -> EpisodeBatch:
        batch = self.sampler.sample_batch(self.tasks)
        return shard(batch, self.rank, self.world) if self.world > 1 else batch

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


def meta_batches(sampler: EpisodeSampler, tasks: int, rank: int = 0, world: int = 1) -> MetaBatches:
    """An endless stream of meta-batches of `tasks` episodes each (see MetaBatches)."""
    return MetaBatches(sampler, tasks, rank, world)
