"""N-way K-shot episodes: the unit of data in few-shot learning.

An *episode* (or *task*) is a tiny classification problem: pick N classes at random, give the
learner K labelled *support* images of each, and score it on Q *query* images of each
(Vinyals et al. 2016, "Matching Networks for One Shot Learning", arXiv:1606.04080). Meta-training
and evaluation both consume a long stream of such episodes, so the sampler must be

* **fair**: every set of N classes is equally likely, and so is every choice of images;
* **reproducible**: the same seed gives the same episodes on any machine, which is how two
  methods are evaluated on identical test episodes;
* **fast**: a meta-learner may eat tens of thousands of episodes, and a slow sampler quietly
  becomes the bottleneck.

Conventions. Labels are remapped to 0..N-1: label i means ``classes[i]``, the i-th class drawn.
Classes are drawn in random order, so this is a random assignment of labels to classes. Support
and query sets are ordered class-major: ``[c0 s0, c0 s1, ..., c1 s0, c1 s1, ...]``, so
``support_y == [0]*K + [1]*K + ...``. ``queries=0`` is allowed and gives empty query tensors
(handy for looking at support sets); the evaluator needs at least one query.

Speed comes from handling many episodes at once, with no Python loop over classes or images:
their random choices are a few vectorised numpy calls (``EpisodeSampler._episodes``), their
images one torch gather and one uint8 -> float conversion (``EpisodeSampler._gather``). On two
CPU cores that is about 20,000 Omniglot-sized 5-way 1-shot 15-query episodes per second, 5-6x a
sampler that stacks images one at a time (benchmarks/episode_sampler.py).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import torch

# Episodes whose class and image indices are drawn together (cheap integers). The random stream
# depends on this constant, so changing it changes every seeded episode: leave it alone.
_INDEX_BLOCK = 256
# Images are gathered and converted to float this many bytes at a time: small enough to stay in
# the CPU cache (the uint8 -> float conversion is memory bound; 64 MiB at once is 3x slower),
# large enough to amortise the per-call overhead. Changing it changes speed only, never which
# episodes come out.
_GATHER_BYTES = 4 * 2**20


class EpisodeShape:
    """way, shot and queries (N, K, Q) of an Episode, or of every episode of an EpisodeBatch,
    from the shapes of its labels (class-major: K support and Q query images per class)."""

    classes: torch.Tensor
    support_y: torch.Tensor
    query_y: torch.Tensor

    @property
    def way(self) -> int:
        return self.classes.shape[-1]

    @property
    def shot(self) -> int:
        return self.support_y.shape[-1] // self.way

    @property
    def queries(self) -> int:
        return self.query_y.shape[-1] // self.way


@dataclass(eq=False)  # eq=False: `==` on tensors is elementwise, so a generated __eq__ would lie
class Episode(EpisodeShape):
    """One N-way K-shot task (several of them stacked are an EpisodeBatch)."""

    support_x: torch.Tensor  # [N*K, C, H, W] float32 in [0, 1] (or features [N*K, D])
    support_y: torch.Tensor  # [N*K] int64 in 0..N-1, class-major
    query_x: torch.Tensor  # [N*Q, C, H, W]
    query_y: torch.Tensor  # [N*Q]
    classes: torch.Tensor  # [N] int64: label i <-> class index classes[i] in the sampler's list

    def to(self, device: str | torch.device, non_blocking: bool = False) -> Episode:
        """A copy of the episode with every tensor on `device`."""

        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=non_blocking)

        return Episode(
            move(self.support_x),
            move(self.support_y),
            move(self.query_x),
            move(self.query_y),
            move(self.classes),
        )

    def validate(self) -> None:
        """Raise ValueError unless the tensors fit together as ONE unbatched episode.

        Methods call this first, so that a mismatched episode fails with a message naming the
        tensor at fault rather than with a shape error deep inside a network.
        """
        sx, sy, qx, qy = self.support_x, self.support_y, self.query_x, self.query_y
        for name, x in (("support_x", sx), ("query_x", qx)):
            if x.ndim not in (2, 4):
                raise ValueError(
                    f"{name} has shape {tuple(x.shape)}; expected images"
                    " [n, channels, height, width] (or features [n, dim]) of one episode"
                    " (episodes stacked along a new first dimension: use stack_episodes,"
                    " which makes an EpisodeBatch)"
                )
        for name, y in (("support_y", sy), ("query_y", qy), ("classes", self.classes)):
            if y.ndim != 1:
                raise ValueError(f"{name} has shape {tuple(y.shape)}; expected a 1-D tensor")
        for part, x, y in (("support", sx, sy), ("query", qx, qy)):
            if x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"{part}_x has {x.shape[0]} rows but {part}_y has {y.shape[0]} labels;"
                    " give exactly one label per image"
                )
        if qx.shape[1:] != sx.shape[1:]:
            raise ValueError(
                f"query_x images are {tuple(qx.shape[1:])} but support_x images are"
                f" {tuple(sx.shape[1:])}; use images of one shape"
            )
        check_labels(sy, self.way, "support_y", every_class=True)
        check_labels(qy, self.way, "query_y")

    def validate_tasks(self) -> None:
        """validate(): what a method that takes one episode or an EpisodeBatch calls (the
        batch's validate_tasks checks each of its episodes)."""
        self.validate()


def check_labels(labels: torch.Tensor, way: int, name: str, every_class: bool = False) -> None:
    """Raise ValueError unless `labels` are int64 in 0..way-1 (and, if asked, cover all classes)."""
    if labels.dtype != torch.int64:
        raise ValueError(f"{name}.dtype={labels.dtype}; use int64 (torch.long) class indices")
    if labels.numel() > 0 and (labels.min() < 0 or labels.max() >= way):
        raise ValueError(
            f"{name} holds labels outside 0..{way - 1} (way={way});"
            " remap labels to 0..way-1, label i meaning the i-th class of the episode"
        )
    if every_class:
        missing = (torch.bincount(labels, minlength=way) == 0).nonzero().flatten().tolist()
        if missing:
            raise ValueError(
                f"{name} has no example of class(es) {missing}; every class 0..{way - 1}"
                " needs at least one support image"
            )


@dataclass(eq=False)
class EpisodeBatch(EpisodeShape):
    """A meta-batch: B episodes of the same shape, each field stacked along a new first
    dimension (stack_episodes, EpisodeSampler.sample_batch).

    len(batch) is B; batch[i] is episode i, batch[i:j] the batch of episodes i..j-1 (the one
    place a meta-batch is sliced: the trainer's task groups and DDP's shards use it);
    iterating gives the episodes one by one.
    """

    support_x: torch.Tensor  # [B, N*K, C, H, W]
    support_y: torch.Tensor  # [B, N*K]
    query_x: torch.Tensor  # [B, N*Q, C, H, W]
    query_y: torch.Tensor  # [B, N*Q]
    classes: torch.Tensor  # [B, N]

    def _fields(self) -> tuple[torch.Tensor, ...]:
        return (self.support_x, self.support_y, self.query_x, self.query_y, self.classes)

    def __len__(self) -> int:
        return self.support_y.shape[0]

    @overload
    def __getitem__(self, index: int) -> Episode: ...
    @overload
    def __getitem__(self, index: slice) -> EpisodeBatch: ...
    def __getitem__(self, index: int | slice) -> Episode | EpisodeBatch:
        """Episode `index`, or the EpisodeBatch of the episodes in a slice (views, no copies)."""
        if isinstance(index, slice):
            return EpisodeBatch(*(t[index] for t in self._fields()))
        return Episode(*(t[index] for t in self._fields()))

    def __iter__(self) -> Iterator[Episode]:
        for i in range(len(self)):
            yield self[i]

    def to(self, device: str | torch.device, non_blocking: bool = False) -> EpisodeBatch:
        """A copy of the batch with every tensor on `device`."""
        return EpisodeBatch(*(t.to(device, non_blocking=non_blocking) for t in self._fields()))

    def validate(self) -> None:
        """Raise ValueError: a method that takes one Episode (and calls episode.validate())
        was given a whole meta-batch. Methods that take meta-batches call validate_tasks."""
        raise ValueError(
            f"an EpisodeBatch of {len(self)} episodes was given where one Episode is expected;"
            " pass one episode (batch[i]) or call the method per episode (for e in batch)"
        )

    def validate_tasks(self) -> None:
        """Raise ValueError unless every field has the same number of episodes and each
        episode is valid (Episode.validate)."""
        sizes = {t.shape[0] if t.ndim else None for t in self._fields()}
        if len(sizes) != 1 or self.support_y.ndim != 2:
            shapes = ", ".join(str(tuple(t.shape)) for t in self._fields())
            raise ValueError(
                f"an EpisodeBatch's fields have shapes {shapes}; every field needs the same"
                " leading number of episodes (build the batch with stack_episodes)"
            )
        for episode in self:
            episode.validate()


def stack_episodes(episodes: list[Episode]) -> EpisodeBatch:
    """Stack episodes of the same shape into one EpisodeBatch (new leading dimension)."""
    if len(episodes) == 0:
        raise ValueError("episodes is empty; pass at least one Episode to stack")
    return EpisodeBatch(
        torch.stack([e.support_x for e in episodes]),
        torch.stack([e.support_y for e in episodes]),
        torch.stack([e.query_x for e in episodes]),
        torch.stack([e.query_y for e in episodes]),
        torch.stack([e.classes for e in episodes]),
    )


class EpisodeSampler:
    """An endless, seeded stream of N-way K-shot episodes drawn from a tensor of images.

    images: [n_classes, n_per_class, H, W] or [n_classes, n_per_class, C, H, W]. uint8 images
        (0..255) are scaled to float32 in [0, 1]; float images are used as they are. Float
        *features* work too, [n_classes, n_per_class, D] (or any [n_classes, n_per_class, ...]
        of 5 dimensions): sampling a test set embedded once by a frozen encoder gives the same
        episodes, in embedding space, as sampling its images with the same seed
        (metalearn_course.evaluate.embed_images).
    way, shot, queries: N classes per episode, K support and Q query images per class.
    seed: the same seed, way, shot, queries and numbers of classes and images per class always
        give the same episodes in the same order, however they are consumed (sample,
        sample_batch, iteration, take) and on any machine: the choices come from numpy's
        PCG64 generator, which is platform independent.
    """

    def __init__(
        self, images: torch.Tensor | np.ndarray, way: int, shot: int, queries: int, seed: int = 0
    ) -> None:
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        if not isinstance(images, torch.Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.ndim == 4:
            images = images.unsqueeze(2)  # add the channel dimension: [n_classes, n, 1, H, W]
        if images.ndim not in (3, 5) or (images.ndim == 3 and not images.is_floating_point()):
            raise ValueError(
                f"images has shape {tuple(images.shape)} and dtype {images.dtype}; expected"
                " images [n_classes, n_per_class, H, W] or [n_classes, n_per_class, C, H, W],"
                " or float features [n_classes, n_per_class, D]"
            )
        self._uint8 = images.dtype == torch.uint8
        if images.is_floating_point():
            images = images.float()
        elif not self._uint8:
            raise ValueError(
                f"images.dtype={images.dtype}; use uint8 (0..255) or a float tensor in [0, 1]"
            )
        n_classes, n_per_class = images.shape[:2]
        if way < 1:
            raise ValueError(f"way={way}; use way >= 1")
        if shot < 1:
            raise ValueError(f"shot={shot}; use shot >= 1")
        if queries < 0:
            raise ValueError(f"queries={queries}; use queries >= 0")
        if way > n_classes:
            raise ValueError(
                f"way={way} but images has only {n_classes} classes; use way <= {n_classes}"
            )
        if shot + queries > n_per_class:
            raise ValueError(
                f"shot + queries = {shot + queries} but each class has only {n_per_class} images;"
                f" use shot + queries <= {n_per_class}"
            )

        # One row per image: image i of class c is row c * n_per_class + i. numpy draws the
        # random choices (its generator is platform independent); torch moves the pixels.
        self._images = images.detach().cpu().flatten(0, 1).contiguous()
        self.n_classes, self.n_per_class = n_classes, n_per_class
        self.way, self.shot, self.queries, self.seed = way, shot, queries, seed
        self._rng = np.random.Generator(np.random.PCG64(seed))

        # Rejection sampling of class sets is fast when repeats are rare (5 of 1692 classes);
        # when they are common (5 of 6), rank random keys instead. Both are uniform over sets.
        p_no_repeat = math.prod(1 - i / n_classes for i in range(way))
        self._rejection = p_no_repeat >= 0.5
        episode_bytes = way * (shot + queries) * self._images[0].numel() * 4
        self._gather_size = max(1, _GATHER_BYTES // episode_bytes)
        labels = torch.arange(way)
        # Support labels then query labels, as `_gather` lays out the images.
        labels = torch.cat([labels.repeat_interleave(shot), labels.repeat_interleave(queries)])
        self._labels = labels.repeat(self._gather_size, 1)
        self._block_state: dict[str, Any] = self._rng.bit_generator.state
        self._given = 0
        self._stream = self._episodes()

    def sample(self) -> Episode:
        """The next episode of the stream."""
        return next(self._stream)

    def sample_batch(self, n: int) -> EpisodeBatch:
        """The next `n` episodes, stacked into an EpisodeBatch (a leading dimension of size n)."""
        if n < 1:
            raise ValueError(f"n={n}; sample_batch needs n >= 1")
        return stack_episodes(list(self.take(n)))

    def take(self, n: int) -> Iterator[Episode]:
        """An iterator over exactly the next `n` episodes (e.g. a fixed-size evaluation run)."""
        if n < 0:
            raise ValueError(f"n={n}; take needs n >= 0")
        return itertools.islice(self, n)

    def __iter__(self) -> Iterator[Episode]:
        # Not `yield from self._stream`: closing this iterator (a `break` in a for loop) would
        # then close the shared stream too, and the sampler would be dead.
        while True:
            yield next(self._stream)

    def state_dict(self) -> dict[str, Any]:
        """Where the stream is, for resuming a run (train.fit's `state` file): the generator's
        state at the start of the current block of episodes and how many of them were given out.
        Plain values, loadable with torch.load(weights_only=True)."""
        return {"seed": self.seed, "block": self._block_state, "given": self._given}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the stream exactly where `state_dict()` was taken (same images, way, shot,
        queries and seed): the next episode is the one that sampler would have given next."""
        if state.get("seed") != self.seed:
            raise ValueError(
                f"the state is of a sampler with seed={state.get('seed')}, this one has"
                f" seed={self.seed}; build the sampler with the run's seed"
            )
        self._rng.bit_generator.state = state["block"]
        self._stream = self._episodes(skip=int(state["given"]))

    def _episodes(self, skip: int = 0) -> Iterator[Episode]:
        """The sampler's one stream of episodes, produced a block at a time; `skip` episodes of
        the first block are passed over (resuming)."""
        while True:
            self._block_state = self._rng.bit_generator.state  # a copy: resuming starts here
            self._given = skip
            classes = self._draw_classes(_INDEX_BLOCK)  # [B, way]
            # A uniformly random ordered choice of shot+queries images per class: sort random
            # keys and keep the first ranks. The first `shot` go to the support set.
            keys = self._rng.random((_INDEX_BLOCK, self.way, self.n_per_class))
            drawers = np.argsort(keys, axis=-1)[..., : self.shot + self.queries]
            for start in range(skip, _INDEX_BLOCK, self._gather_size):
                stop = min(start + self._gather_size, _INDEX_BLOCK)
                for episode in self._gather(classes[start:stop], drawers[start:stop]):
                    self._given += 1  # counted when handed out: the generator waits at yield
                    yield episode
            skip = 0

    def _draw_classes(self, n: int) -> np.ndarray:
        """[n, way] class indices, no repeats within a row, uniform over ordered choices."""
        if self._rejection:
            classes = self._rng.integers(0, self.n_classes, size=(n, self.way))
            while True:
                # Conditioned on having no repeats, i.i.d. draws are uniform over ordered sets,
                # so redrawing the rows with a repeat keeps the result uniform.
                ordered = np.sort(classes, axis=1)
                repeats = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
                if not repeats.any():
                    return classes
                classes[repeats] = self._rng.integers(
                    0, self.n_classes, size=(int(repeats.sum()), self.way)
                )
        keys = self._rng.random((n, self.n_classes))
        classes = np.argpartition(keys, self.way - 1, axis=1)[:, : self.way]  # `way` smallest
        # argpartition leaves them in no particular order; ordering by key makes the label
        # assignment uniformly random as well.
        order = np.argsort(np.take_along_axis(keys, classes, axis=1), axis=1)
        return np.take_along_axis(classes, order, axis=1)

    def _gather(self, classes: np.ndarray, drawers: np.ndarray) -> Iterator[Episode]:
        """Build len(classes) episodes with a single gather and float conversion."""
        b, n_support = len(classes), self.way * self.shot
        rows = classes[:, :, None] * self.n_per_class + drawers  # [b, way, shot + queries]
        # Each episode's row list is its support images then its query images, each class-major:
        # [c0 s0, c0 s1, ..., c1 s0, ..., c0 q0, c0 q1, ...].
        support_rows = rows[..., : self.shot].reshape(b, -1)
        query_rows = rows[..., self.shot :].reshape(b, -1)
        rows = torch.from_numpy(np.concatenate([support_rows, query_rows], axis=1))
        x = self._images.index_select(0, rows.view(-1))  # one gather for all b episodes
        if self._uint8:
            # x / 255 exactly, like torchvision; true division of uint8 yields float32 in one
            # pass over memory (x.float().div_(255) would take two: this step is memory bound)
            x = torch.div(x, 255)
        x = x.view(b, rows.shape[1], *x.shape[1:])  # [b, way * (shot + queries), C, H, W]
        y = self._labels[:b].clone()  # a fresh copy: episodes never share memory
        # Per-episode views, no copies: the support and query parts of each row.
        fields = (x[:, :n_support], y[:, :n_support], x[:, n_support:], y[:, n_support:])
        fields += (torch.from_numpy(classes),)
        for parts in zip(*(t.unbind(0) for t in fields), strict=True):
            yield Episode(*parts)
