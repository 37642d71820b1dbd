"""Black-box meta-learning: a recurrent network reads a labelled sequence and learns in its state.

Santoro, Bartunov, Botvinick, Wierstra & Lillicrap 2016, "One-shot Learning with
Memory-Augmented Neural Networks", arXiv:1605.06065 (the setup of Stanford CS330's first
homework).

An episode is a *sequence*. N classes are drawn, K drawings of each are shuffled into a sequence
of T = N·K steps, and the labels 0..N-1 are assigned to the classes afresh in every episode. At
step t the network sees the image x_t together with the label of the PREVIOUS step, and must
predict the current label:

    input_t  = [ f(x_t),  onehot(y_{t-1}) ]      (onehot(y_0) := 0, nothing has been shown yet)
    ŷ_t      = g(input_1, ..., input_t)          (a recurrent network, here an LSTM)
    L        = Σ_t  cross-entropy(ŷ_t, y_t)       (a loss on every step)

Because labels are reshuffled per episode, no weight can store "class c has label 3": the only
way to do well is to bind, within the episode, each image to the label that arrives one step
later, and recall the binding when the class comes back. The first presentation of a class is a
guess (at best 1/N); the accuracy at the 2nd, 3rd, ... presentation measures how well the network
has *learned to learn* (`accuracy_by_instance`). The one-step offset is what makes the task
honest: the current label is never part of the current input (`previous_label_inputs`, tested).

Inputs. Santoro et al. feed the 105×105 drawings shrunk to 20×20, flattened to 400 pixels.
The course's Omniglot is 28×28, so the default encoder (`pixels`) average-pools it to 20×20 and
flattens it; any image encoder works instead, e.g. the shared Conv4 (metalearn_course.nets).

Data. `SequenceSampler` draws N classes × K instances with the shared EpisodeSampler (so the
classes and drawings are exactly as fair and reproducible as every other chapter's) and shuffles
each episode's steps. A `SequenceBatch` carries B episodes at once, [B, T, ...], plus each step's
*instance number* (1 = first presentation of its class in the episode). It has the attributes
train.fit reads (`query_y`, `way`, `to`), so ``fit(BlackBoxLSTM(), SequenceSampler(...), steps)``
trains a sequence model with the shared loop; the accuracy fit logs is over all steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metalearn_course.data.episodes import EpisodeBatch, EpisodeSampler, check_labels
from metalearn_course.evaluate import Accuracy, evaluate_stream, mean_ci95
from metalearn_course.nets import encode

PRESENTATIONS = (1, 2, 3, 5, 10)  # the chapter's curve: 1st, 2nd, 3rd, 5th, 10th presentation


@dataclass(eq=False)  # eq=False: `==` on tensors is elementwise, so a generated __eq__ would lie
class SequenceBatch:
    """B episodes, each a sequence of T labelled steps (N classes × K instances, shuffled)."""

    x: torch.Tensor  # [B, T, C, H, W] float images in [0, 1] (or features [B, T, D])
    y: torch.Tensor  # [B, T] int64 in 0..N-1: the label of step t, the target of step t
    instance: torch.Tensor  # [B, T] int64 >= 1: step t shows its class for the instance-th time
    classes: torch.Tensor  # [B, N] int64: label i <-> class index classes[b, i] of the sampler

    @property
    def way(self) -> int:
        return self.classes.shape[-1]

    @property
    def query_y(self) -> torch.Tensor:
        """The targets, under the name train.fit reads: every step is scored."""
        return self.y

    def to(self, device: str | torch.device, non_blocking: bool = False) -> SequenceBatch:
        """A copy of the batch with every tensor on `device`."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        return SequenceBatch(move(self.x), move(self.y), move(self.instance), move(self.classes))

    def validate(self) -> None:
        """Raise ValueError unless the tensors fit together as a batch of sequences."""
        if self.y.ndim != 2:
            raise ValueError(
                f"y has shape {tuple(self.y.shape)}; expected [batch, steps]"
                " (for one sequence, add a leading batch dimension: y[None])"
            )
        if self.x.ndim not in (3, 5) or self.x.shape[:2] != self.y.shape:
            raise ValueError(
                f"x has shape {tuple(self.x.shape)} and y {tuple(self.y.shape)}; expected x"
                " [batch, steps, channels, height, width] (or features [batch, steps, dim])"
                " with the same batch and steps as y"
            )
        if self.instance.shape != self.y.shape:
            raise ValueError(
                f"instance has shape {tuple(self.instance.shape)} but y {tuple(self.y.shape)};"
                " give one instance number per step (instance_numbers(y, way))"
            )
        check_labels(self.y, self.way, "y")


def previous_label_inputs(
    labels: torch.Tensor, way: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The label part of each step's input: onehot(y_{t-1}) at step t, zeros at step 0.

    labels [B, T] int64 in 0..way-1 -> [B, T, way] of `dtype`. The shift by one step is the whole
    point: step t's input holds the label of step t-1, never its own.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels has shape {tuple(labels.shape)}; expected [batch, steps]")
    check_labels(labels, way, "labels")
    one_hot = F.one_hot(labels, way).to(dtype)
    return F.pad(one_hot, (0, 0, 1, 0))[:, :-1]  # one zero step in front, drop the last


def instance_numbers(labels: torch.Tensor, way: int) -> torch.Tensor:
    """[B, T] int64: at step t, how many times y_t's class has appeared up to and including t.

    1 marks the first presentation of a class, 2 the second, ... A running count per class
    (cumulative sum of one-hot labels along time), read off at each step's own class.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels has shape {tuple(labels.shape)}; expected [batch, steps]")
    check_labels(labels, way, "labels")
    one_hot = F.one_hot(labels, way)
    return (one_hot.cumsum(dim=1) * one_hot).sum(dim=-1)


def make_sequences(episode: EpisodeBatch, order: torch.Tensor) -> SequenceBatch:
    """Turn B stacked episodes (support sets only) into sequences, step order given by `order`.

    episode: an EpisodeBatch, e.g. EpisodeSampler(images, way, shot=K, queries=0).sample_batch(B):
        support_x [B, N*K, ...], support_y [B, N*K], classes [B, N]. Its query set is ignored.
    order: [B, N*K] int64, a permutation of 0..N*K-1 per episode: step t shows support image
        order[b, t].
    """
    sx, sy = episode.support_x, episode.support_y
    if not isinstance(episode, EpisodeBatch):
        raise ValueError(
            f"episode is a {type(episode).__name__}; expected an EpisodeBatch of B episodes"
            " (EpisodeSampler.sample_batch, or stack_episodes)"
        )
    if order.shape != sy.shape:
        raise ValueError(
            f"order has shape {tuple(order.shape)} but the episodes have {tuple(sy.shape)}"
            " support images; give one permutation of 0..way*shot-1 per episode"
        )
    if not torch.equal(
        order.sort(dim=1).values, torch.arange(sy.shape[1], device=order.device).expand_as(order)
    ):
        raise ValueError("order is not a permutation of 0..way*shot-1 in every row")
    rows = torch.arange(sy.shape[0])[:, None]
    y = sy[rows, order]
    return SequenceBatch(sx[rows, order], y, instance_numbers(y, episode.way), episode.classes)


class SequenceSampler:
    """An endless, seeded stream of SequenceBatches: `batch_size` episodes of way × instances.

    images: [n_classes, n_per_class, H, W] (or [..., C, H, W], or features [..., D]), as for
        EpisodeSampler, which draws the classes (hence a fresh random labelling per episode)
        and the drawings.
    way, instances: N classes per episode, K drawings of each: T = N·K steps (Santoro et al.
        5 × 10 = 50).
    seed: fixes the episodes and their step orders; two samplers with the same arguments yield
        the same batches.
    """

    def __init__(
        self,
        images: torch.Tensor,
        way: int = 5,
        instances: int = 10,
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}; use batch_size >= 1")
        if instances < 1:
            raise ValueError(f"instances={instances}; use instances >= 1 drawings per class")
        self.episodes = EpisodeSampler(images, way, instances, 0, seed=seed)
        self.way, self.instances, self.batch_size = way, instances, batch_size
        # A second generator for the step orders, so that the episodes themselves are the very
        # ones EpisodeSampler(images, way, instances, 0, seed) yields.
        self._rng = np.random.Generator(np.random.PCG64([seed, 1]))

    def sample(self) -> SequenceBatch:
        """The next batch of sequences."""
        episode = self.episodes.sample_batch(self.batch_size)
        keys = self._rng.random((self.batch_size, self.way * self.instances))
        return make_sequences(episode, torch.from_numpy(np.argsort(keys, axis=1)))

    def __iter__(self) -> Iterator[SequenceBatch]:
        while True:
            yield self.sample()

    def state_dict(self) -> dict[str, Any]:
        """Where the stream is (for train.fit's resumable `state` file): the episode sampler's
        position and the step-order generator's state, as plain values."""
        return {"episodes": self.episodes.state_dict(), "orders": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state_dict()` was taken (a sampler built with the same
        arguments): the next batch is the one that sampler would have given next."""
        self.episodes.load_state_dict(state["episodes"])
        self._rng.bit_generator.state = state["orders"]


def pixels(size: int = 20) -> nn.Sequential:
    """Santoro et al.'s input: the image average-pooled to size × size and flattened."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(size), nn.Flatten())


def encode_steps(encoder: nn.Module, x: torch.Tensor, feature_dim: int) -> torch.Tensor:
    """Run an image encoder on every step: [B, T, ...] -> features [B, T, feature_dim]."""
    return encode(encoder, x.flatten(0, 1), feature_dim).view(*x.shape[:2], feature_dim)


def sequence_loss(logits: torch.Tensor, batch: SequenceBatch) -> torch.Tensor:
    """Mean cross-entropy over every step of every sequence (logits [B, T, N])."""
    return F.cross_entropy(logits.flatten(0, 1), batch.y.flatten())


class BlackBoxLSTM(nn.Module):
    """The black-box recurrent learner: an LSTM over (image, previous label) -> label logits.

    way: N, the number of labels per episode.
    encoder: images [n, C, H, W] -> features [n, feature_dim]; default pixels(20), Santoro et
        al.'s 400 raw pixels. Conv4() with feature_dim=64 is the course's shared alternative.
    hidden: LSTM units (Santoro et al.'s LSTM baseline: 200).
    Input: a SequenceBatch; output: logits [B, T, N], one prediction per step.
    """

    def __init__(
        self,
        way: int = 5,
        encoder: nn.Module | None = None,
        feature_dim: int = 400,
        hidden: int = 200,
        layers: int = 1,
    ) -> None:
        super().__init__()
        if way < 2:
            raise ValueError(f"way={way}; classifying needs way >= 2 labels")
        self.way, self.feature_dim = way, feature_dim
        self.encoder = pixels(20) if encoder is None else encoder
        self.lstm = nn.LSTM(feature_dim + way, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, way)

    def forward(self, batch: SequenceBatch) -> torch.Tensor:
        batch.validate()
        if batch.way != self.way:
            raise ValueError(f"the batch has way={batch.way} but the model way={self.way}")
        features = encode_steps(self.encoder, batch.x, self.feature_dim)
        inputs = torch.cat(
            [features, previous_label_inputs(batch.y, self.way, features.dtype)], dim=-1
        )
        states, _ = self.lstm(inputs)  # one call over the whole sequence: cuDNN on a GPU
        return self.head(states)

    def loss(self, logits: torch.Tensor, batch: SequenceBatch) -> torch.Tensor:
        return sequence_loss(logits, batch)


def accuracy_by_instance(
    logits: torch.Tensor,
    batch: SequenceBatch,
    presentations: Sequence[int] = PRESENTATIONS,
) -> torch.Tensor:
    """Per-episode accuracy at the k-th presentation of a class, for each k in `presentations`.

    logits [B, T, N]. Returns [B, len(presentations)] float64: entry (b, j) is the fraction of
    episode b's classes predicted right on their presentations[j]-th appearance (nan if the
    episode has no such appearance).
    """
    if logits.shape[:2] != batch.y.shape:
        raise ValueError(
            f"logits has shape {tuple(logits.shape)} but the batch has {tuple(batch.y.shape)}"
            " steps; expected logits [batch, steps, way]"
        )
    correct = (logits.argmax(dim=-1) == batch.y).double()
    columns = []
    for k in presentations:
        shown = (batch.instance == k).double()
        columns.append((correct * shown).sum(dim=1) / shown.sum(dim=1))  # 0/0 = nan: never shown
    return torch.stack(columns, dim=1)


def instance_accuracy(
    model: Callable[[SequenceBatch], torch.Tensor],
    sampler: Iterable[SequenceBatch],
    batches: int,
    presentations: Sequence[int] = PRESENTATIONS,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> dict[int, Accuracy]:
    """Accuracy at the k-th presentation of a class, mean ± 95% CI over the episodes of
    `batches` batches from `sampler` (the curve of Santoro et al.'s Table 1).

    The model runs in eval mode under no_grad (its modes are restored); device defaults to
    where its parameters are.
    """

    def score(logits: torch.Tensor, batch: SequenceBatch) -> torch.Tensor:
        return accuracy_by_instance(logits, batch, presentations).cpu()

    scores = evaluate_stream(model, sampler, batches, score, device, progress, unit="batches")
    table = torch.cat(scores)
    result = {}
    for j, k in enumerate(presentations):
        column = table[:, j]
        column = column[~column.isnan()]
        if column.numel() == 0:
            raise ValueError(
                f"no episode shows a class {k} times; use presentations <= the sampler's"
                " instances per class"
            )
        result[k] = mean_ci95(column)
    return result
