"""Freezing and unfreezing layers: choosing WHAT a transferred network may still change.

Transfer learning reuses a source network's parameters θ on a target task and adapts only a
part A of them (Yosinski et al. 2014 studied which layers transfer; early layers are the most
general):

    θ_target = (θ_frozen, θ_A*),    θ_A* = argmin_{θ_A} L_target(θ_frozen, θ_A)

A linear probe adapts the head only (A = head), fine-tuning adapts everything (A = all), and
`freeze_up_to` gives the ladder in between for Conv4-style sequential blocks.

Two things must stop for a layer to be really frozen:

1. its parameters: ``requires_grad = False``, so no gradient is computed for them and an
   optimizer built afterwards never sees them (train.fit's default optimizer takes only the
   trainable parameters). An optimizer built BEFORE freezing still holds them, and skips
   them only while their .grad is None, so `freeze` clears .grad: a zero gradient left by
   ``zero_grad(set_to_none=False)`` would still let momentum and weight decay move them;
2. its batch-norm STATISTICS: a BatchNorm layer in training mode normalises with the batch's
   statistics and updates its running averages in place, neither of which requires_grad
   stops. And `model.train()` (train.fit calls it) would switch a layer put in eval mode back.
   So `freeze(..., batch_norm=True)` (the default) installs a forward pre-hook on each frozen
   batch-norm layer that puts it in eval mode right before every call: it then always
   normalises with its stored running statistics and never updates them, whatever mode the
   rest of the model is in. ``batch_norm=False`` freezes only the affine weights and leaves the
   statistics free (they then adapt to the target data: a cheap form of domain adaptation).

Names are those of ``module.named_parameters()`` (and of submodules): "encoder.0" freezes
every parameter whose name is "encoder.0" or starts with "encoder.0.".
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

# The attribute under which a frozen batch-norm layer keeps its hook handle.
_HOOK = "_metalearn_frozen_statistics"


def _eval_before_forward(module: nn.Module, args: tuple) -> None:
    module.training = False  # this layer only: running statistics, no update


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return not prefixes or any(name == p or name.startswith(p + ".") for p in prefixes)


def _select(module: nn.Module, names: tuple[str, ...]) -> tuple[list[nn.Parameter], list]:
    """The parameters and batch-norm layers of `module` under `names` (all if none given)."""
    parameters = [p for n, p in module.named_parameters() if _matches(n, names)]
    norms = [
        m for n, m in module.named_modules() if isinstance(m, _BatchNorm) and _matches(n, names)
    ]
    known = {n for n, _ in module.named_parameters()} | {n for n, _ in module.named_modules()}
    unknown = [p for p in names if not any(_matches(k, (p,)) for k in known)]
    if unknown:
        top = sorted({n.split(".")[0] for n, _ in module.named_parameters()})
        raise ValueError(
            f"no parameter or submodule named {unknown} in {type(module).__name__};"
            f" use names from named_parameters() or named_modules(), e.g. {top}"
        )
    return parameters, norms


def freeze(module: nn.Module, *names: str, batch_norm: bool = True) -> nn.Module:
    """Freeze the parameters named (or prefixed) by `names`, all of them if none is given.

    batch_norm: also freeze the statistics of the batch-norm layers under `names` (running
        statistics always, never updated; see the module docstring). Returns `module`.
    """
    parameters, norms = _select(module, names)
    for p in parameters:
        p.requires_grad_(False)
        p.grad = None  # a stale zero gradient would still let momentum / weight decay move it
    if batch_norm:
        for norm in norms:
            if getattr(norm, _HOOK, None) is None:
                setattr(norm, _HOOK, norm.register_forward_pre_hook(_eval_before_forward))
    return module


def unfreeze(module: nn.Module, *names: str) -> nn.Module:
    """Undo `freeze` for `names` (all if none is given): parameters trainable again and
    batch-norm layers following the module's train/eval mode again. Returns `module`."""
    parameters, norms = _select(module, names)
    for p in parameters:
        p.requires_grad_(True)
    for norm in norms:
        handle = getattr(norm, _HOOK, None)
        if handle is not None:
            handle.remove()
            setattr(norm, _HOOK, None)
            norm.training = module.training  # the hook may have left it in eval mode
    return module


def trainable(module: nn.Module) -> list[str]:
    """Names of the parameters that still require gradients (what an optimizer would train)."""
    return [n for n, p in module.named_parameters() if p.requires_grad]


def statistics_frozen(module: nn.Module) -> list[str]:
    """Names of the batch-norm layers whose statistics `freeze` has frozen."""
    return [n for n, m in module.named_modules() if getattr(m, _HOOK, None) is not None]


def _blocks(encoder: nn.Module) -> nn.Sequential:
    """The sequential blocks of a Conv4 (its `.encoder`) or of an nn.Sequential itself."""
    if isinstance(encoder, nn.Sequential):
        return encoder
    blocks = getattr(encoder, "encoder", None)
    if isinstance(blocks, nn.Sequential):
        return blocks
    raise ValueError(
        f"{type(encoder).__name__} is neither an nn.Sequential nor a Conv4 (whose .encoder is"
        " one); use freeze(module, *names) with parameter names instead"
    )


def freeze_up_to(encoder: nn.Module, block: int, batch_norm: bool = True) -> nn.Module:
    """Freeze the first `block` blocks of a Conv4-style encoder and unfreeze the others.

    block=0 leaves everything trainable (full fine-tuning); block=len(blocks) freezes the
    whole encoder (a linear probe on top). Returns `encoder`.
    """
    blocks = _blocks(encoder)
    if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block <= len(blocks):
        raise ValueError(
            f"block={block!r}; use an int in 0..{len(blocks)} (the number of leading blocks"
            " to freeze)"
        )
    for i, child in enumerate(blocks):
        if i < block:
            freeze(child, batch_norm=batch_norm)
        else:
            unfreeze(child)
    return encoder
