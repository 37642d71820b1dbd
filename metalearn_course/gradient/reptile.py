"""Reptile: train on a task for a few steps, then move the initialisation toward the result.

Nichol, Achiam & Schulman 2018, "On First-Order Meta-Learning Algorithms", arXiv:1803.02999.

For a task, run k steps of SGD (or Adam) on its data from the meta-parameters θ, giving φ̃;
then step θ toward φ̃. Over a meta-batch of B tasks the step uses the mean of the φ̃_i:

    θ ← θ + ε ( (1/B) Σ_i φ̃_i - θ )

No second derivative, and no query set: Reptile only ever trains. Why it works is the paper's
Taylor-expansion argument: to second order in the inner step size, the expected update contains
the gradient of the expected loss *and* a term that maximises the inner product between the
gradients of different minibatches of a task, the same term MAML's meta-gradient contains.
With k = 1 Reptile is joint training on all tasks, which is why k > 1 matters.

The update is not the gradient of any loss, so it gets its own function, `reptile_step`, which
changes the model's parameters in place like an optimizer step. For train.fit, the `Reptile`
module instead hands the optimizer the paper's pseudo-gradient g = θ - φ̄ (φ̄ the mean of the
φ̃_i): SGD with learning rate ε then performs exactly the update above, and Adam the paper's
"treat (θ - φ̃) as a gradient and plug it into Adam" variant.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from metalearn_course.data.episodes import Episode, EpisodeBatch
from metalearn_course.gradient.functional import (
    GradientFn,
    LossFn,
    Params,
    TaskBatchNorm,
    check_functional,
    check_inner_loop,
    inner_gradient,
    loop_over_tasks,
    update_running_stats,
)

OPTIMIZERS = ("sgd", "adam")
# Inner Adam as in the authors' code: β1 = 0 (no momentum across the few inner steps).
_BETA2, _EPS = 0.999, 1e-8


def inner_train(
    model: nn.Module,
    params: Params,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
    inner_steps: int,
    inner_lr: float,
    optimizer: str = "sgd",
    inner_batch: int | None = None,
    gradient: GradientFn = inner_gradient,
) -> Params:
    """φ̃: `inner_steps` steps of SGD or Adam (β1 = 0) on (x, y) from `params`.

    inner_batch: None: every step on all of (x, y). An int b: step t on the minibatch
        x[j::n // b] with j = t mod (n // b), as the paper's minibatches (each example once per
        n // b steps); on a class-major support set with shots divisible by n // b every
        minibatch holds the same number of examples of each class. b must divide n = len(x).
    gradient: how the inner gradient is taken (torch.func.grad; the engine's is faster).
    The result carries no gradient to `params`: Reptile is first order.
    """
    check_inner_loop(inner_steps, inner_lr)
    check_functional(model)
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r}; use one of {OPTIMIZERS}")
    n = x.shape[0]
    if inner_batch is not None and not (0 < inner_batch <= n and n % inner_batch == 0):
        raise ValueError(
            f"inner_batch={inner_batch} with {n} training examples; use a divisor of {n},"
            " or None for full-batch steps"
        )
    batches = 1 if inner_batch is None else n // inner_batch

    def loss(p: Params, t: int) -> torch.Tensor:
        j = t % batches  # strided minibatch j: examples j, j + batches, j + 2 batches, ...
        return loss_fn(functional_call(model, p, (x[j::batches],)), y[j::batches])

    params = {k: v.detach() for k, v in params.items()}
    second_moment = {k: torch.zeros_like(v) for k, v in params.items()}
    for t in range(1, inner_steps + 1):
        grads = gradient(partial(loss, t=t - 1), params, False)
        if optimizer == "sgd":
            params = {k: v - inner_lr * grads[k] for k, v in params.items()}
            continue
        for k, g in grads.items():
            second_moment[k] = _BETA2 * second_moment[k] + (1 - _BETA2) * g**2
        scale = 1 / (1 - _BETA2**t)  # Adam's bias correction (β1 = 0 needs none for g)
        params = {
            k: v - inner_lr * grads[k] / ((second_moment[k] * scale).sqrt() + _EPS)
            for k, v in params.items()
        }
    return params


def reptile_step(
    model: nn.Module,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    loss_fn: LossFn,
    inner_steps: int,
    inner_lr: float,
    outer_lr: float,
    inner_optimizer: str = "sgd",
    batched: bool = True,
    inner_batch: int | None = None,
) -> None:
    """One Reptile meta-update of `model`'s parameters, in place: θ ← θ + ε (mean_i φ̃_i - θ).

    support_x, support_y: the tasks' training data with a leading task dimension [T, ...].
    outer_lr: ε; the paper anneals it linearly from 1 to 0 over training.
    batched: the tasks' inner loops run together under vmap; False: a Python loop.
    inner_batch: minibatch size of the inner steps (see inner_train); None: full batch.
    """
    if not outer_lr > 0:
        raise ValueError(f"outer_lr={outer_lr}; use a step size ε > 0 (at most 1)")
    if support_x.shape[0] != support_y.shape[0]:
        raise ValueError(
            f"support_x has {support_x.shape[0]} tasks but support_y {support_y.shape[0]};"
            " give both the same leading (task) dimension"
        )
    params = dict(model.named_parameters())

    def task(x: torch.Tensor, y: torch.Tensor) -> Params:
        return inner_train(
            model, params, x, y, loss_fn, inner_steps, inner_lr, inner_optimizer, inner_batch
        )

    if batched:
        adapted = vmap(task)(support_x, support_y)
    else:
        tasks = [task(x, y) for x, y in zip(support_x, support_y, strict=True)]
        adapted = {k: torch.stack([t[k] for t in tasks]) for k in params}
    with torch.no_grad():
        for k, p in params.items():
            p.lerp_(adapted[k].mean(0), outer_lr)  # p + ε (φ̄ - p)


class Reptile(nn.Module):
    """Reptile for few-shot classification, trained by train.fit through a pseudo-gradient.

    forward(episode) adapts θ on each task's support set (inner_steps of SGD or Adam, no graph)
    and returns the adapted network's query logits, [N*Q, N] or [B, N*Q, N] for a meta-batch.
    After a training-mode forward, `loss` returns the query cross-entropy *as its value* (what
    fit logs) with the gradient θ - φ̄ attached (what the optimizer applies): with
    ``optimizer=torch.optim.SGD(method.parameters(), lr=ε)`` each fit step is one Reptile
    update. The query set is used only for this logged loss, never for the update.

    The authors' Omniglot settings: inner Adam, lr 1e-3, 5 steps in training on minibatches of
    10 of 10 examples per class (inner_batch=10, a training sampler with shot=10), 50 at test
    time (eval_inner_steps), ε annealed from 1 to 0, transductive batch norm.
    model: the network, used as it is; its batch norm must be TaskBatchNorm (conv4_classifier
        builds it so; see use_task_batch_norm), whose `transductive` setting is the protocol.
    inner_batch, eval_inner_batch: minibatch sizes of the inner steps in training and in eval
        mode (see inner_train; the authors' 5-way 1-shot command evaluates with minibatches
        of 5); None: the whole support set at every step.
    """

    def __init__(
        self,
        model: nn.Module,
        inner_steps: int = 5,
        inner_lr: float = 1e-3,
        *,
        inner_optimizer: str = "adam",
        eval_inner_steps: int | None = None,
        inner_batch: int | None = None,
        eval_inner_batch: int | None = None,
    ) -> None:
        super().__init__()
        eval_inner_steps = inner_steps if eval_inner_steps is None else eval_inner_steps
        for name, size in (("inner_batch", inner_batch), ("eval_inner_batch", eval_inner_batch)):
            if size is not None and (
                isinstance(size, bool) or not isinstance(size, int) or size < 1
            ):
                raise ValueError(f"{name}={size!r}; use an int >= 1, or None for full batches")
        check_inner_loop(inner_steps, inner_lr)
        check_inner_loop(eval_inner_steps, inner_lr)
        if inner_optimizer not in OPTIMIZERS:
            raise ValueError(f"inner_optimizer={inner_optimizer!r}; use one of {OPTIMIZERS}")
        check_functional(model)
        self.model = model
        self.inner_steps, self.eval_inner_steps = inner_steps, eval_inner_steps
        self.inner_lr, self.inner_optimizer = inner_lr, inner_optimizer
        self.inner_batch, self.eval_inner_batch = inner_batch, eval_inner_batch
        self._pending: tuple[torch.Tensor, Params] | None = None  # (output, θ - φ̄) for loss
        # How the work is done; engine.fast replaces both with faster equivalents (as MAML's).
        self.gradient: GradientFn = inner_gradient
        self.map_tasks = loop_over_tasks

    @property
    def transductive(self) -> bool:
        """Batch statistics in eval mode too (False when a TaskBatchNorm keeps running ones)."""
        return all(m.transductive for m in self.model.modules() if isinstance(m, TaskBatchNorm))

    def forward(self, episode: Episode | EpisodeBatch) -> torch.Tensor:
        episode.validate_tasks()
        batched = isinstance(episode, EpisodeBatch)  # a meta-batch: every task adapts on its own
        steps = self.inner_steps if self.training else self.eval_inner_steps
        inner_batch = self.inner_batch if self.training else self.eval_inner_batch
        theta = {k: v.detach() for k, v in self.model.named_parameters()}

        def task(support_x, support_y, query_x):
            adapted = inner_train(
                self.model,
                theta,
                support_x,
                support_y,
                F.cross_entropy,
                steps,
                self.inner_lr,
                self.inner_optimizer,
                inner_batch,
                self.gradient,
            )
            return functional_call(self.model, adapted, (query_x,)), adapted

        data = (episode.support_x, episode.support_y, episode.query_x)
        logits, adapted = self.map_tasks(task, data) if batched else task(*data)
        if self.training:
            mean = {k: v.mean(0) for k, v in adapted.items()} if batched else adapted
            self._pending = (logits, {k: theta[k] - mean[k] for k in theta})
            if not self.transductive:
                update_running_stats(self.model, adapted, episode.query_x, batched)
        return logits

    def loss(self, output: torch.Tensor, episode: Episode | EpisodeBatch) -> torch.Tensor:
        """Query cross-entropy; after a training forward, with the gradient θ - φ̄ attached."""
        query_loss = F.cross_entropy(
            output.reshape(-1, output.shape[-1]), episode.query_y.reshape(-1)
        )
        pending, self._pending = self._pending, None
        if pending is None or pending[0] is not output:
            return query_loss  # evaluation: a number without gradient
        params = dict(self.model.named_parameters())
        # ∂/∂θ of Σ <θ, g> is g, and surrogate - surrogate.detach() is exactly 0 in value.
        surrogate = sum((params[k] * g).sum() for k, g in pending[1].items())
        return query_loss + (surrogate - surrogate.detach())
