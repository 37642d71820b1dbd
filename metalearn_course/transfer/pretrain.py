"""Supervised pre-training: one classifier over every meta-training class, trained by `fit`.

The transfer-learning baselines of few-shot learning (Chen et al. 2019, "A Closer Look at
Few-shot Classification", arXiv:1904.04232; Tian et al. 2020, "Rethinking Few-Shot Image
Classification: a Good Embedding Is All You Need?", arXiv:2003.11539) start by training an
encoder f_θ and a head on ALL C meta-training classes at once, with plain cross-entropy:

    min_{θ, W}  E_{(x, y) ~ D_train}  -log softmax_y( head_W(f_θ(x)) ),    y ∈ {0, ..., C-1}

and then throw the head away and reuse f_θ on the new classes (metalearn_course.transfer.
finetune). The contrast with meta-training is the teaching point of the chapter:

    pre-training:   ONE fixed task with every class       (a C-way problem, C ≈ 1000)
    meta-training:  MANY small random tasks              (5-way problems, drawn afresh)

Both are written here in the course's one vocabulary, so the ONE training loop trains them:
`ClassBatches` yields Episodes whose query set is a random mini-batch of labelled images over
all C classes (labels are the class indices, ``classes = arange(C)``, the support set is empty),
and `Classifier` maps such an episode to logits [B, C]. Then

    history = train.fit(Classifier(Conv4(), n_classes=C, feature_dim=64),
                        ClassBatches(images, batch_size=64, seed=0), steps)

is ordinary supervised learning (default loss: cross-entropy of the queries).

Baseline++ (Chen et al. 2019) replaces the linear head by a cosine classifier,

    logit_c(x) = s · cos(w_c, f(x)) = s · w_cᵀ f(x) / (||w_c|| ||f(x)||)

whose weight vectors act as class prototypes and which, the paper argues, reduces intra-class
variation of the features. cos lies in [-1, 1], so the scale s sets how confident the softmax
can get. The authors' code (github.com/wyharveychen/CloserLookFewShot, backbone.distLinear)
uses a FIXED s: 2 for heads of at most 200 classes and 10 for more (their Omniglot case), and
in addition learns one norm per class through weight normalisation. `CosineHead` implements the
plain s · cos with a fixed s by default (learn_scale=True makes s a parameter).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metalearn_course.data.episodes import Episode
from metalearn_course.metric.protonet import prototypes

HEADS = ("linear", "cosine")


def cosine_logits(
    features: torch.Tensor, weight: torch.Tensor, scale: float | torch.Tensor
) -> torch.Tensor:
    """s · cos(w_c, f) for features [B, D] and class weights [C, D] -> logits [B, C].

    A tiny epsilon inside F.normalize keeps an all-zero feature (a dead ReLU embedding) finite.
    """
    return scale * F.normalize(features, dim=-1) @ F.normalize(weight, dim=-1).T


class CosineHead(nn.Module):
    """The Baseline++ classifier: logits = s · cos(w_c, f(x)) (Chen et al. 2019).

    scale: s; fixed by default, as in the authors' code (see the module docstring).
    learn_scale: make s a learned parameter instead (initialised at `scale`).
    """

    def __init__(
        self, in_features: int, n_classes: int, scale: float = 10.0, learn_scale: bool = False
    ) -> None:
        super().__init__()
        if in_features < 1 or n_classes < 1:
            raise ValueError(f"in_features={in_features}, n_classes={n_classes}; both must be >= 1")
        if not scale > 0:
            raise ValueError(f"scale={scale}; use a scale s > 0 (e.g. 10)")
        self.weight = nn.Parameter(torch.empty(n_classes, in_features))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Linear's initialisation
        scale_tensor = torch.tensor(float(scale))
        if learn_scale:
            self.scale = nn.Parameter(scale_tensor)
        else:
            self.register_buffer("scale", scale_tensor)  # saved and moved with .to()

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return cosine_logits(features, self.weight, self.scale)

    def extra_repr(self) -> str:
        learned = isinstance(self.scale, nn.Parameter)
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, scale={self.scale.item():g}" + (
            " (learned)" if learned else ""
        )


def make_head(kind: str, in_features: int, n_classes: int, scale: float = 10.0) -> nn.Module:
    """A fresh classification head: "linear" (nn.Linear, Baseline) or "cosine" (Baseline++)."""
    if kind == "linear":
        return nn.Linear(in_features, n_classes)
    if kind == "cosine":
        return CosineHead(in_features, n_classes, scale)
    raise ValueError(f"head={kind!r}; use one of {HEADS}")


class Classifier(nn.Module):
    """encoder + head over all C classes: an Episode from ClassBatches -> logits [B, C]; a
    few-shot Episode (one with a support set) -> nearest-class-mean logits [N*Q, N].

    encoder: maps images [B, C_in, H, W] to features [B, feature_dim] (e.g. Conv4()).
    n_classes: C, the number of meta-training classes.
    feature_dim: the encoder's output size (64 for Conv4 on 28×28 Omniglot).
    head: "linear" (Baseline) or "cosine" (Baseline++, logits s · cos, scale s).
    After pre-training, `classifier.encoder` is the network to transfer; the head is dropped.
    """

    def __init__(
        self,
        encoder: nn.Module,
        n_classes: int,
        feature_dim: int,
        head: str = "linear",
        scale: float = 10.0,
    ) -> None:
        super().__init__()
        if n_classes < 2:
            raise ValueError(f"n_classes={n_classes}; a classifier needs n_classes >= 2")
        self.encoder = encoder
        self.head = make_head(head, feature_dim, n_classes, scale)
        self.n_classes = n_classes

    def forward(self, episode: Episode) -> torch.Tensor:
        if episode.support_y.numel() > 0:
            return self.nearest_mean(episode)
        if episode.way != self.n_classes:
            raise ValueError(
                f"the episode has {episode.way} classes but the classifier {self.n_classes};"
                " pre-train on ClassBatches over the same images the classifier was built for"
            )
        return self.head(self.encoder(episode.query_x))

    def nearest_mean(self, episode: Episode) -> torch.Tensor:
        """A few-shot episode (one with a support set) scored by the encoder alone: logits
        -||f(x) - c_k||² to the support class means c_k, ProtoNet's rule with no training
        (cosine similarity for a cosine head). This is what lets train.fit validate and
        early-stop pre-training on few-shot episodes of NEW classes:
        ``fit(classifier, batches, steps, val_sampler=EpisodeSampler(val, 5, 1, 15), ...)``.
        """
        episode.validate()
        n_support = episode.support_x.shape[0]
        features = self.encoder(torch.cat([episode.support_x, episode.query_x]))
        support, queries = features[:n_support], features[n_support:]
        centres = prototypes(support, episode.support_y, episode.way)
        if isinstance(self.head, CosineHead):
            return cosine_logits(queries, centres, 1.0)
        return -(torch.cdist(queries, centres) ** 2)


class ClassBatches:
    """An endless, seeded stream of labelled mini-batches over ALL classes, as Episodes.

    Each Episode's query set is `batch_size` images drawn without replacement from the whole
    split (an epoch is one random permutation of all n_classes · n_per_class images; the last,
    incomplete batch of an epoch is dropped, so every batch has the same size); query_y are the
    class indices 0..n_classes-1, ``classes = arange(n_classes)`` and the support set is empty.

    images: [n_classes, n_per_class, H, W] or [n_classes, n_per_class, C, H, W] (uint8 0..255,
        scaled to [0, 1] like EpisodeSampler; or float), or float features
        [n_classes, n_per_class, D].
    seed: the same seed and data always give the same batches, on any machine (numpy PCG64).
    state_dict / load_state_dict: the position in the stream, so train.fit can resume a run.
    """

    def __init__(self, images: torch.Tensor | np.ndarray, batch_size: int, seed: int = 0) -> None:
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.ndim == 4:
            images = images.unsqueeze(2)  # add the channel dimension
        if images.ndim not in (3, 5) or (images.ndim == 3 and not images.is_floating_point()):
            raise ValueError(
                f"images has shape {tuple(images.shape)} and dtype {images.dtype}; expected"
                " images [n_classes, n_per_class, H, W] or [n_classes, n_per_class, C, H, W],"
                " or float features [n_classes, n_per_class, D]"
            )
        if not (images.dtype == torch.uint8 or images.is_floating_point()):
            raise ValueError(
                f"images.dtype={images.dtype}; use uint8 (0..255) or a float tensor in [0, 1]"
            )
        n_classes, n_per_class = images.shape[:2]
        if n_classes < 2:
            raise ValueError(f"images has {n_classes} class; pre-training needs >= 2 classes")
        total = n_classes * n_per_class
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r}; use an int >= 1")
        if batch_size > total:
            raise ValueError(
                f"batch_size={batch_size} but images holds only {total} images;"
                f" use batch_size <= {total}"
            )
        self._uint8 = images.dtype == torch.uint8
        self._images = images.detach().cpu().flatten(0, 1).contiguous()
        if not self._uint8:
            self._images = self._images.float()
        self.n_classes, self.n_per_class = n_classes, n_per_class
        self.batch_size, self.seed = batch_size, seed
        self._labels = torch.arange(n_classes).repeat_interleave(n_per_class)  # row -> class
        self._classes = torch.arange(n_classes)
        self._empty_x = self._images[:0].float()
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._start_epoch()

    def _start_epoch(self) -> None:
        self._epoch_state: dict[str, Any] = self._rng.bit_generator.state  # resuming restarts here
        self._order = torch.from_numpy(self._rng.permutation(len(self._images)))
        self._position = 0

    def __iter__(self) -> Iterator[Episode]:
        return self

    def __next__(self) -> Episode:
        if self._position + self.batch_size > len(self._order):
            self._start_epoch()  # drop the incomplete last batch: all batches are equal
        rows = self._order[self._position : self._position + self.batch_size]
        self._position += self.batch_size
        x = self._images.index_select(0, rows)
        x = torch.div(x, 255) if self._uint8 else x  # a new float tensor either way
        return Episode(
            support_x=self._empty_x.clone(),
            support_y=torch.zeros(0, dtype=torch.int64),
            query_x=x,
            query_y=self._labels[rows],
            classes=self._classes.clone(),
        )

    def sample(self) -> Episode:
        """The next mini-batch."""
        return next(self)

    def state_dict(self) -> dict[str, Any]:
        """The stream's position: the generator's state at the start of the current epoch and
        how many images of that epoch were handed out (plain values, torch.load-safe)."""
        return {"seed": self.seed, "epoch": self._epoch_state, "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state_dict()` was taken (same images, batch_size, seed)."""
        if state.get("seed") != self.seed:
            raise ValueError(
                f"the state is of a ClassBatches with seed={state.get('seed')}, this one has"
                f" seed={self.seed}; build it with the run's seed"
            )
        self._rng.bit_generator.state = state["epoch"]
        self._start_epoch()
        self._position = int(state["position"])
