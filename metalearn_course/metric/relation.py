"""Relation Networks: learn the similarity function itself instead of fixing a distance.

Sung, Yang, Zhang, Xiang, Torr & Hospedales 2018, "Learning to Compare: Relation Network for
Few-Shot Learning", arXiv:1711.06025.

ProtoNet and Matching Networks learn an embedding but compare embeddings with a fixed metric
(Euclidean, cosine). A Relation Network learns the comparison too. An embedding module f
turns each image into a feature *map*; a relation module g reads a class's map next to the
query's map (concatenated along the channels, C(·, ·)) and outputs a relation score in [0, 1]:

    r_{k,j} = g( C( Σ_{x_i ∈ S_k} f(x_i), f(x_j) ) )

For K > 1 shots the class feature map is the element-wise SUM of its K support maps. The
scores are not logits: training regresses them to 1 for the true class and 0 for the others
with a mean squared error,

    L = Σ_j Σ_k ( r_{k,j} - 1[y_j = k] )²

(here averaged, not summed: `relation_loss`). `RelationNet.loss` hands it to the shared
trainer (metalearn_course.train.fit). The predicted class is still the argmax.

Architecture (the paper's network for Omniglot and miniImageNet):
  * embedding module: 4 blocks of conv 3×3 (64) → batch norm → ReLU, of which only the first
    two end with a 2×2 max-pool, so feature maps stay spatial. Built here from Conv4's
    `conv_block` and the same block without its pooling layer, all padded, so a 28×28 image
    gives a 64×7×7 map (28 → 14 → 7 → 7 → 7). The authors' Omniglot code leaves the first two
    convolutions unpadded, which gives 64×5×5 maps (`relation_encoder(padded=False)` with
    `map_size=5`); the method is the same.
  * relation module: 2 conv blocks (with pooling: 7 → 3 → 1, or 5 → 2 → 1), then FC 8 → ReLU →
    FC 1 → sigmoid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metalearn_course.data.episodes import Episode
from metalearn_course.nets import conv_block


def relation_encoder(
    in_channels: int = 1, channels: int = 64, padded: bool = True
) -> nn.Sequential:
    """The embedding module: 2 conv blocks with max-pool, 2 without.

    padded=True: every convolution padded, [B, C, 28, 28] -> [B, channels, 7, 7].
    padded=False: the first two convolutions unpadded, as in the authors' Omniglot code,
    28 → 26 → 13 → 11 → 5: [B, channels, 5, 5] maps, half the relation module's work per pair.
    """
    first = 1 if padded else 0
    return nn.Sequential(
        conv_block(in_channels, channels, padding=first),
        conv_block(channels, channels, padding=first),
        conv_block(channels, channels, pool=False),  # no max-pool: the map keeps its size
        conv_block(channels, channels, pool=False),
    )


def relation_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean squared error between relation scores [M, N] and the one-hot labels [M]."""
    if scores.ndim != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(
            f"scores has shape {tuple(scores.shape)} and labels {tuple(labels.shape)};"
            " expected scores [n_queries, way] and labels [n_queries]"
        )
    return F.mse_loss(scores, F.one_hot(labels, scores.shape[1]).to(scores.dtype))


class RelationNet(nn.Module):
    """Relation network: episode -> relation scores [N*Q, N] in [0, 1].

    encoder: maps images [B, C, H, W] to feature maps [B, channels, map_size, map_size];
        default relation_encoder(1, channels).
    channels: feature-map channels (64 in the paper; also the relation module's width).
    map_size: side of the encoder's maps for 28×28 images: 7 (default encoder, padded) or 5
        (the authors' unpadded encoder, built when map_size=5 and no encoder is given).
    hidden: width of the relation module's first fully connected layer (8 in the paper).
    class_map: how the K support maps of a class are pooled: "sum" (the paper, which trains a
        separate model for each K) or "mean" (the same scale for every K, so that one model
        trained with 1 shot can be evaluated with 5; equal to "sum" for K = 1).
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        channels: int = 64,
        map_size: int = 7,
        hidden: int = 8,
        class_map: str = "sum",
    ) -> None:
        super().__init__()
        if class_map not in ("sum", "mean"):
            raise ValueError(f"class_map={class_map!r}; use 'sum' (the paper) or 'mean'")
        self.class_map = class_map
        side = map_size // 2 // 2  # after the relation module's two 2×2 max-pools
        if side < 1:
            raise ValueError(f"map_size={map_size}; the relation module needs map_size >= 4")
        if encoder is None:
            if map_size not in (5, 7):
                raise ValueError(
                    f"map_size={map_size}: the default encoder makes 7×7 maps (padded) or 5×5"
                    " (unpadded, as the authors' code); pass an encoder for other sizes"
                )
            encoder = relation_encoder(1, channels, padded=map_size == 7)
        self.encoder = encoder
        self.channels, self.map_size = channels, map_size
        self.relation = nn.Sequential(
            conv_block(2 * channels, channels),  # input: class map and query map, concatenated
            conv_block(channels, channels),
            nn.Flatten(),
            nn.Linear(channels * side * side, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
            nn.Sigmoid(),
        )

    def forward(self, episode: Episode) -> torch.Tensor:
        episode.validate()
        n_support = episode.support_x.shape[0]
        maps = self.encoder(torch.cat([episode.support_x, episode.query_x]))
        expected = (self.channels, self.map_size, self.map_size)
        if tuple(maps.shape[1:]) != expected:
            raise ValueError(
                f"the encoder made feature maps {tuple(maps.shape[1:])} but the relation module"
                f" expects {expected}; set channels and map_size to match the encoder"
            )
        support, queries = maps[:n_support], maps[n_support:]
        # Class maps: the element-wise sum of each class's support maps, [N, C, h, w]. A product
        # with the one-hot labels, so the support set may come in any order.
        one_hot = F.one_hot(episode.support_y, episode.way).to(maps.dtype)  # [S, N]
        class_maps = torch.einsum("sn,schw->nchw", one_hot, support)
        if self.class_map == "mean":
            class_maps = class_maps / one_hot.sum(dim=0)[:, None, None, None]
        return self.relation_scores(class_maps, queries)

    def relation_scores(self, class_maps: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """g(C(class map k, query map j)) for every query j and class k: [M, N] in [0, 1].

        The M·N concatenated pairs are never built. The relation module starts with a
        convolution, which is linear in its input channels: split its kernel W into the half
        W_c that reads the class map and the half W_q that reads the query map, then

            W ∗ C(c_k, q_j) + β = W_c ∗ c_k + (W_q ∗ q_j + β)

        (zero padding splits too). So the first convolution runs on N class maps and M query
        maps, N + M images instead of N·M pairs, and the pairs are formed by a broadcast sum.
        It is the same function as convolving the concatenation (tests/test_metric.py checks
        that), 5-10x cheaper: that first layer is most of the relation module's work.
        """
        first = self.relation[0]  # conv → batch norm → max-pool → ReLU on the 2C-channel pair
        conv = first[0]
        w_class, w_query = conv.weight.split(self.channels, dim=1)
        by_class = F.conv2d(class_maps, w_class, None, conv.stride, conv.padding)  # [N, C, h, w]
        by_query = F.conv2d(queries, w_query, conv.bias, conv.stride, conv.padding)  # [M, ...]
        m, n = queries.shape[0], class_maps.shape[0]
        pairs = (by_query[:, None] + by_class[None]).flatten(0, 1)  # [M * N, C, h, w]
        return self.relation[1:](first[1:](pairs)).view(m, n)

    def loss(self, scores: torch.Tensor, episode: Episode) -> torch.Tensor:
        """The training loss used by `fit`: MSE of the scores to the one-hot query labels."""
        return relation_loss(scores, episode.query_y)
