"""The engine's speed-ups of the gradient-based learners, each the same function as the core's.

- **Plain-autograd inner gradients** (`fast_gradient`). Outside a torch.func transform the inner
  gradient is torch.autograd.grad: the same numbers as torch.func.grad to the last bit
  (tests/test_engine.py) and about a tenth faster on a CPU, because functorch wraps every
  operation of the network in its own tensor type and plain autograd does not. Inside a
  transform (vmap over tasks, or a user's own grad) it stays torch.func.grad. Telling the two
  apart needs torch's private interpreter stack, which is why this lives here and not in the
  lesson.
- **vmap over the tasks of a meta-batch** (`vmap_over_tasks`), the fast path on a GPU: the tasks
  run as batched convolutions instead of a Python loop. On a CPU the loop is faster (one task's
  activations fit in the caches, a meta-batch's do not).
- **Batch norm that survives vmap** (`VmapTaskBatchNorm`). torch's batch-norm backward has a
  wrong batching rule, and a second-order meta-gradient through it under vmap comes out off by
  several percent (functorch issue #534; with torch 2.13 we measured 3-13% on the conv weights
  of a tiny 2-block Conv4). Under vmap this layer normalises with plain tensor operations
  (var_mean, rsqrt, *, +), whose rules are right at every order; outside vmap it is the core's
  TaskBatchNorm (torch's fused kernel, about 1.4× faster per MAML meta-iteration on Omniglot).
- **The first conv → batch norm folded into one convolution** (engine.folding).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import grad, vmap

from metalearn_course.engine.folding import fold_batch_norm
from metalearn_course.gradient.functional import Params, TaskBatchNorm


def _inside_transform() -> bool:
    """True while any torch.func transform (vmap, grad, jvp, ...) is being traced."""
    try:
        return bool(torch._C._functorch.get_interpreter_stack())
    except AttributeError:  # a torch without this (private) API: assume one, always correct
        return True


def _inside_vmap() -> bool:
    """True while a torch.func.vmap is being traced, also inside a grad nested in it."""
    try:
        stack = torch._C._functorch.get_interpreter_stack()
        vmap_type = torch._C._functorch.TransformType.Vmap
    except AttributeError:  # a torch without this (private) API: assume vmap, always correct
        return True
    return stack is not None and any(level.key() == vmap_type for level in stack)


def fast_gradient(
    loss_fn: Callable[[Params], torch.Tensor], params: Params, create_graph: bool = True
) -> Params:
    """∇ loss_fn(params) by name, as gradient.functional.inner_gradient computes it, faster.

    create_graph: keep the gradient differentiable with respect to `params` (MAML's second
    order), when gradients are being recorded at all.
    """
    if _inside_transform():
        return grad(loss_fn)(params)
    create_graph = create_graph and torch.is_grad_enabled()
    with torch.enable_grad():  # the evaluator runs without gradients; adaptation needs them
        # A tensor that does not require grad (a detached FOMAML point, or any tensor under
        # no_grad) becomes a leaf that does: its gradient is then a constant, as in func.grad.
        inputs = {
            k: v if v.requires_grad else v.detach().requires_grad_() for k, v in params.items()
        }
        grads = torch.autograd.grad(
            loss_fn(inputs),
            list(inputs.values()),
            create_graph=create_graph,
            materialize_grads=True,
        )
    return dict(zip(inputs, grads, strict=True))


def vmap_over_tasks(
    task: Callable[..., tuple[torch.Tensor, Params]], data: tuple[torch.Tensor, ...]
) -> tuple[torch.Tensor, Params]:
    """gradient.functional.loop_over_tasks with torch.func.vmap: all tasks at once."""
    return vmap(task)(*data)


class VmapTaskBatchNorm(TaskBatchNorm):
    """TaskBatchNorm whose batch statistics are plain tensor operations under vmap."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.transductive or self.training) and _inside_vmap():
            return self.normalize(x, *self.batch_statistics(x))
        return super().forward(x)  # recording happens outside every transform


def _for_vmap(model: nn.Module) -> None:
    """Make every TaskBatchNorm of `model` a VmapTaskBatchNorm, in place: each layer keeps its
    parameters, buffers and settings (state_dicts are unchanged); only its forward changes."""
    for module in model.modules():
        if type(module) is TaskBatchNorm:
            module.__class__ = VmapTaskBatchNorm


def fast(method: nn.Module, *, vmap: bool = False, fold: bool = True) -> nn.Module:
    """Make `method` (MAML, FOMAML, Meta-SGD, ANIL or Reptile) fast, in place; return it.

    The same function, meta-gradients and running statistics as before, to float64 rounding
    (tests/test_engine.py), by three changes to `method` and its `method.model`:
    - the inner gradient becomes fast_gradient (plain autograd outside transforms);
    - fold: every foldable first conv → batch norm pair runs as one convolution
      (engine.folding). Reptile's book numbers were trained without it: reproduce and the
      Reptile chapter pass fold=False;
    - vmap: the tasks of a meta-batch run under vmap (the fast path on a GPU) with batch norm
      that stays exact there; False keeps the loop over tasks (the fast path on a CPU).
    state_dicts do not change, so checkpoints load into the plain method and back.
    """
    for hook in ("gradient", "map_tasks"):
        if not hasattr(method, hook) or not isinstance(getattr(method, "model", None), nn.Module):
            raise TypeError(
                f"fast() takes a gradient-based method with a .model and .{hook}, such as"
                f" MAML(...) or Reptile(...); got {type(method).__name__}"
            )
    method.gradient = fast_gradient
    if vmap:
        _for_vmap(method.model)
        method.map_tasks = vmap_over_tasks
    if fold:
        fold_batch_norm(method.model)
    return method
