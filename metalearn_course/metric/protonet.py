"""Prototypical Networks: classify a query by its distance to the mean embedding of each class.

Snell, Swersky & Zemel 2017, "Prototypical Networks for Few-shot Learning", arXiv:1703.05175.

An encoder f embeds every image. Each class k of the episode gets a *prototype*, the mean
embedding of its support images S_k, and a query x is classified by a softmax over the negative
squared Euclidean distances to the prototypes:

    c_k = (1 / |S_k|) Σ_{x_i ∈ S_k} f(x_i)
    p(y = k | x) = softmax_k( -||f(x) - c_k||² )

Training minimises the cross-entropy of the query labels, episode after episode, so f learns
an embedding where classes form tight clusters around their means.

A linear classifier in disguise (the paper's "Reinterpretation as a Linear Model"): expanding
the square,

    -||f(x) - c_k||² = 2 c_kᵀ f(x) - ||c_k||² - ||f(x)||²

and the last term is the same for every class, so it cancels in the softmax. The prototypes
therefore define a linear layer on top of f, with weights W_k = 2 c_k and bias
b_k = -||c_k||² (`linear_classifier_weights`): ProtoNet is "a linear classifier whose weights
are computed from the support set instead of learned".

`distance="cosine"` replaces the distance by the cosine similarity cos(f(x), c_k). Its logits
lie in [-1, 1], so the softmax can never be confident; scaling them by a learned temperature is
the fix (Oreshkin et al. 2018, TADAM, arXiv:1805.10123), and the chapter's exercise.

Every metric learner starts with `episode.validate()`, so a mismatched episode fails with a
message naming the tensor at fault instead of a shape error deep inside the encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metalearn_course.data.episodes import Episode, check_labels
from metalearn_course.nets import Conv4

DISTANCES = ("euclidean", "cosine")


def prototypes(embeddings: torch.Tensor, labels: torch.Tensor, way: int) -> torch.Tensor:
    """Class means c_k [way, D] of support embeddings [S, D] with labels [S] in 0..way-1.

    The mean is a matrix product with the one-hot label matrix, so it does not care how the
    support set is ordered, nor whether classes have equal numbers of shots.
    """
    if embeddings.ndim != 2 or labels.ndim != 1 or embeddings.shape[0] != labels.shape[0]:
        raise ValueError(
            f"embeddings has shape {tuple(embeddings.shape)} and labels {tuple(labels.shape)};"
            " expected embeddings [n, dim] and labels [n]"
        )
    check_labels(labels, way, "labels", every_class=True)
    one_hot = F.one_hot(labels, way).to(embeddings.dtype)  # [S, way]
    return (one_hot.T @ embeddings) / one_hot.sum(dim=0)[:, None]


def linear_classifier_weights(prototypes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The linear layer equivalent to squared-Euclidean ProtoNet: W [way, D] = 2 c_k and
    b [way] = -||c_k||². Then f(x) @ W.T + b equals ProtoNet's logits plus ||f(x)||², a
    per-query constant, so both give the same softmax."""
    if prototypes.ndim != 2:
        raise ValueError(f"prototypes has shape {tuple(prototypes.shape)}; expected [way, dim]")
    return 2 * prototypes, -(prototypes**2).sum(dim=-1)


class ProtoNet(nn.Module):
    """Prototypical network: episode -> logits [N*Q, N] = -squared distances to prototypes.

    encoder: maps images [B, C, H, W] to embeddings [B, D]; default Conv4() (D = 64).
    distance: "euclidean" (the paper: squared Euclidean) or "cosine" (cosine similarity).
    """

    def __init__(self, encoder: nn.Module | None = None, distance: str = "euclidean") -> None:
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(f"distance={distance!r}; use one of {DISTANCES}")
        self.encoder = Conv4() if encoder is None else encoder
        self.distance = distance

    def forward(self, episode: Episode) -> torch.Tensor:
        episode.validate()
        n_support = episode.support_x.shape[0]
        # One pass over support and query images together, as in the authors' code: in training
        # mode batch norm then normalises both with the same statistics.
        features = self.encoder(torch.cat([episode.support_x, episode.query_x]))
        support, queries = features[:n_support], features[n_support:]
        centres = prototypes(support, episode.support_y, episode.way)  # [N, D]
        if self.distance == "cosine":
            return F.cosine_similarity(queries[:, None, :], centres[None, :, :], dim=-1)
        # Squared distance, not the distance: it is what makes the model a linear classifier
        # (see linear_classifier_weights), and the paper found it works better.
        return -((queries[:, None, :] - centres[None, :, :]) ** 2).sum(dim=-1)
