"""A hypernetwork for few-shot learning: a task encoder generates the classifier's weights.

Ha, Dai & Le 2016, "HyperNetworks", arXiv:1609.09106: one network (the hypernetwork) outputs
the weights of another (the main network). In few-shot learning the natural input of the
hypernetwork is the task itself, the support set, and the natural output is the part of the
network that is specific to the task, the final classification layer:

    Qiao, Liu, Shen & Yuille 2018, "Few-Shot Image Recognition by Predicting Parameters from
        Activations", arXiv:1706.03466: a learned map from a class's mean activation to its
        classifier weights;
    Gidaris & Komodakis 2018, "Dynamic Few-Shot Visual Learning without Forgetting",
        arXiv:1804.09458: a weight generator for a cosine-similarity classifier.

The model. An encoder f (the shared Conv4) embeds every image. For each class k of the episode
the task encoder summarises the support set and a generator g_φ produces the weights (w_k, b_k)
of the head, a linear layer over the features:

    z̄_k = mean_{x ∈ S_k} f(x)                       (what class k looks like; for the
                                                     cosine head f(x) is normalised first)
    c   = mean_k z̄_k                                (what the whole task looks like)
    [Δw_k, b_k] = g_φ([z̄_k, z̄_k - c])             (a 2-layer MLP, applied to every class)
    w_k = φ_avg ⊙ z̄_k + Δw_k
    logits_k(x) = s · cos(f(x), w_k) + b_k          (cosine head, learned scale s; Gidaris)
               or  w_k·f(x) + b_k                   (cosine=False: a plain linear head)

The head parameterised by (W, b) is exactly an nn.Linear(D, N) (`head_parameters` returns its
state, tested with torch.func.functional_call). Everything (f, φ, s) is trained end to end over
episodes by the cross-entropy of the query labels, like every episodic method: the *meta*
parameters are learned by gradient descent, the task's head is produced in one forward pass.

Why z̄_k - c: the generator then sees each class relative to the others in the same task, so
it can move w_k away from what the classes share, which a class mean alone cannot. φ's last
layer starts at zero and φ_avg at one, so an untrained generator outputs w_k = z̄_k, b_k = 0:
a cosine prototype classifier (ProtoNet with cosine similarity). Training learns how to depart
from the prototypes; the chapter's figure compares the generated w_k with the z̄_k.

This module is the correct, runnable form of "a meta network generates the base network's
weights": generating *all* of a Conv4's weights from five images would be a far harder
regression, while the last layer is where the task lives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metalearn_course.data.episodes import Episode
from metalearn_course.metric.protonet import prototypes
from metalearn_course.nets import Conv4


class WeightGenerator(nn.Module):
    """The task encoder + generator g_φ: support features -> head weights W [N, D], bias b [N].

    feature_dim: D, the encoder's output size. hidden: width of the MLP.
    cosine: True (default): the head is a cosine classifier, so the weight rows are normalised
        and multiplied by a learned scale s (init 10): s is the length of every generated
        weight vector. Cosine logits lie in [-1, 1]; without s the softmax could never be
        confident. False: the raw weights, for a plain linear head.
    """

    def __init__(self, feature_dim: int = 64, hidden: int = 128, cosine: bool = True) -> None:
        super().__init__()
        self.feature_dim, self.cosine = feature_dim, cosine
        self.scale_mean = nn.Parameter(torch.ones(feature_dim))  # φ_avg
        self.mlp = nn.Sequential(
            nn.Linear(2 * feature_dim, hidden), nn.ReLU(), nn.Linear(hidden, feature_dim + 1)
        )
        # Start as the identity map from prototypes to weights (see the module docstring).
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.scale = nn.Parameter(torch.tensor(10.0)) if cosine else None

    def forward(
        self, features: torch.Tensor, labels: torch.Tensor, way: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if features.ndim != 2 or features.shape[-1] != self.feature_dim:
            raise ValueError(
                f"features has shape {tuple(features.shape)}; expected support features"
                f" [n, feature_dim={self.feature_dim}]"
            )
        means = prototypes(features, labels, way)  # z̄_k [N, D]; checks the labels too
        context = means.mean(dim=0, keepdim=True)  # c [1, D]
        delta = self.mlp(torch.cat([means, means - context], dim=-1))  # [N, D + 1]
        weight = self.scale_mean * means + delta[:, : self.feature_dim]
        if self.scale is not None:
            weight = self.scale * F.normalize(weight, dim=-1)
        return weight, delta[:, self.feature_dim]


class HyperNet(nn.Module):
    """Episode -> query logits [N*Q, N] from a classifier head generated from the support set.

    encoder: images -> features [n, feature_dim]; default Conv4() (feature_dim 64). For
        episodes of precomputed features (evaluate.embed_images), use
        ``HyperNet(nn.Identity(), feature_dim, generator=trained.generator)``.
    generator: default WeightGenerator(feature_dim, cosine=cosine); its `cosine` decides the
        head: logits = s · cos(f(x), w_k) + b_k (default) or w_k·f(x) + b_k.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        feature_dim: int = 64,
        generator: WeightGenerator | None = None,
        cosine: bool = True,
    ) -> None:
        super().__init__()
        self.encoder = Conv4() if encoder is None else encoder
        if generator is None:
            generator = WeightGenerator(feature_dim, cosine=cosine)
        if generator.feature_dim != feature_dim:
            raise ValueError(
                f"feature_dim={feature_dim} but the generator expects {generator.feature_dim};"
                " make them equal"
            )
        self.generator = generator

    def head_parameters(
        self, support_features: torch.Tensor, support_y: torch.Tensor, way: int
    ) -> dict[str, torch.Tensor]:
        """The generated head as the state of an nn.Linear(feature_dim, way): {"weight": [N, D],
        "bias": [N]}, to apply to `features(x)` (torch.func.functional_call, or F.linear)."""
        weight, bias = self.generator(support_features, support_y, way)
        return {"weight": weight, "bias": bias}

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder features, L2-normalised for the cosine head: the input of both the generator
        (class means of unit vectors, as in Gidaris & Komodakis) and the head."""
        z = self.encoder(x)
        return F.normalize(z, dim=-1) if self.generator.cosine else z

    def forward(self, episode: Episode) -> torch.Tensor:
        episode.validate()
        n_support = episode.support_x.shape[0]
        # Support and queries in one encoder pass, as ProtoNet does (same batch statistics).
        z = self.features(torch.cat([episode.support_x, episode.query_x]))
        support, queries = z[:n_support], z[n_support:]
        head = self.head_parameters(support, episode.support_y, episode.way)
        return F.linear(queries, head["weight"], head["bias"])
