"""Siamese networks: learn "same or different?", then classify by the most similar example.

Koch, Zemel & Salakhutdinov 2015, "Siamese Neural Networks for One-shot Image Recognition",
ICML Deep Learning Workshop (no arXiv version):
https://www.cs.cmu.edu/~rsalakhu/papers/oneshot1.pdf

Two copies of one encoder f (the *twins* share their weights) embed two images. A learned,
weighted L1 distance between the embeddings gives the probability that the images show the
same class:

    p(x1, x2) = σ( Σ_j α_j |f(x1)_j - f(x2)_j| + b )

The weights α_j (and bias b) are learned with everything else: they decide which embedding
dimensions matter for telling classes apart. Here they are a linear layer on |f(x1) - f(x2)|.

Training is *verification*, not classification: binary cross-entropy on pairs labelled 1
(same class) or 0 (different classes). `pair_loss` builds all query × support pairs of an
episode; an N-way episode has N-1 different-class pairs for each same-class pair, so positives
are up-weighted by that ratio and both kinds weigh equally, like the paper's balanced pairs.

One-shot classification uses the verifier as a nearest neighbour: the logit of class k for a
query is its pair logit with the most similar support image of class k (max over the K shots);
for K = 1 that is simply the pair with the class's one example.

`loss(logits, episode)`, which the shared trainer (metalearn_course.train.fit) calls, is the
same balanced pair BCE applied to those class logits, so no second encoder pass is needed.
For K = 1 the class logits ARE all query × support pair logits and it equals `pair_loss`; for
K > 1 it trains, per class, the pair with the most similar shot (the one that decides the
prediction). For every pair at any K, train with ``fit(..., loss_fn=lambda _, e:
model.pair_loss(e))``. The paper's convolutional twin (4096-d sigmoid features, momentum SGD
with per-layer L2 and affine distortions) is replaced by Conv4, the course's common backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metalearn_course.data.episodes import Episode
from metalearn_course.nets import Conv4


def pair_bce(logits: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of pair logits vs same-class targets (any matching shapes), with
    same-class pairs weighted by #different / #same so that both kinds count equally."""
    if logits.shape != same.shape:
        raise ValueError(
            f"logits has shape {tuple(logits.shape)} but same {tuple(same.shape)};"
            " give one same/different target per pair logit"
        )
    target = same.to(logits.dtype)
    n_same = target.sum()
    if n_same == 0:
        raise ValueError("same has no same-class pair; a pair loss needs positive pairs")
    return F.binary_cross_entropy_with_logits(
        logits, target, pos_weight=(target.numel() - n_same) / n_same
    )


class SiameseNet(nn.Module):
    """Siamese network with a weighted-L1 verifier: episode -> logits [N*Q, N].

    encoder: the twin, maps images [B, C, H, W] to embeddings [B, embedding_dim]; default
        Conv4().
    embedding_dim: size of the encoder's output (64 for Conv4 on 28×28 images).
    """

    def __init__(self, encoder: nn.Module | None = None, embedding_dim: int = 64) -> None:
        super().__init__()
        self.encoder = Conv4() if encoder is None else encoder
        self.embedding_dim = embedding_dim
        self.l1_weights = nn.Linear(embedding_dim, 1)  # α (weight [1, D]) and b (bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        features = self.encoder(x)
        if features.ndim != 2 or features.shape[1] != self.embedding_dim:
            raise ValueError(
                f"the encoder made embeddings {tuple(features.shape)} but embedding_dim="
                f"{self.embedding_dim}; set embedding_dim to the encoder's output size"
            )
        return features

    def pair_logit(self, f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
        """Σ_j α_j |f1_j - f2_j| + b over the last dimension; f1 and f2 broadcast."""
        return self.l1_weights((f1 - f2).abs()).squeeze(-1)

    def all_pair_logits(self, queries: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """pair_logit of every query [M, D] with every support embedding [S, D]: [M, S].

        Broadcasting pair_logit would build an [M, S, D] tensor of differences (376 MB for a
        20-way 5-shot episode of 3,136-d embeddings). Instead, since |α_j x - α_j y| =
        |α_j| |x - y|, split α into its positive and negative parts α⁺, α⁻ ≥ 0:

            Σ_j α_j |x_j - y_j| = ||α⁺ ⊙ x - α⁺ ⊙ y||₁ - ||α⁻ ⊙ x - α⁻ ⊙ y||₁,

        two L1 distance matrices that torch.cdist computes without the big intermediate
        (about 5x faster; the same function up to float rounding, tests/test_metric.py).
        """
        alpha, b = self.l1_weights.weight[0], self.l1_weights.bias
        pos, neg = alpha.clamp(min=0), (-alpha).clamp(min=0)
        return (
            torch.cdist(queries * pos, support * pos, p=1)
            - torch.cdist(queries * neg, support * neg, p=1)
            + b
        )

    def verify(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """p(same class) [B] for image pairs x1[i], x2[i], both [B, C, H, W]."""
        if x1.shape != x2.shape:
            raise ValueError(
                f"x1 has shape {tuple(x1.shape)} but x2 {tuple(x2.shape)}; pass pairs of images"
                " as two tensors of the same shape"
            )
        # The twins share weights, so one pass over both halves (and one set of batch norm
        # statistics) computes them both.
        features = self.embed(torch.cat([x1, x2]))
        return torch.sigmoid(self.pair_logit(*features.chunk(2)))

    def pair_logits(self, episode: Episode) -> torch.Tensor:
        """Pair logits [N*Q, N*K] of every query with every support image."""
        episode.validate()
        n_support = episode.support_x.shape[0]
        features = self.embed(torch.cat([episode.support_x, episode.query_x]))
        support, queries = features[:n_support], features[n_support:]
        return self.all_pair_logits(queries, support)

    def forward(self, episode: Episode) -> torch.Tensor:
        pairs = self.pair_logits(episode)  # [M, S]
        # Max over the shots of each class; the mask (not a reshape) allows any support order.
        in_class = F.one_hot(episode.support_y, episode.way).T.bool()  # [N, S]
        return pairs[:, None, :].masked_fill(~in_class, -torch.inf).amax(dim=-1)

    def pair_loss(self, episode: Episode) -> torch.Tensor:
        """Balanced BCE over all query × support pairs: same class -> 1, different -> 0."""
        same = episode.query_y[:, None] == episode.support_y[None, :]  # [M, S]
        return pair_bce(self.pair_logits(episode), same)

    def loss(self, logits: torch.Tensor, episode: Episode) -> torch.Tensor:
        """The training loss used by `fit`: balanced pair BCE on the class logits [M, N]
        (each query paired with its most similar shot of every class). Equals pair_loss for
        K = 1."""
        return pair_bce(logits, F.one_hot(episode.query_y, episode.way).bool())
