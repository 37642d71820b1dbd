"""The shared episodic training loop: one `fit` trains every chapter's method.

Meta-training is stochastic gradient descent in which each minibatch is one episode, sampled
like the test episodes ("train as you test": Vinyals et al. 2016, arXiv:1606.04080):

    θ ← θ - η ∇_θ L( method_θ(episode), episode ),    episode ~ sampler

How a method plugs in (the one convention):
  * ``output = method(episode)``: the method's scores for the episode's queries, [N*Q, N],
    larger meaning "more likely this class" (logits; RelationNet's relation scores).
  * the loss is ``loss_fn(output, episode)`` if fit is given a `loss_fn`; else
    ``method.loss(output, episode)`` if the method defines `loss`; else the cross-entropy of
    `output` against ``episode.query_y``. It must return a scalar tensor.
    ProtoNet and MatchingNet (and MAML's query loss in a later chapter) use the default
    cross-entropy; RelationNet.loss is the MSE of its scores to one-hot labels; SiameseNet.loss
    is its balanced pair binary cross-entropy.
  * training accuracy is the argmax of `output` (nan if `output` is not [N*Q, N]).
  * a sampler may also yield META-BATCHES, EpisodeBatch of B episodes (stack_episodes, e.g.
    metalearn_course.gradient.meta_batches) to a method that accepts them and defines `loss`;
    its output is then [B, N*Q, N], and the accuracy is over all B·N·Q queries.
fit only calls the method, the loss, backward and the optimizer, so a gradient-based method
with an inner loop (MAML) trains with it unchanged.

Validation (optional): every `val_every` steps the method is evaluated with
`metalearn_course.evaluate.few_shot` on `val_episodes` episodes drawn ONCE from `val_sampler`,
so every validation scores the same tasks and the numbers are comparable. The best weights are
kept (and written to `checkpoint` if given), and at the end of training fit RESTORES THE BEST
VALIDATION WEIGHTS: the returned model is the early-stopped one, not the last step's.

Resuming (long runs, metalearn_course.reproduce): with ``state=path`` fit writes the whole
training state (weights, optimizer, schedule, the sampler's position, torch's RNG, history) to
`path` every `save_every` steps and at the end, atomically (`checkpoints.TrainingState`, the one
rule of every trainer). A run started again with ``resume=True`` and the same settings continues
from the last state written, and ends with the same weights as a run that was never interrupted.
The sampler must have `state_dict`/`load_state_dict` (EpisodeSampler and gradient.meta_batches
do).

Reading order: `fit` is the loop (zero_grad, forward, loss, backward, step); the pieces it is
made of follow it (`accumulate_gradient`, `TrainingLog`, `Validation`, the argument checks).

Reproducibility: the episodes come from the seeded samplers and the initial weights from torch's
seeded generator (metalearn_course.seeding.seed_everything), so two runs with the same seeds
give the same weights on the same machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from tqdm import tqdm

from metalearn_course.checkpoints import TrainingState, optimizer_settings, save_checkpoint
from metalearn_course.data.episodes import Episode, EpisodeBatch
from metalearn_course.distributed import is_main, unwrap
from metalearn_course.evaluate import episode_accuracy, few_shot
from metalearn_course.nets import mode
from metalearn_course.schedules import linear_decay, step_decay, warmup_cosine

# The learning-rate schedules fit takes (defined in metalearn_course.schedules, below the methods,
# so that RL² uses the same ones); importable from here next to fit.
__all__ = [
    "FitHistory",
    "LossFn",
    "TrainingLog",
    "Validation",
    "accumulate_gradient",
    "fit",
    "linear_decay",
    "step_decay",
    "warmup_cosine",
]

# loss_fn(output, episode) -> scalar tensor; the signature of a method's `loss` as well.
LossFn = Callable[[torch.Tensor, Episode | EpisodeBatch], torch.Tensor]


@dataclass
class FitHistory:
    """What happened during fit. Training entries are means over `log_every` steps."""

    step: list[int] = field(default_factory=list)  # last step of each logged window
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)  # training (query) accuracy
    val_step: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_step: int | None = None  # step of the best validation accuracy (None: no validation)
    best_val: float | None = None


def fit(
    method: nn.Module,
    sampler: Iterable[Episode],
    steps: int,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    lr_schedule: Callable[[int], float] | LRScheduler | None = None,
    loss_fn: LossFn | None = None,
    val_sampler: Iterable[Episode] | None = None,
    val_every: int = 0,
    val_episodes: int = 100,
    checkpoint: str | Path | None = None,
    state: str | Path | None = None,
    save_every: int = 100,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    log_every: int = 10,
    tasks_per_backward: int | None = None,
) -> FitHistory:
    """Train `method` on `steps` episodes from `sampler`, one optimizer step per episode.

    optimizer: default Adam(lr=1e-3) on the method's trainable parameters (the papers' choice).
    lr_schedule: a function step -> factor multiplying the initial learning rate (e.g.
        `warmup_cosine(steps)`, or the ProtoNet paper's `step_decay(2000)`), or a torch
        LRScheduler built on `optimizer`. Stepped once per training step.
    loss_fn: (output, episode) -> scalar; default method.loss, else cross-entropy (see module
        docstring).
    val_sampler, val_every, val_episodes, checkpoint: validate every `val_every` steps on
        `val_episodes` fixed episodes and restore the best weights at the end (`Validation`);
        `checkpoint` is a file where the best weights are kept. val_every=0: no validation.
    state, save_every, resume: write the whole training state to the file `state` every
        `save_every` steps and at the end; resume=True continues from it
        (`checkpoints.TrainingState`: the run's settings must be the same).
    device: where the method and episodes go; default the device of the method's parameters.
    progress: show a progress bar (stderr) with the running loss and accuracy.
    log_every: FitHistory gets the mean loss and accuracy of every `log_every` steps (and of the
        last, shorter window when steps is not a multiple).
    tasks_per_backward: meta-batches only: forward, loss and backward on groups of this many
        tasks, the gradients added up (see accumulate_gradient): the same update with the
        memory of one group.
    """
    _check_arguments(steps, log_every, tasks_per_backward, state, save_every, sampler)
    device = _place(method, device)
    optimizer = optimizer if optimizer is not None else _default_optimizer(method)
    scheduler = _as_scheduler(optimizer, lr_schedule)
    core = unwrap(method)  # under DDP: the module inside the wrapper (distributed.py)
    compute_loss = _loss_function(core, loss_fn)
    validation = Validation(method, val_sampler, val_every, val_episodes, checkpoint, device)
    log = TrainingLog(log_every)
    config = dict(steps=steps, log_every=log_every, val_every=val_every,
                  val_episodes=val_episodes, tasks_per_backward=tasks_per_backward,
                  optimizer=optimizer_settings(optimizer), schedule=scheduler is not None)
    run = TrainingState(state, config, resume)
    parts = dict(optimizer=optimizer, scheduler=scheduler, sampler=sampler, log=log,
                 validation=validation)
    done = _restore(run.load(), core, **parts)

    step = done
    with mode(method, training=True), _progress_bar(steps, done, progress) as bar:
        for step, episode in enumerate(itertools.islice(sampler, steps - done), start=done + 1):
            episode = episode.to(device)
            optimizer.zero_grad(set_to_none=True)
            try:  # forward, loss and backward: ∇ loss lands in the parameters' .grad
                output, loss = accumulate_gradient(
                    method, episode, compute_loss, tasks_per_backward
                )
            except FloatingPointError as error:
                raise FloatingPointError(f"at step {step}: {error}") from None
            optimizer.step()
            if scheduler is not None:
                scheduler.step()

            log.add(step, loss, output, episode, last=step == steps, bar=bar)
            validation.after(step, log.history)
            if state is not None and is_main() and (step % save_every == 0 or step == steps):
                run.save(core, **_state(step, **parts))
            bar.update(1)
    if step < steps:
        raise ValueError(
            f"sampler gave only {step} episodes but steps={steps}; use steps <= {step} or an"
            " endless EpisodeSampler"
        )
    validation.restore_best(core)  # early stopping: keep the best validated weights
    return log.history


# ---------------------------------------------------------------------------------------------
# The pieces fit is made of.


def accumulate_gradient(
    method: nn.Module,
    episode: Episode | EpisodeBatch,
    loss_fn: LossFn,
    tasks_per_backward: int | None = None,
) -> tuple[torch.Tensor, float]:
    """One training step's forward, loss and backward: ∇ loss is ADDED to the .grad of the
    method's parameters, as loss.backward() does. Returns the output (detached) and the loss.

    tasks_per_backward: for a meta-batch of B tasks, take the step on groups of this many
        tasks, each group's loss weighted by its share of the tasks, and add up the gradients
        ("gradient accumulation"). When the loss of a meta-batch is the mean of its tasks'
        losses (MAML's cross-entropy over equal-sized tasks is), this is the same gradient, up
        to the order of float additions, with one group's graph in memory instead of the
        whole meta-batch's. None: the whole meta-batch at once.
    """
    if episode.query_y.numel() == 0:
        raise ValueError("the sampler's episodes have no queries; use queries >= 1")
    parts = [episode]
    if tasks_per_backward is not None and isinstance(episode, EpisodeBatch):
        starts = range(0, len(episode), tasks_per_backward)
        parts = [episode[i : i + tasks_per_backward] for i in starts]  # the batch's own slicing
    outputs, total = [], 0.0
    for number, part in enumerate(parts):
        weight = 1.0 if part is episode else len(part) / len(episode)
        # Under DDP, the processes average their gradients after the last group only.
        last = number == len(parts) - 1
        sync = (
            method.no_sync() if isinstance(method, DDP) and not last else contextlib.nullcontext()
        )
        with sync:
            output = method(part)
            loss = loss_fn(output, part)
            if loss.ndim != 0:
                raise ValueError(
                    f"the loss has shape {tuple(loss.shape)}; a loss must be a scalar"
                    " (reduce it, e.g. with .mean())"
                )
            value = loss.item()
            if not math.isfinite(value):  # stop before a nan reaches the weights
                raise FloatingPointError(
                    f"loss is {value}; lower the learning rate or check the data"
                )
            (loss * weight if weight != 1.0 else loss).backward()
        outputs.append(output.detach())
        total += value * weight
    return (outputs[0] if len(outputs) == 1 else torch.cat(outputs)), total


class TrainingLog:
    """The FitHistory of a run: means of the loss and the training accuracy over windows of
    `every` steps (and the last, shorter window), shown on the progress bar as they close."""

    def __init__(self, every: int) -> None:
        self.every, self.history = every, FitHistory()
        self.window = [0.0, 0.0, 0]  # loss and accuracy summed over the open window, its steps

    def add(
        self, step: int, loss: float, output: torch.Tensor, episode: Episode, last: bool, bar: Any
    ) -> None:
        self.window[0] += loss
        # [N*Q, N] for an episode; [B, N*Q, N] for a meta-batch (stack_episodes)
        if tuple(output.shape) == (*episode.query_y.shape, episode.way):
            self.window[1] += episode_accuracy(output.detach(), episode.query_y)
        else:
            self.window[1] = math.nan
        self.window[2] += 1
        if step % self.every == 0 or last:
            history, (loss_sum, accuracy_sum, count) = self.history, self.window
            history.step.append(step)
            history.loss.append(loss_sum / count)
            history.accuracy.append(accuracy_sum / count)
            self.window = [0.0, 0.0, 0]
            shown = {"loss": f"{history.loss[-1]:.3f}", "acc": f"{history.accuracy[-1]:.3f}"}
            if history.best_val is not None:
                shown["best_val"] = f"{history.best_val:.3f}"
            bar.set_postfix(shown, refresh=False)  # drawn at the next (rate-limited) update


class Validation:
    """Early stopping: every `every` steps, the method's accuracy on `episodes` episodes drawn
    ONCE from `sampler` (so every validation scores the very same tasks), with the shared
    evaluator; the best weights are kept (and written to `checkpoint`, with the extras step and
    val_accuracy), and `restore_best` puts them back at the end. every=0: no validation."""

    def __init__(
        self,
        method: nn.Module,
        sampler: Iterable[Episode] | None,
        every: int,
        episodes: int,
        checkpoint: str | Path | None,
        device: torch.device,
    ) -> None:
        if every < 0:
            raise ValueError(f"val_every={every}; use val_every >= 1, or 0 for no validation")
        if every > 0 and sampler is None:
            raise ValueError(f"val_every={every} but val_sampler is None; pass a val_sampler")
        if every == 0 and sampler is not None:
            raise ValueError("val_sampler given but val_every=0; set val_every to validate")
        if checkpoint is not None and every == 0:
            raise ValueError(
                "checkpoint keeps the best-validation weights; pass val_sampler and val_every"
                " too (or call save_checkpoint after fit)"
            )
        if every > 0 and episodes < 1:
            raise ValueError(f"val_episodes={episodes}; use val_episodes >= 1")
        self.method, self.every, self.checkpoint, self.device = method, every, checkpoint, device
        self.episodes: list[Episode] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        if every > 0:
            self.episodes = [e.to(device) for e in itertools.islice(sampler, episodes)]
            if len(self.episodes) < episodes:
                raise ValueError(
                    f"val_sampler gave only {len(self.episodes)} episodes; use val_episodes <="
                    f" {len(self.episodes)} or an endless EpisodeSampler"
                )

    def after(self, step: int, history: FitHistory) -> None:
        if self.every == 0 or step % self.every != 0:
            return
        # few_shot switches to eval mode and back, and runs without gradients.
        accuracy = few_shot(
            self.method, self.episodes, len(self.episodes), self.device, progress=False
        ).mean
        history.val_step.append(step)
        history.val_accuracy.append(accuracy)
        if history.best_val is None or accuracy > history.best_val:
            history.best_step, history.best_val = step, accuracy
            core = unwrap(self.method)
            self.best_state = {k: v.detach().clone() for k, v in core.state_dict().items()}
            if self.checkpoint is not None and is_main():
                save_checkpoint(core, self.checkpoint, step=step, val_accuracy=accuracy)

    def restore_best(self, core: nn.Module) -> None:
        if self.best_state is not None:
            core.load_state_dict(self.best_state)


def _check_arguments(
    steps: int,
    log_every: int,
    tasks_per_backward: int | None,
    state: str | Path | None,
    save_every: int,
    sampler: Iterable[Episode],
) -> None:
    if steps < 1:
        raise ValueError(f"steps={steps}; use steps >= 1")
    if log_every < 1:
        raise ValueError(f"log_every={log_every}; use log_every >= 1")
    if tasks_per_backward is not None and tasks_per_backward < 1:
        raise ValueError(
            f"tasks_per_backward={tasks_per_backward}; use an int >= 1, or None for the whole"
            " meta-batch at once"
        )
    if state is not None:
        if save_every < 1:
            raise ValueError(f"save_every={save_every}; use save_every >= 1")
        if not callable(getattr(sampler, "state_dict", None)):
            raise ValueError(
                f"state needs a sampler that can save its position, but {type(sampler).__name__}"
                " has no state_dict(); use an EpisodeSampler or gradient.meta_batches"
            )


def _place(method: nn.Module, device: str | torch.device | None) -> torch.device:
    """Move the method to `device` if given; return the device its parameters are on."""
    if device is not None:
        method.to(device)
    parameter = next(itertools.chain(method.parameters(), method.buffers()), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _default_optimizer(method: nn.Module) -> torch.optim.Optimizer:
    trainable = [p for p in method.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("method has no trainable parameters; there is nothing to fit")
    return torch.optim.Adam(trainable, lr=1e-3)


def _as_scheduler(
    optimizer: torch.optim.Optimizer, lr_schedule: Callable[[int], float] | LRScheduler | None
) -> LRScheduler | None:
    if lr_schedule is None or isinstance(lr_schedule, LRScheduler):
        return lr_schedule
    return LambdaLR(optimizer, lr_schedule)


def _loss_function(method: nn.Module, loss_fn: LossFn | None) -> LossFn:
    """The convention of the module docstring: loss_fn, else method.loss, else cross-entropy."""
    if loss_fn is not None:
        return loss_fn
    if callable(getattr(method, "loss", None)):
        return method.loss

    def cross_entropy(logits: torch.Tensor, episode: Episode) -> torch.Tensor:
        return F.cross_entropy(logits, episode.query_y)

    return cross_entropy


def _progress_bar(steps: int, done: int, progress: bool) -> tqdm:
    # leave=True: the finished bar stays, the one line a refreshed notebook stores of it
    # (cli.final_lines); mininterval: at most one refresh a second while it runs
    return tqdm(
        total=steps,
        initial=done,
        disable=not progress,
        leave=True,
        file=sys.stderr,
        mininterval=1.0,
    )


def _state(
    step: int,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler | None,
    sampler: Any,
    log: TrainingLog,
    validation: Validation,
) -> dict[str, Any]:
    """Everything a resumed run needs besides the weights (checkpoints.TrainingState)."""
    return dict(
        step=step,
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict() if scheduler is not None else None,
        sampler=sampler.state_dict(),
        torch_rng=torch.get_rng_state(),
        history=dataclasses.asdict(log.history),
        window=list(log.window),
        best_state=validation.best_state,
    )


def _restore(
    saved: dict[str, Any] | None,
    core: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler | None,
    sampler: Any,
    log: TrainingLog,
    validation: Validation,
) -> int:
    """Put a saved state (from `_state`) back; return the steps already taken (0: fresh)."""
    if saved is None:
        return 0
    core.load_state_dict(saved["state_dict"])
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(saved["scheduler"])
    sampler.load_state_dict(saved["sampler"])
    torch.set_rng_state(saved["torch_rng"])
    log.history = FitHistory(**saved["history"])
    log.window = list(saved["window"])
    validation.best_state = saved["best_state"]
    return saved["step"]
