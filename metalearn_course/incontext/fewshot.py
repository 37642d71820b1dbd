"""Few-shot classification in context: a transformer reads the support set and labels queries.

The black-box learner of Santoro et al. 2016 ("One-shot Learning with Memory-Augmented Neural
Networks", arXiv:1605.06065; memory/black_box.py) with the recurrent state replaced by attention
(Vaswani et al. 2017, arXiv:1706.03762), in the spirit of Garg et al. 2022 (arXiv:2208.01066):
the episode is the prompt, and no weight is updated to learn the task. Each image becomes one
token; a support token also carries its label, a query token carries a learned "no label":

    s_j = P f(x_j) + E[y_j]           for the N·K support images   (E: label embedding)
    q_m = P f(x_m) + e_?              for the N·Q query images     (e_?: "no label")
    h   = Transformer([s_1..s_NK, q_1..q_NQ], mask)
    logits_m = W h_{q_m}                                          ([N·Q, N], as every method)

f is an image encoder (the shared Conv4, 28×28 -> 64 numbers), P a linear projection to the
transformer's width. Labels 0..N-1 are reassigned in every episode, so E[c] cannot mean "this
character": the model must bind image to label inside the episode and find, by attention, the
supports that look like the query.

The mask (`episode_mask`). Supports attend to all supports (they may compare notes on which
images share a label); each query attends to all supports and to itself only. So queries are
classified independently, as by every other method of the course: no query ever sees another
query's image, let alone a label it should predict (tested). In training mode the Conv4's batch
norm still mixes statistics over all images of the episode, as it does for ProtoNet; in eval
mode a query's logits depend on the supports and that query alone.

No positional embedding. A support set is a set: the order in which it is listed carries no
meaning, and the output should not depend on it. Worse, the EpisodeSampler lists images
class-major, so a position would reveal a query's label (query m has label m // Q): with
positions the model could score perfectly without looking at a single image. Without them, the
transformer is permutation-equivariant over the tokens.

The method maps an Episode to logits [N·Q, N], so train.fit trains it with the default
cross-entropy on the queries and evaluate.few_shot evaluates it, like ProtoNet.
"""

from __future__ import annotations

import torch
from torch import nn

from metalearn_course.data.episodes import Episode
from metalearn_course.incontext.transformer import Transformer
from metalearn_course.nets import Conv4, encode


def episode_mask(
    n_support: int, n_query: int, device: str | torch.device | None = None
) -> torch.Tensor:
    """Bool [S+Q, S+Q] (True = may attend) for the tokens [supports, queries]: every token sees
    every support; a query also sees itself, and no other query."""
    if n_support < 1 or n_query < 0:
        raise ValueError(
            f"n_support={n_support}, n_query={n_query}; use n_support >= 1 and n_query >= 0"
        )
    total = n_support + n_query
    mask = torch.zeros(total, total, dtype=torch.bool, device=device)
    mask[:, :n_support] = True  # everyone reads the labelled examples
    queries = torch.arange(n_support, total, device=device)
    mask[queries, queries] = True  # and a query its own image
    return mask


class InContextClassifier(nn.Module):
    """An episode as a sequence of tokens, classified by a transformer without position.

    encoder: images [n, C, H, W] -> features [n, feature_dim]; default Conv4() (64 features on
        28×28 images). nn.Identity() reads an episode of precomputed features.
    way: N, labels per episode (the label embedding has N rows).
    d_model, layers, heads: the transformer's width, depth and heads.
    Input: an Episode; output: logits [N·Q, N] for its queries.
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        feature_dim: int = 64,
        way: int = 5,
        d_model: int = 64,
        layers: int = 2,
        heads: int = 4,
    ) -> None:
        super().__init__()
        if way < 2:
            raise ValueError(f"way={way}; classifying needs way >= 2 labels")
        self.way, self.feature_dim = way, feature_dim
        self.encoder = Conv4() if encoder is None else encoder
        self.project = nn.Linear(feature_dim, d_model)
        self.label_embedding = nn.Embedding(way, d_model)
        # Starts small (a label's row starts N(0, 1)): a query token begins as its image alone.
        self.no_label = nn.Parameter(0.02 * torch.randn(d_model))
        self.transformer = Transformer(d_model, layers, heads)
        self.head = nn.Linear(d_model, way)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Features [n, feature_dim] of images [n, ...], checked against feature_dim."""
        return encode(self.encoder, images, self.feature_dim)

    def forward(self, episode: Episode) -> torch.Tensor:
        episode.validate()
        if episode.way != self.way:
            raise ValueError(
                f"the episode has way={episode.way} but the model way={self.way}; build the"
                f" model with way={episode.way} (the label embedding has one row per label)"
            )
        n_support, n_query = episode.support_y.shape[0], episode.query_y.shape[0]
        # One encoder call for all images: the same batch-norm statistics for both sets.
        features = self.encode(torch.cat([episode.support_x, episode.query_x]))
        projected = self.project(features)
        support = projected[:n_support] + self.label_embedding(episode.support_y)
        query = projected[n_support:] + self.no_label  # the query's label is what is asked
        sequence = torch.cat([support, query])[None]  # one episode: a batch of one sequence
        mask = episode_mask(n_support, n_query, device=sequence.device)
        h = self.transformer(sequence, mask)[0]
        return self.head(h[n_support:])
