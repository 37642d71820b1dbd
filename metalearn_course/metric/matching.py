"""Matching Networks: label a query by attending over the labelled support images.

Vinyals, Blundell, Lillicrap, Kavukcuoglu & Wierstra 2016, "Matching Networks for One Shot
Learning", arXiv:1606.04080.

The prediction for a query x̂ is a weighted vote of the support labels (one-hot vectors y_i),
the weights being an attention over the support set (the paper's Eqs. 1-2):

    a(x̂, x_i) = exp(c(f(x̂), g(x_i))) / Σ_j exp(c(f(x̂), g(x_j)))
    ŷ = Σ_i a(x̂, x_i) y_i

with c the cosine similarity. The method is a differentiable nearest-neighbour classifier;
training maximises the log-probability of the true label, log ŷ_y, over many episodes.

`forward` returns log ŷ as the logits. ŷ already sums to 1, so softmax(log ŷ) = ŷ and the usual
cross-entropy of these logits is exactly the negative log-likelihood of the paper's prediction.

A consequence worth knowing: Conv4 ends in a ReLU, so its embeddings are non-negative and
their cosines lie in [0, 1]. The attention therefore stays soft: even when every query is right
(cosine 1 to its class, 0 to the others) the 5-way one-shot loss is log(1 + 4/e) ≈ 0.90, not 0.
Accuracy is unaffected (it is the argmax), but the gradient fades as the loss nears its floor,
so the plain network learns slowly. Multiplying the cosines by a learned scale (as in TADAM,
Oreshkin et al. 2018, arXiv:1805.10123; `learn_scale=True`) removes the floor. The scale
changes how confident the attention is, not which support image it favours.

With K > 1 shots there is no averaging: the probability of class k sums the attention over ALL
K support images of class k, ŷ_k = Σ_{i: y_i = k} a(x̂, x_i).

This is the plain version: f = g = Conv4, as in the paper's Omniglot experiments. Its "full
context embeddings" (FCE: LSTMs that let each embedding see the whole support set) are left
out: the method is the attention above, whatever the embedding. For one shot, Matching Networks and
cosine ProtoNet coincide: each prototype is the only support image of its class, and
log ŷ = log_softmax(cos(f(x̂), c_k)) (Snell et al. 2017, arXiv:1703.05175).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from metalearn_course.data.episodes import Episode
from metalearn_course.nets import Conv4


def cosine_attention(
    queries: torch.Tensor, support: torch.Tensor, scale: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """a(x̂, x_i) [M, S]: softmax over the support of scale · cosine similarity, from query
    embeddings [M, D] and support embeddings [S, D]. Each row sums to 1. scale=1: the paper."""
    similarity = F.cosine_similarity(queries[:, None, :], support[None, :, :], dim=-1)
    return (scale * similarity).softmax(dim=-1)


class MatchingNet(nn.Module):
    """Matching network (no FCE): episode -> logits [N*Q, N] = log of the attention-weighted
    class probabilities.

    encoder: f = g, maps images [B, C, H, W] to embeddings [B, D]; default Conv4().
    learn_scale: multiply the cosines by a learned scale s > 0 (initially 10) before the
        softmax, TADAM's metric scaling (Oreshkin et al. 2018). False (default): the paper's
        attention, s = 1.
    """

    def __init__(self, encoder: nn.Module | None = None, learn_scale: bool = False) -> None:
        super().__init__()
        self.encoder = Conv4() if encoder is None else encoder
        # log s, so that s stays positive whatever the optimizer does
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0))) if learn_scale else None

    @property
    def scale(self) -> torch.Tensor | float:
        return 1.0 if self.log_scale is None else self.log_scale.exp()

    def attention(self, episode: Episode) -> torch.Tensor:
        """Attention [N*Q, N*K] of every query over every support image; rows sum to 1."""
        episode.validate()
        n_support = episode.support_x.shape[0]
        # One pass for support and query images: in training mode batch norm then uses the same
        # statistics for both.
        features = self.encoder(torch.cat([episode.support_x, episode.query_x]))
        return cosine_attention(features[n_support:], features[:n_support], self.scale)

    def forward(self, episode: Episode) -> torch.Tensor:
        attention = self.attention(episode)
        labels = F.one_hot(episode.support_y, episode.way).to(attention.dtype)  # y_i, [S, N]
        probabilities = attention @ labels  # ŷ = Σ_i a(x̂, x_i) y_i, [M, N]
        # No log(0) at s = 1: cosines lie in [-1, 1], so every weight is at least e^-2 / S. A
        # large learned scale can underflow a weight to 0, hence the clamp.
        return probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()
