"""Model-Agnostic Meta-Learning: learn an initialisation that a few gradient steps adapt.

Finn, Abbeel & Levine 2017, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep
Networks", arXiv:1703.03400.

A task has a support set (x^s, y^s) and a query set (x^q, y^q). Adaptation is k steps of
gradient descent on the support loss, starting from the meta-parameters θ:

    φ_0 = θ,    φ_{j+1} = φ_j - α_j ∇_φ L(f_{φ_j}(x^s), y^s)

and meta-training lowers the query loss of the adapted network over a meta-batch of B tasks:

    θ ← θ - β ∇_θ (1/B) Σ_i L(f_{φ_k(θ, task i)}(x^q_i), y^q_i)

The meta-gradient goes *through* the inner steps. For one step the chain rule gives

    ∇_θ L_q(φ_1) = (I - α ∇²_θ L_s(θ)) ∇_φ L_q(φ_1)

a Hessian-vector product, which autograd gets by differentiating the inner gradient again.
First-order MAML (FOMAML, in the same paper) drops the Hessian term, ∇_θ ≈ ∇_φ L_q(φ_k): it
is cheaper and, on Omniglot, nearly as good.

With torch.func every piece is a pure function of a parameter dictionary: `functional_call`
runs the network with given parameters, `grad` gives the inner gradient as a tensor that is
itself differentiable with respect to θ (so the outer backward contains the exact second-order
term). No module is ever copied, and the model you pass in is used as it is.

Two ways to use it:

    loss = maml_loss(model, dict(model.named_parameters()), *tasks, F.mse_loss, 1, 0.01)
    history = fit(MAML(conv4_classifier(way=5)), meta_batches(sampler, tasks=32), steps)

the first for regression (sinusoids, tasks = the four tensors of a SinusoidBatch), the second an
episodic classifier for train.fit and evaluate.few_shot.

Batch norm is MAML's: batch statistics at test time too ("transductive"), see TaskBatchNorm in
metalearn_course.gradient.functional; conv4_classifier builds its network with it.

This module runs a meta-batch's tasks one after the other: the algorithm as the paper writes
it. For the book's runs, ``engine.fast(MAML(...))`` gives the same method faster (the first
batch norm folded into its convolution, plain-autograd inner gradients, optionally vmap over
the tasks); tests/test_engine.py checks the two agree in float64.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from metalearn_course.data.episodes import Episode, EpisodeBatch
from metalearn_course.gradient.functional import (
    GradientFn,
    InnerLR,
    LossFn,
    Params,
    TaskBatchNorm,
    check_functional,
    check_inner_loop,
    inner_gradient,
    loop_over_tasks,
    update_running_stats,
)


def _rate(inner_lr: InnerLR, step: int, name: str) -> float | torch.Tensor:
    if isinstance(inner_lr, Mapping):
        return inner_lr[name]
    if isinstance(inner_lr, torch.Tensor) and inner_lr.ndim == 1:
        return inner_lr[step]
    return inner_lr


def adapt(
    model: nn.Module,
    params: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    loss_fn: LossFn,
    inner_steps: int,
    inner_lr: InnerLR,
    first_order: bool = False,
    gradient: GradientFn = inner_gradient,
) -> Params:
    """The inner loop on one task: φ_k from θ = `params` (a pure function; θ is not modified).

    params: the parameters to adapt, by name (dict(model.named_parameters()) for all of them);
        the model's other parameters take part in the forward pass unchanged.
    first_order: FOMAML; the result's gradient with respect to θ then has no Hessian term.
    gradient: how the inner gradient is taken (torch.func.grad; the engine's is faster).
    """
    check_inner_loop(inner_steps, inner_lr)
    check_functional(model)
    if isinstance(inner_lr, Mapping) and (missing := set(params) - set(inner_lr)):
        raise ValueError(f"inner_lr has no rate for {sorted(missing)}; give one per parameter")

    def support_loss(p: Params) -> torch.Tensor:
        return loss_fn(functional_call(model, p, (support_x,)), support_y)

    for step in range(inner_steps):
        # FOMAML: the gradient taken at a detached copy is a constant for the outer backward,
        # so the Hessian term vanishes, and its graph is never even built.
        at = {k: v.detach() for k, v in params.items()} if first_order else params
        grads = gradient(support_loss, at, not first_order)  # create_graph: second order
        params = {k: v - _rate(inner_lr, step, k) * grads[k] for k, v in params.items()}
    return params


def maml_loss(
    model: nn.Module,
    params: Params,
    support_x: torch.Tensor,
    support_y: torch.Tensor,
    query_x: torch.Tensor,
    query_y: torch.Tensor,
    loss_fn: LossFn,
    inner_steps: int,
    inner_lr: InnerLR,
    first_order: bool = False,
    batched: bool = True,
) -> torch.Tensor:
    """MAML's meta-objective: the query loss after adaptation, averaged over a meta-batch.

    The four data tensors have a leading task dimension (e.g. a SinusoidBatch: [T, K, 1]).
    ``maml_loss(...).backward()`` puts the meta-gradient into the .grad of `params`.
    batched: vmap over the tasks, the torch.func way to map a per-task function over a
        batch (small networks without batch norm, e.g. the sinusoid MLP); False: a Python loop.
    """
    tasks = {t.shape[0] for t in (support_x, support_y, query_x, query_y)}
    if len(tasks) != 1:
        raise ValueError(
            f"support_x, support_y, query_x, query_y have {sorted(tasks)} tasks (leading"
            " dimension); give every tensor the same number of tasks"
        )

    def task_loss(sx, sy, qx, qy):
        adapted = adapt(model, params, sx, sy, loss_fn, inner_steps, inner_lr, first_order)
        return loss_fn(functional_call(model, adapted, (qx,)), qy)

    data = (support_x, support_y, query_x, query_y)
    if batched:
        return vmap(task_loss)(*data).mean()
    return torch.stack([task_loss(*task) for task in zip(*data, strict=True)]).mean()


class MAML(nn.Module):
    """MAML for few-shot classification: episode -> query logits after adaptation.

    An Episode gives logits [N*Q, N]; a meta-batch (stack_episodes, EpisodeSampler.sample_batch,
    meta_batches) gives [B, N*Q, N], and `loss` averages the cross-entropy over its tasks, so
    train.fit and evaluate.few_shot work unchanged.

    model: the network f_θ, e.g. conv4_classifier(way), used as it is (not copied, not
        converted); its batch norm must be TaskBatchNorm (see use_task_batch_norm), whose
        `transductive` setting decides the evaluation protocol.
    inner_steps, inner_lr: k and α; inner_lr is one float, or one per step.
    first_order: FOMAML (drop the Hessian term).
    learn_inner_lr: meta-learn the per-step rates α_j as well (a per-step version of the
        learned rates of MAML++, Antoniou et al. 2018, arXiv:1810.09502).
    eval_inner_steps: steps in eval mode (default inner_steps): the paper trains Omniglot with
        one step and tests with three; steps beyond the trained rates reuse the last one.

    Two attributes say how the work is done, and the engine (engine.fast) replaces them with
    faster equivalents: `gradient` (the inner gradient, torch.func.grad) and `map_tasks` (how a
    meta-batch's tasks are run: a Python loop).
    """

    def __init__(
        self,
        model: nn.Module,
        inner_steps: int = 1,
        inner_lr: float | Sequence[float] = 0.4,
        *,
        first_order: bool = False,
        learn_inner_lr: bool = False,
        eval_inner_steps: int | None = None,
    ) -> None:
        super().__init__()
        eval_inner_steps = inner_steps if eval_inner_steps is None else eval_inner_steps
        for name, steps in (("inner_steps", inner_steps), ("eval_inner_steps", eval_inner_steps)):
            if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
                raise ValueError(f"{name}={steps!r}; use an int >= 1")
        rates = [inner_lr] * inner_steps if isinstance(inner_lr, int | float) else list(inner_lr)
        if len(rates) != inner_steps or any(not r >= 0 for r in rates):
            raise ValueError(
                f"inner_lr={inner_lr}; use one learning rate >= 0, or a list of"
                f" inner_steps={inner_steps} of them"
            )
        reference = next(model.parameters(), None)
        if reference is None:
            raise ValueError("model has no parameters; MAML adapts a model's parameters")
        check_functional(model)
        self.model = model
        rates = torch.tensor(rates, dtype=reference.dtype, device=reference.device)
        if learn_inner_lr:
            self.inner_lr = nn.Parameter(rates)
        else:
            self.register_buffer("inner_lr", rates)  # a buffer: moves with .to(), is saved
        self.inner_steps, self.eval_inner_steps = inner_steps, eval_inner_steps
        self.first_order = first_order
        self.gradient: GradientFn = inner_gradient
        self.map_tasks = loop_over_tasks

    @property
    def transductive(self) -> bool:
        """Batch statistics in eval mode too (False when a TaskBatchNorm keeps running ones)."""
        return all(m.transductive for m in self.model.modules() if isinstance(m, TaskBatchNorm))

    def inner_rates(self, steps: int) -> InnerLR:
        """The inner learning rates of a `steps`-step adaptation."""
        rates = self.inner_lr
        if steps > len(rates):
            rates = torch.cat([rates, rates[-1:].expand(steps - len(rates))])
        return rates[:steps]

    def adapt(
        self,
        support_x: torch.Tensor,
        support_y: torch.Tensor,
        params: Params | None = None,
        steps: int | None = None,
    ) -> Params:
        """Adapted parameters of the whole model for one task (default θ: the model's own;
        steps: default inner_steps in training mode, eval_inner_steps in eval mode)."""
        params = dict(self.model.named_parameters()) if params is None else params
        if steps is None:
            steps = self.inner_steps if self.training else self.eval_inner_steps
        return self.inner_loop(support_x, support_y, params, steps)

    def inner_loop(
        self, support_x: torch.Tensor, support_y: torch.Tensor, params: Params, steps: int
    ) -> Params:
        """`steps` inner steps on every parameter (ANIL overrides this to adapt the head only)."""
        rates = self.inner_rates(steps)
        return adapt(
            self.model,
            params,
            support_x,
            support_y,
            F.cross_entropy,
            steps,
            rates,
            self.first_order,
            self.gradient,
        )

    def forward(self, episode: Episode | EpisodeBatch) -> torch.Tensor:
        episode.validate_tasks()
        batched = isinstance(episode, EpisodeBatch)  # a meta-batch: every task adapts on its own
        params = dict(self.model.named_parameters())

        def task(support_x, support_y, query_x):
            adapted = self.adapt(support_x, support_y, params)
            return functional_call(self.model, adapted, (query_x,)), adapted

        data = (episode.support_x, episode.support_y, episode.query_x)
        logits, adapted = self.map_tasks(task, data) if batched else task(*data)
        if self.training and not self.transductive:
            update_running_stats(self.model, adapted, episode.query_x, batched)
        return logits

    def loss(self, output: torch.Tensor, episode: Episode | EpisodeBatch) -> torch.Tensor:
        """Query cross-entropy, averaged over all queries of all tasks (equal-sized tasks: the
        mean over tasks of each task's mean)."""
        return F.cross_entropy(output.reshape(-1, output.shape[-1]), episode.query_y.reshape(-1))
