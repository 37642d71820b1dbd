"""The shared backbones: the 4-block convolutional embedding ("Conv4") and a small MLP.

Conv4 is the embedding network of the Omniglot experiments in Matching Networks
(Vinyals et al. 2016, arXiv:1606.04080), Prototypical Networks (Snell et al. 2017,
arXiv:1703.05175), MAML (Finn et al. 2017, arXiv:1703.03400) and, as its encoder, Relation
Networks (Sung et al. 2018, arXiv:1711.06025). Each block is

    conv 3×3, 64 filters, padding 1  →  batch norm  →  ReLU  →  2×2 max-pool

so a 28×28 image shrinks 28 → 14 → 7 → 3 → 1 and comes out as a 64-dimensional vector.
Using the same backbone everywhere is what makes the chapters' numbers comparable: differences
come from the meta-learning method, not from the network.

The MLP is MAML's sinusoid regressor: 1 → 40 → 40 → 1 with ReLU (Finn et al. 2017, Sec. 5.1).

`mode(module, training)` switches a module to train or eval mode for a block of code and then
restores every submodule's own mode (a module may be partly frozen in eval mode on purpose):
the one way the library's trainers and evaluators change modes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise

import torch
from torch import nn


def conv_block(
    in_channels: int, out_channels: int, padding: int = 1, pool: bool = True
) -> nn.Sequential:
    """conv 3×3 → batch norm → ReLU → 2×2 max-pool: one quarter of Conv4 (padding=1 keeps the
    size through the convolution; padding=0 trims a pixel on each side; pool=False keeps the
    size through the block).

    The max-pool runs *before* the ReLU. The two commute, max(relu(a), relu(b)) =
    relu(max(a, b)), because ReLU never changes which number is largest, so the block is the
    papers' conv → BN → ReLU → pool exactly; but the ReLU then reads a quarter of the numbers,
    which makes training about a fifth faster on a CPU, where these element-wise passes over
    memory cost as much as the convolutions (benchmarks/protonet.py).
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=padding)
    if not pool:
        return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.ReLU())
    return nn.Sequential(conv, nn.BatchNorm2d(out_channels), nn.MaxPool2d(2), nn.ReLU())


class Conv4(nn.Module):
    """Four conv blocks; maps images [B, C, H, W] to flat embeddings [B, hidden · h · w].

    For 28×28 Omniglot the output is [B, hidden] (the spatial size ends at 1×1).
    ``hidden=64`` is the papers' width; smaller widths trade accuracy for speed on a laptop.
    pooled: how many blocks, from the first, end with the max-pool (default: all). With
        ``pooled=2`` a 28×28 image keeps a 7×7 map through the last two blocks, a wide
        embedding of hidden · 7 · 7 = 3,136 numbers (the Siamese notebook's).
    """

    def __init__(
        self, in_channels: int = 1, hidden: int = 64, blocks: int = 4, pooled: int | None = None
    ) -> None:
        super().__init__()
        if blocks < 1:
            raise ValueError(f"blocks={blocks}: Conv4 needs at least one block")
        pooled = blocks if pooled is None else pooled
        if not 0 <= pooled <= blocks:
            raise ValueError(f"pooled={pooled}; use 0 <= pooled <= blocks={blocks}")
        channels = [in_channels] + [hidden] * blocks
        self.encoder = nn.Sequential(
            *[
                conv_block(c_in, c_out, pool=i < pooled)
                for i, (c_in, c_out) in enumerate(pairwise(channels))
            ]
        )
        self.hidden = hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(
                f"Conv4 expects images [batch, channels, height, width], got shape {tuple(x.shape)}"
            )
        return self.encoder(x).flatten(start_dim=1)


class MLP(nn.Module):
    """A fully connected ReLU network, e.g. MLP([1, 40, 40, 1]) for MAML's sinusoids."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError(f"sizes={sizes}: give at least [in_features, out_features]")
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(pairwise(sizes)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def encode(encoder: nn.Module, images: torch.Tensor, feature_dim: int) -> torch.Tensor:
    """Features [n, feature_dim] of images [n, ...]: the encoder's output flattened, and checked
    against the feature_dim a method was built with (the width of what reads the features)."""
    features = encoder(images).flatten(start_dim=1)
    if features.shape[-1] != feature_dim:
        raise ValueError(
            f"the encoder gives {features.shape[-1]} features per image but feature_dim="
            f"{feature_dim}; pass feature_dim={features.shape[-1]}"
        )
    return features


@contextmanager
def mode(module: nn.Module | None, training: bool) -> Iterator[None]:
    """Put `module` and every submodule in train (True) or eval (False) mode for the block, then
    restore each submodule's previous mode. `module=None` (or a plain function) does nothing."""
    if not isinstance(module, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in module.modules()]
    module.train(training)
    try:
        yield
    finally:
        for m, was_training in modes:
            m.train(was_training)
