"""Batch norm folded into the convolution before it, with the batch's own statistics.

A convolution followed by batch norm (conv → BN, the start of every Conv4 block) computes,
for output channel c at position p of image n,

    z_c = w_c · x_p + b_c                      x_p: the input patch under the kernel (d numbers)
    BN(z)_c = γ_c (z_c - μ_c) / sqrt(σ²_c + ε) + β_c

with μ_c, σ²_c the mean and variance of z_c over the batch and all positions. Because z_c is
*linear* in the patch, its statistics are those of the patches:

    μ_c = w_c · x̄ + b_c,    σ²_c = w_cᵀ Σ w_c      x̄, Σ: mean and covariance of the patches

so conv → BN is one convolution with rescaled weights and a new bias,

    BN(z)_c = (a_c w_c) · x_p + (β_c - a_c w_c · x̄),    a_c = γ_c / sqrt(σ²_c + ε)

(the conv bias b_c cancels, as it always does before batch norm). This is the same function,
so every derivative is the same too (autograd differentiates x̄, Σ and the rescaling like any
other operations, to any order, and under vmap). What changes is the cost: the statistics come
from a d × d matrix instead of two passes over the convolution's output, and no normalisation
pass follows. For Omniglot's first layer (one input channel, 3×3 kernels: d = 9) that output
is the largest tensor of the network, 64 channels at 28×28, and its batch norm forward and
backward took 13-21% of a MAML meta-iteration on a 2-core CPU, depending on the memory layout
(profiled in the configuration of benchmarks/maml_peers.py).

Σ is computed in float64 from centred patches, so the statistics are more precise than a
float32 batch norm's. Folding pays only while d is small: Σ costs d² per position, so a layer
whose input has many channels (d = 64 · 9 in the later blocks) keeps the ordinary batch norm.

(Folding batch norm into a convolution is an old deployment trick with the running
statistics, e.g. for quantised inference; here it is exact in training, with the statistics
of the batch.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metalearn_course.gradient.functional import TaskBatchNorm

# Largest patch (in_channels · kernel height · kernel width) worth folding: Σ costs d² per
# position, the convolution's output C per position.
MAX_PATCH = 32


def folded_conv_batch_norm(x: torch.Tensor, conv: nn.Conv2d, norm: TaskBatchNorm) -> torch.Tensor:
    """norm(conv(x)) with the batch's statistics, computed as one convolution (see module)."""
    # float64 for the statistics (a d × d matrix: cheap), except where a device has none
    precise = torch.float32 if x.device.type == "mps" else torch.float64
    patches = F.unfold(x, conv.kernel_size, conv.dilation, conv.padding, conv.stride)
    patches = patches.transpose(0, 1).flatten(1).to(precise)  # [d, N·L]: one patch a column
    mean = patches.mean(1)
    centred = patches - mean[:, None]
    covariance = centred @ centred.T / centred.shape[1]
    w = conv.weight.flatten(1).to(precise)  # [C, d]
    b = torch.zeros_like(w[:, 0]) if conv.bias is None else conv.bias.to(precise)
    mu = w @ mean + b
    variance = ((w @ covariance) * w).sum(1)
    a = norm.weight.to(precise) * torch.rsqrt(variance + norm.eps)
    # conv.weight * a keeps the weight's memory layout (channels-last stays channels-last)
    weight = conv.weight * a.to(x.dtype).view(-1, *[1] * (conv.weight.ndim - 1))
    # a (b - μ): b cancels, its gradient comes out exactly zero, as through batch norm
    bias = (norm.bias.to(precise) + a * (b - mu)).to(x.dtype)
    return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation)


def can_fold(conv: nn.Module, norm: nn.Module) -> bool:
    """conv → norm is a plain 2-d convolution with a small patch, then a TaskBatchNorm."""
    return (
        type(conv) is nn.Conv2d
        and isinstance(norm, TaskBatchNorm)
        and conv.groups == 1
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)  # "same"/"valid": no patch arithmetic here
        and conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] <= MAX_PATCH
    )


class FoldedBlock(nn.Sequential):
    """A block that starts conv → TaskBatchNorm, the pair run as one folded convolution
    whenever the batch norm uses the batch's statistics. The children, their names and their
    parameters are the original block's: state_dicts are unchanged."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__(*modules)  # named "0", "1", ... as in any nn.Sequential

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, norm, *rest = self
        if (norm.transductive or norm.training) and not norm.recording:
            x = folded_conv_batch_norm(x, conv, norm)
        else:  # running statistics (eval, transductive=False), or recording them
            x = norm(conv(x))
        for module in rest:
            x = module(x)
        return x


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """Turn, in place, every nn.Sequential of `model` that starts with a foldable
    conv → TaskBatchNorm pair (see can_fold) into a FoldedBlock. Returns `model`."""
    for name, child in model.named_children():
        default_names = list(child._modules) == [str(i) for i in range(len(child._modules))]
        if (
            type(child) is nn.Sequential
            and default_names  # a FoldedBlock names its children 0, 1, ...: keys stay the same
            and len(child) >= 2
            and can_fold(child[0], child[1])
        ):
            setattr(model, name, FoldedBlock(*child))
        else:
            fold_batch_norm(child)
    return model
