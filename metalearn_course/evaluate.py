"""The shared few-shot evaluator: mean accuracy and 95% confidence interval over test episodes.

The protocol of the few-shot papers (e.g. Snell et al. 2017, arXiv:1703.05175; Finn et al.
2017, arXiv:1703.03400): run the method on many (at least 600) test episodes, score each
episode by its query accuracy, and report the mean with a 95% confidence interval,
mean ± 1.96 · std / sqrt(n). We use the sample standard deviation (ddof=1), the unbiased choice;
with 600 episodes it differs from ddof=0 by less than 0.1%.

Every chapter evaluates through `few_shot`, so methods are compared on equal terms. Two samplers
built with the same seed yield identical episodes, so two methods can be scored on the very same
tasks; `few_shot_accuracies` keeps the per-episode scores for a paired comparison, whose
interval is much tighter: ``mean_ci95(acc_a - acc_b)``.

Embed once, sample many. At test time a metric learner's encoder is a fixed function (eval mode:
batch norm uses its running statistics), so an image's embedding does not depend on the episode
it appears in. `embed_images` therefore runs the encoder once over the whole test split, and an
`EpisodeSampler` over those features, seeded like the image sampler, yields the very same
episodes in embedding space: 4 × 600 test episodes then cost one pass over 33,840 images instead
of 2,400 encoder calls. Methods whose episodes change the encoder (MAML, fine-tuning) must be
evaluated on images.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from metalearn_course.data.episodes import Episode
from metalearn_course.nets import mode

# Any callable Episode -> logits [N*Q, N]: an nn.Module or a plain function.
Method = Callable[[Episode], torch.Tensor]
T = TypeVar("T")  # what a sampler yields: an Episode, or anything with .to(device)
S = TypeVar("S")  # a per-item score


@dataclass(frozen=True)
class Accuracy:
    """Mean accuracy over episodes with the half-width of its 95% confidence interval."""

    mean: float  # fraction in [0, 1]
    ci95: float  # 1.96 * std(ddof=1) / sqrt(n); nan when n == 1 (no spread to estimate)
    n: int  # number of episodes

    def __str__(self) -> str:
        episodes = "episode" if self.n == 1 else "episodes"
        return f"{100 * self.mean:.2f} ± {100 * self.ci95:.2f} % ({self.n} {episodes})"


def mean_ci95(values: Sequence[float] | torch.Tensor | np.ndarray) -> Accuracy:
    """Mean and 95% confidence half-width of per-episode accuracies (or paired differences)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size == 0:
        raise ValueError("values is empty; pass at least one per-episode accuracy")
    ci95 = 1.96 * float(x.std(ddof=1)) / math.sqrt(x.size) if x.size > 1 else math.nan
    return Accuracy(mean=float(x.mean()), ci95=ci95, n=int(x.size))


def episode_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of queries whose highest logit is the true label. logits [..., M, N], labels
    [..., M]."""
    if logits.ndim < 2 or logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits has shape {tuple(logits.shape)} and labels {tuple(labels.shape)};"
            " expected logits [n_queries, way] and labels [n_queries]"
        )
    if labels.numel() == 0:
        raise ValueError("labels is empty; sample episodes with queries >= 1 to evaluate")
    return (logits.argmax(dim=-1) == labels).float().mean().item()


def _default_device(method: Method) -> torch.device:
    """Where the method's parameters live; cpu for functions and parameter-free modules."""
    if isinstance(method, nn.Module):
        parameter = next(itertools.chain(method.parameters(), method.buffers()), None)
        if parameter is not None:
            return parameter.device
    return torch.device("cpu")


def evaluate_stream(
    method: Callable[[T], torch.Tensor],
    sampler: Iterable[T],
    count: int,
    score: Callable[[torch.Tensor, T], S],
    device: str | torch.device | None = None,
    progress: bool = True,
    unit: str = "episodes",
) -> list[S]:
    """The one evaluation loop of the course: `score(method(item), item)` for the next `count`
    items of `sampler` (episodes, or batches of sequences in the memory chapter).

    An nn.Module runs in eval mode (dropout off, batch norm on its running statistics) under
    no_grad, and every submodule's previous mode is restored afterwards: a module may be partly
    frozen in eval mode on purpose. Items are moved to `device` (default: where the method's
    parameters are). `unit` names the items in error messages.
    """
    if count < 1:
        raise ValueError(f"{unit}={count}; use {unit} >= 1")
    device = _default_device(method) if device is None else torch.device(device)
    scores = []
    # leave=True: the finished bar stays, the one line a refreshed notebook stores of it
    # (cli.final_lines); mininterval: at most one refresh a second while it runs
    bar = tqdm(
        itertools.islice(sampler, count),
        total=count,
        disable=not progress,
        leave=True,
        file=sys.stderr,
        mininterval=1.0,
    )
    with mode(method, training=False), torch.no_grad():
        for item in bar:
            item = item.to(device)
            scores.append(score(method(item), item))
    if len(scores) < count:
        raise ValueError(
            f"sampler gave only {len(scores)} {unit} but {unit}={count};"
            f" use {unit} <= {len(scores)} or an endless sampler"
        )
    return scores


def _episode_score(logits: torch.Tensor, episode: Episode) -> float:
    expected = (episode.query_y.shape[-1], episode.way)
    if tuple(logits.shape) != expected:
        raise ValueError(
            f"method returned logits of shape {tuple(logits.shape)} for a"
            f" {episode.way}-way episode with {expected[0]} queries; expected {expected}"
        )
    return episode_accuracy(logits, episode.query_y)


def few_shot_accuracies(
    method: Method,
    sampler: Iterable[Episode],
    episodes: int = 600,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Per-episode query accuracies [episodes] (float64) of `method` on the next `episodes`
    episodes of `sampler`. See `few_shot` for the arguments."""
    scores = evaluate_stream(method, sampler, episodes, _episode_score, device, progress)
    return torch.tensor(scores, dtype=torch.float64)


def few_shot(
    method: Method,
    sampler: Iterable[Episode],
    episodes: int = 600,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> Accuracy:
    """Evaluate a few-shot classifier: mean query accuracy ± 95% CI over `episodes` episodes.

    method: any callable Episode -> logits [N*Q, N] (an nn.Module or a function). An nn.Module
        is put in eval mode for the run and its previous modes are restored afterwards.
    sampler: an EpisodeSampler (or any iterable of episodes); exactly `episodes` episodes are
        drawn from it, so methods evaluated with samplers of equal seed see identical episodes.
    episodes: the papers' protocol is at least 600; fewer is fine for quick runs (e.g. 20 in
        automated notebook runs), but the interval then is wide.
    device: where episodes are moved before calling `method`; default: the device of the
        method's parameters, else cpu.
    progress: show a progress bar (on stderr; it disappears when done).

    The run is under `torch.no_grad()`: nothing is trained by accident and no graph is kept.
    Gradient-based adaptation still works: torch.func transforms (`torch.func.grad`) ignore
    an outer no_grad, and a method that uses `torch.autograd.grad` can wrap its inner loop in
    `torch.enable_grad()`.
    """
    return mean_ci95(few_shot_accuracies(method, sampler, episodes, device, progress))


def embed_images(
    encoder: nn.Module,
    images: torch.Tensor,
    batch_size: int = 1024,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Features of every image of a split, computed once by a frozen encoder.

    images: [n_classes, n_per_class, H, W] or [n_classes, n_per_class, C, H, W]; uint8 images
        are scaled to [0, 1] like EpisodeSampler does.
    Returns float32 features [n_classes, n_per_class, *encoder output] on the cpu, ready for
    ``EpisodeSampler(features, way, shot, queries, seed)``. The encoder runs in eval mode under
    no_grad, in batches of `batch_size` images, on `device` (default: where its parameters are);
    its previous modes are restored.
    """
    if images.ndim == 4:
        images = images.unsqueeze(2)
    if images.ndim != 5:
        raise ValueError(
            f"images has shape {tuple(images.shape)}; expected [n_classes, n_per_class, H, W]"
            " or [n_classes, n_per_class, C, H, W]"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}; use batch_size >= 1")
    device = _default_device(encoder) if device is None else torch.device(device)
    flat = images.flatten(0, 1)
    features = []
    with mode(encoder, training=False), torch.no_grad():
        for start in range(0, len(flat), batch_size):
            x = flat[start : start + batch_size].to(device)
            x = torch.div(x, 255) if x.dtype == torch.uint8 else x.float()
            features.append(encoder(x).float().cpu())
    features = torch.cat(features)
    return features.view(*images.shape[:2], *features.shape[1:])
