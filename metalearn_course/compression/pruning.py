"""Magnitude pruning: set the smallest weights (or whole channels) of a trained network to zero.

The oldest compression rule is also the simplest: a weight whose magnitude is small contributes
little, so remove it (LeCun et al. 1990's "optimal brain damage" motivated it with second-order
saliencies; Han et al. 2015, arXiv:1506.02626, showed plain magnitude works and that a little
fine-tuning afterwards recovers most of the accuracy). With a binary mask m,

    w' = m ⊙ w,   m_i = 1[ |w_i| > τ ],   τ = the s-quantile of |w| over ALL prunable weights

is *global unstructured* pruning to sparsity s: layers compete for the surviving weights, so
the layers that need them keep more (`layer_sparsity` shows how uneven it gets).
*Structured* channel pruning instead removes whole output channels of each convolution, the
ones whose filters have the smallest L2 norm ||W[c]||₂ (Li et al. 2017, "Pruning Filters for
Efficient ConvNets", arXiv:1608.08710).

Masks do not make a network faster or smaller. torch.nn.utils.prune keeps the dense weight as
`weight_orig`, a `weight_mask` buffer, and recomputes ``weight = weight_orig * weight_mask``
before every forward pass: a masked network does the same dense work as before (and its
checkpoint is larger, it holds the mask too). The gains come from

* unstructured sparsity: only with sparse storage or sparse kernels (a compressed checkpoint
  shows the storage side: measure.size_on_disk(..., compressed=True));
* structured sparsity: `remove_pruned_channels` builds a genuinely smaller *dense* Conv4 with
  the same outputs, and that one is smaller on disk and faster on any hardware.

Fine-tuning a masked network with train.fit keeps the pruned weights at zero: the gradient of
`weight_orig` is the gradient of `weight` times the mask, zero where the mask is zero.
"""

from __future__ import annotations

import copy
from itertools import pairwise

import torch
from torch import nn
from torch.nn.utils import prune

from metalearn_course.nets import Conv4

PRUNABLE = (nn.Conv2d, nn.Linear)


def _check_fraction(value: float, name: str) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name}={value}; use a fraction with 0 <= {name} < 1")


def prunable_weights(module: nn.Module) -> list[tuple[nn.Module, str]]:
    """The (layer, "weight") pairs that pruning acts on: every Conv2d and Linear weight."""
    pairs = [(m, "weight") for m in module.modules() if isinstance(m, PRUNABLE)]
    if not pairs:
        raise ValueError(f"{type(module).__name__} has no Conv2d or Linear layer to prune")
    return pairs


def _mask(layer: nn.Module, name: str) -> torch.Tensor:
    """The current mask of layer.<name> (all ones if it was never pruned)."""
    return getattr(layer, name + "_mask", torch.ones_like(getattr(layer, name)))


def global_magnitude_prune(module: nn.Module, sparsity: float) -> nn.Module:
    """Prune the smallest-magnitude weights over all Conv2d/Linear weights together, in place,
    until a fraction `sparsity` of them is zero (biases and batch norm are left alone).

    `sparsity` is the target for the whole network, counting weights pruned before: pruning to
    0.5 and then to 0.75 (with fine-tuning in between, the gradual schedule of Han et al.) ends
    at 75%, not 87.5%. Returns `module` (now with weight_orig / weight_mask pairs).
    """
    _check_fraction(sparsity, "sparsity")
    pairs = prunable_weights(module)
    total = sum(getattr(m, n).numel() for m, n in pairs)
    already = sum(int((_mask(m, n) == 0).sum()) for m, n in pairs)
    target = round(sparsity * total)
    if target < already:
        raise ValueError(
            f"sparsity={sparsity} but {already / total:.3f} of the weights are pruned already;"
            " masks only grow: prune a copy of the unpruned network to get a lower sparsity"
        )
    # The global threshold by hand rather than with prune.global_unstructured, whose
    # parameters_to_vector calls .view(-1) and fails on channels_last weights (the layout that
    # makes CPU convolutions faster). Same rule: the `target - already` smallest |w| among the
    # weights still unpruned are pruned, then each layer gets its slice of the global mask.
    weights = [getattr(m, n).detach() for m, n in pairs]
    scores = torch.cat([w.abs().reshape(-1) for w in weights])
    keep = torch.cat([_mask(m, n).reshape(-1) for m, n in pairs]) != 0
    alive = keep.nonzero().flatten()
    smallest = torch.topk(scores[alive], target - already, largest=False).indices
    keep[alive[smallest]] = False
    for (layer, name), part in zip(pairs, keep.split([w.numel() for w in weights]), strict=True):
        weight = getattr(layer, name)
        prune.custom_from_mask(layer, name, mask=part.reshape(weight.shape).to(weight.dtype))
    return module


def conv_bn_pairs(module: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Each convolution followed directly by its batch norm in an nn.Sequential (a Conv4 block)."""
    pairs = []
    for sequential in (m for m in module.modules() if isinstance(m, nn.Sequential)):
        for conv, bn in pairwise(sequential):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                pairs.append((conv, bn))
    if not pairs:
        raise ValueError(
            f"{type(module).__name__} has no Conv2d followed by BatchNorm2d; channel_prune"
            " expects Conv4-style blocks (conv → batch norm → ...)"
        )
    return pairs


def channel_prune(module: nn.Module, amount: float) -> nn.Module:
    """Structured pruning, in place: in every conv → batch-norm block, zero the fraction `amount`
    of output channels whose filters have the smallest L2 norm.

    The channel's filter and bias are masked (prune.ln_structured, n=2, dim=0) and so are the
    batch norm's scale γ and shift β for that channel: the BN output γ·x̂ + β is then exactly
    zero in training and in eval mode (masking the conv alone would leave β, and in eval mode
    the running mean, flowing on as a constant channel). A zero channel stays zero through ReLU
    and max-pool, which is what lets `remove_pruned_channels` drop it without changing the
    outputs. `amount` is the final fraction per layer, counting channels pruned before.
    """
    _check_fraction(amount, "amount")
    for conv, bn in conv_bn_pairs(module):
        alive = _mask(conv, "weight").flatten(1).any(dim=1)
        target = round(amount * conv.out_channels)
        already = conv.out_channels - int(alive.sum())
        if target < already:
            raise ValueError(
                f"amount={amount} but {already} of {conv.out_channels} channels of a layer are"
                " pruned already; prune a copy of the unpruned network to get a lower amount"
            )
        prune.ln_structured(conv, "weight", amount=target - already, n=2, dim=0)
        keep = conv.weight_mask.flatten(1).any(dim=1).to(conv.weight.dtype)  # [out_channels]
        for layer, name in ((conv, "bias"), (bn, "weight"), (bn, "bias")):
            if getattr(layer, name, None) is not None:
                prune.custom_from_mask(layer, name, mask=keep.clone())
    return module


def sparsity(module: nn.Module) -> float:
    """Fraction of exactly-zero entries over all Conv2d/Linear weights (masked or permanent)."""
    weights = [getattr(m, n) for m, n in prunable_weights(module)]
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / sum(w.numel() for w in weights)


def layer_sparsity(module: nn.Module) -> dict[str, float]:
    """Fraction of zero weights per Conv2d/Linear layer, by module name: global pruning
    removes much more of some layers than of others."""
    return {
        name: float((m.weight == 0).float().mean())
        for name, m in module.named_modules()
        if isinstance(m, PRUNABLE)
    }


def make_permanent(module: nn.Module) -> nn.Module:
    """Fold every pruning mask into its weight (prune.remove), in place: `weight` becomes a
    plain parameter with the zeros written into it, the masks and hooks go away. Fine-tuning
    afterwards could revive the zeros, so do it after the last fine-tuning."""
    for layer in module.modules():
        for hook in list(layer._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(layer, hook._tensor_name)
    return module


def clone(module: nn.Module) -> nn.Module:
    """copy.deepcopy that also works on a pruned module.

    A pruned `weight` is not a leaf tensor but weight_orig * weight_mask, computed with autograd
    by the last forward pass, and deepcopy refuses such tensors. Recomputing it under no_grad
    (same values, no graph; the next forward pass recomputes it anyway) makes the copy possible.
    """
    with torch.no_grad():
        for layer in module.modules():
            for hook in layer._forward_pre_hooks.values():
                if isinstance(hook, prune.BasePruningMethod):
                    setattr(layer, hook._tensor_name, hook.apply_mask(layer))
    return copy.deepcopy(module)


def load_pruned(module: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Load a pruned network's state_dict (with `<name>_orig` and `<name>_mask` entries) into
    `module`, a fresh network of the same architecture, in place.

    A pruned state_dict does not fit a plain network (it has weight_orig, not weight). Every
    `<name>_mask` key is first given a placeholder mask (prune.identity), which creates the
    `_orig` / `_mask` pair; the strict load then overwrites both with the saved values, so the
    reloaded network computes exactly what the saved one did.
    """
    for key in state_dict:
        if key.endswith("_mask"):
            owner, _, name = key[: -len("_mask")].rpartition(".")
            layer = module.get_submodule(owner)
            if not hasattr(layer, name + "_mask"):
                prune.identity(layer, name)
    module.load_state_dict(state_dict)
    return module


def remove_pruned_channels(encoder: Conv4) -> Conv4:
    """A new, genuinely smaller dense Conv4 without the channels that channel_prune zeroed.

    A channel is dead when its batch norm scale γ and shift β are both zero: then the block's
    output channel is exactly zero, whatever the input. Each block loses its dead output
    channels (conv filters and bias, batch norm parameters and running statistics) and the next
    block's conv loses the matching input channels. The last block's dead channels are zeros of
    the embedding; dropping them leaves every Euclidean distance, hence ProtoNet's logits,
    unchanged. The embedding shrinks to the surviving channels of the last block.
    `encoder` itself is not modified; the result has no masks.
    """
    if not isinstance(encoder, Conv4):
        raise ValueError(
            f"encoder is a {type(encoder).__name__}; pass a Conv4 (e.g. method.encoder)"
        )
    small = make_permanent(clone(encoder))
    keep_in = torch.arange(small.encoder[0][0].in_channels)
    for block in small.encoder:
        conv, bn = block[0], block[1]
        if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)):
            raise ValueError(
                "encoder blocks must start with Conv2d → BatchNorm2d (nets.conv_block)"
            )
        keep = ((bn.weight != 0) | (bn.bias != 0)).nonzero().flatten()
        if keep.numel() == 0:
            keep = torch.zeros(1, dtype=torch.long)  # keep one (zero) channel: shapes stay valid
        new_conv = nn.Conv2d(
            len(keep_in),
            len(keep),
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            bias=conv.bias is not None,
        )
        new_bn = nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum)
        with torch.no_grad():
            new_conv.weight.copy_(conv.weight[keep][:, keep_in])
            if conv.bias is not None:
                new_conv.bias.copy_(conv.bias[keep])
            new_bn.weight.copy_(bn.weight[keep])
            new_bn.bias.copy_(bn.bias[keep])
            new_bn.running_mean.copy_(bn.running_mean[keep])
            new_bn.running_var.copy_(bn.running_var[keep])
            new_bn.num_batches_tracked.copy_(bn.num_batches_tracked)
        # the new layers take the mode of the ones they replace (a fresh module is in training
        # mode: an eval-mode encoder would otherwise come back with batch norms using batch
        # statistics, and compute something else than the encoder it was made from)
        new_conv.train(conv.training), new_bn.train(bn.training)
        block[0], block[1] = new_conv.to(conv.weight.device), new_bn.to(conv.weight.device)
        keep_in = keep
    small.hidden = len(keep_in)
    return small
