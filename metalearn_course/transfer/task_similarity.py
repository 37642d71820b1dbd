"""Task embeddings: which source model should a new task borrow from?

Given several source models (say, encoders each pre-trained on one group of alphabets) and a
new few-shot task, transfer works best from the source whose training task is most similar.
We embed every task as a vector computed from its support set under a fixed *probe network*,
and pick the source whose own tasks lie nearest (`nearest_source`). Two embeddings:

(i) feature statistics: the mean and standard deviation of the probe's features over the
    support images,

        e(T) = [ mean_i f(x_i) ,  std_i f(x_i) ]      (labels unused)

    a description of the task's input DOMAIN (which strokes, which alphabet);

(ii) a Fisher embedding in the spirit of Task2Vec (Achille et al. 2019, "Task2Vec: Task
    Embedding for Meta-Learning", arXiv:1902.03545). Fit a classifier head on the probe's
    frozen features, then take the diagonal of the Fisher information of the probe's weights,

        F_jj = E_{x ~ support} E_{y ~ p_w(y|x)} [ (∂/∂w_j log p_w(y | x))² ]

    with y drawn from the model's own predictive distribution (the true Fisher, computed here
    exactly by summing over the N classes). As in Task2Vec, the entries of each filter (each
    output channel of a convolution, each row of a linear layer) are averaged, so the
    embedding has one number per filter (256 for Conv4) whatever the task's size. F_jj is
    large for the weights the task's predictions are sensitive to: the embedding says which
    features the task USES, and so depends on the labels as well as on the images.

Distances: "cosine" (1 - cos, the default; insensitive to the overall scale, which for Fisher
embeddings mostly reflects how hard the task is) or "euclidean".

The probe network runs in eval mode (running batch-norm statistics, which makes every
example's gradient its own; batch statistics would mix the examples).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from metalearn_course.data.episodes import Episode
from metalearn_course.nets import mode
from metalearn_course.transfer.finetune import fit_logistic_regression, frozen_features

METRICS = ("cosine", "euclidean")


def feature_statistics(probe: nn.Module, episode: Episode) -> torch.Tensor:
    """(i) [mean, std] [2D] of the probe's features over the episode's support images."""
    episode.validate()
    features = frozen_features(probe, episode.support_x)
    if features.shape[0] < 2:
        raise ValueError("the support set has 1 image; feature statistics need at least 2")
    return torch.cat([features.mean(dim=0), features.std(dim=0)])


def fisher_embedding(
    probe: nn.Module, episode: Episode, C: float = 1.0, per_filter: bool = True
) -> torch.Tensor:
    """(ii) The diagonal Fisher information of the probe's weights on the support set.

    probe: the fixed network f (e.g. a pre-trained Conv4); a logistic-regression head is fit on
        its (L2-normalised) support features first, with inverse penalty C (finetune.
        fit_logistic_regression), as Task2Vec fits a head before computing the Fisher.
    per_filter: average each filter's entries (Task2Vec); False: every weight's entry.
    Only weights with >= 2 dimensions (convolution kernels, linear weights) are embedded.
    Returns a float32 vector on the cpu: [number of filters] or [number of weights].
    """
    episode.validate()
    x, y, way = episode.support_x, episode.support_y, episode.way
    weights = {n: p.detach() for n, p in probe.named_parameters() if p.ndim >= 2}
    if not weights:
        raise ValueError("the probe has no weight matrices or kernels to take the Fisher of")
    features = F.normalize(frozen_features(probe, x), dim=-1)
    head = fit_logistic_regression(features, y, way, C)
    w, b = head["weight"].float(), head["bias"].float()

    def log_likelihood(params: dict[str, torch.Tensor], image: torch.Tensor, label: int):
        feature = functional_call(probe, params, (image[None],)).flatten(1)
        return F.log_softmax(F.normalize(feature, dim=-1) @ w.T + b, dim=-1)[0, label]

    per_example = vmap(grad(log_likelihood), in_dims=(None, 0, None))
    with torch.no_grad():
        probs = F.softmax(features.float() @ w.T + b, dim=-1)  # p_w(y | x_i) [n, way]
    fisher = {n: torch.zeros_like(p) for n, p in weights.items()}
    with mode(probe, training=False), torch.enable_grad():
        for label in range(way):  # E_{y ~ p_w(y|x)}: every class, weighted by its probability
            grads = per_example(weights, x, label)
            for n, g in grads.items():
                weight = probs[:, label].view(-1, *[1] * (g.ndim - 1))
                fisher[n] += (weight * g.detach() ** 2).mean(dim=0)
    parts = [f.flatten(1).mean(dim=1) if per_filter else f.flatten() for f in fisher.values()]
    return torch.cat(parts).float().cpu()


def task_distance(a: torch.Tensor, b: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Distances between embeddings a [D] (or [M, D]) and b [K, D] (or [D]): "cosine" is
    1 - cos(a, b), "euclidean" is ||a - b||. Broadcasts like a[..., None, :] vs b."""
    if metric not in METRICS:
        raise ValueError(f"metric={metric!r}; use one of {METRICS}")
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(
            f"embeddings of sizes {a.shape[-1]} and {b.shape[-1]}; compare embeddings made by"
            " the same probe network and the same method"
        )
    a, b = a.unsqueeze(-2).float(), b.float()
    if metric == "cosine":
        return 1 - F.cosine_similarity(a, b, dim=-1)
    return (a - b).norm(dim=-1)


def nearest_source(
    task_embedding: torch.Tensor, source_embeddings: torch.Tensor, metric: str = "cosine"
) -> int:
    """Index of the source whose embedding [K, D] is nearest to the task's [D].

    A source's embedding is typically the mean embedding of a few of its own tasks.
    """
    if task_embedding.ndim != 1 or source_embeddings.ndim != 2:
        raise ValueError(
            f"task_embedding has shape {tuple(task_embedding.shape)} and source_embeddings"
            f" {tuple(source_embeddings.shape)}; expected [D] and [n_sources, D]"
        )
    if len(source_embeddings) == 0:
        raise ValueError("source_embeddings is empty; give at least one source")
    return int(task_distance(task_embedding, source_embeddings, metric).argmin())
