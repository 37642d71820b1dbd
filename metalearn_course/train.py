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
  * a sampler may also yield META-BATCHES of B episodes (stack_episodes, e.g.
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
`path` every `save_every` steps and at the end, atomically (save_checkpoint). A run started again
with ``resume=True`` continues from the last state written, and ends with the same weights as a
run that was never interrupted. The sampler must have `state_dict`/`load_state_dict`
(EpisodeSampler and gradient.meta_batches do).

Reproducibility: the episodes come from the seeded samplers and the initial weights from torch's
seeded generator (metalearn_course.seeding.seed_everything), so two runs with the same seeds
give the same weights on the same machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import os
import sys
import tempfile
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

from metalearn_course.data.episodes import Episode
from metalearn_course.distributed import is_main, unwrap
from metalearn_course.evaluate import episode_accuracy, few_shot

# loss_fn(output, episode) -> scalar tensor; the signature of a method's `loss` as well.
LossFn = Callable[[torch.Tensor, Episode], torch.Tensor]


@dataclass
class History:
    """What happened during fit. Training entries are means over `log_every` steps."""

    step: list[int] = field(default_factory=list)  # last step of each logged window
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)  # training (query) accuracy
    val_step: list[int] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_step: int | None = None  # step of the best validation accuracy (None: no validation)
    best_val: float | None = None


def save_checkpoint(method: nn.Module, path: str | Path, **extra: Any) -> None:
    """Save the method's state_dict and `extra` values (numbers, strings, tensors, lists,
    dicts: what torch.load(weights_only=True) accepts) to `path`.

    The file is written to a temporary file next to it and then renamed over `path`
    (os.replace is atomic), so an interrupted save never leaves a half-written checkpoint.
    """
    if "state_dict" in extra:
        raise ValueError("extra has a 'state_dict' key; that name is the weights, use another")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save({"state_dict": method.state_dict(), **extra}, file)
            file.flush()
            os.fsync(file.fileno())  # on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw contents of a file written by save_checkpoint, with a clear error for a file that
    is truncated, corrupt or something else.

    weights_only=True: the file can only hold tensors and plain values, so loading a
    checkpoint from elsewhere cannot run code (a full pickle could).
    """
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # truncated zip, bad pickle, a forbidden type...
        raise ValueError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {error});"
            " it may be truncated or corrupt: restore a good copy, or delete it to start over"
        ) from error
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(f"{path} is not a checkpoint written by save_checkpoint")
    return payload


def load_checkpoint(method: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load weights saved by save_checkpoint into `method`; return the extra values."""
    payload = read_checkpoint(path)
    method.load_state_dict(payload["state_dict"])  # copies onto the method's own device
    return {key: value for key, value in payload.items() if key != "state_dict"}


def warmup_cosine(steps: int) -> Callable[[int], float]:
    """The course's learning-rate schedule for `fit(lr_schedule=...)`: a linear warm-up over the
    first 5% of `steps`, then a cosine decay to 0 (Loshchilov & Hutter 2017, arXiv:1608.03983),

        factor(t) = min(1, (t + 1) / w) · ½ (1 + cos(π t / steps)),   w = max(1, steps // 20).
    """
    if steps < 1:
        raise ValueError(f"steps={steps}; the schedule needs at least 1 step")
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))

    return factor


def check_state_file(state: str | Path | None, resume: bool) -> None:
    """The rules of a resumable run, shared by every training loop: an existing state file is
    continued only with resume=True (never overwritten), and resume=True needs a state file."""
    if state is None:
        if resume:
            raise ValueError("resume=True needs state=<file> to resume from")
    elif Path(state).exists() and not resume:
        raise FileExistsError(
            f"{state} exists (a previous run's training state); pass resume=True to continue"
            " it, or remove the file to start over"
        )


def _loss_function(method: nn.Module, loss_fn: LossFn | None) -> LossFn:
    """The convention of the module docstring: loss_fn, else method.loss, else cross-entropy."""
    if loss_fn is not None:
        return loss_fn
    if callable(getattr(method, "loss", None)):
        return method.loss

    def cross_entropy(logits: torch.Tensor, episode: Episode) -> torch.Tensor:
        return F.cross_entropy(logits, episode.query_y)

    return cross_entropy


def tasks_of(episode: Episode, start: int, stop: int) -> Episode:
    """Tasks start..stop-1 of a meta-batch (tensors with a leading task dimension)."""
    return Episode(*(getattr(episode, f.name)[start:stop] for f in dataclasses.fields(Episode)))


def accumulate_gradient(
    method: nn.Module,
    episode: Episode,
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
    groups = [(0, None)]
    if tasks_per_backward is not None and episode.support_y.ndim == 2:  # a meta-batch
        tasks = episode.support_y.shape[0]
        groups = [
            (i, min(i + tasks_per_backward, tasks)) for i in range(0, tasks, tasks_per_backward)
        ]
    outputs, total = [], 0.0
    for number, (start, stop) in enumerate(groups):
        part = episode if stop is None else tasks_of(episode, start, stop)
        weight = 1.0 if stop is None else (stop - start) / episode.support_y.shape[0]
        # Under DDP, the processes average their gradients after the last group only.
        last = number == len(groups) - 1
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
) -> History:
    """Train `method` on `steps` episodes from `sampler`, one optimizer step per episode.

    optimizer: default Adam(lr=1e-3) on the method's trainable parameters (the papers' choice).
    lr_schedule: a function step -> factor multiplying the initial learning rate (e.g. the
        ProtoNet paper's halving every 2000 episodes: ``lambda s: 0.5 ** (s // 2000)``), or a
        torch LRScheduler built on `optimizer`. Stepped once per training step.
    loss_fn: (output, episode) -> scalar; default method.loss, else cross-entropy (see module
        docstring).
    val_sampler, val_every, val_episodes: validate every `val_every` steps on `val_episodes`
        fixed episodes; the best weights are restored at the end. val_every=0: no validation.
    checkpoint: file where the best-validation weights are kept (load with load_checkpoint);
        it stores the extras step and val_accuracy. Needs validation.
    state, save_every, resume: write the whole training state to the file `state` every
        `save_every` steps and at the end (see "Resuming" in the module docstring). If the file
        exists, resume=True continues from it; resume=False refuses to overwrite it. resume=True
        without the file starts at step 0.
    device: where the method and episodes go; default the device of the method's parameters.
    progress: show a progress bar (stderr) with the running loss and accuracy.
    log_every: History gets the mean loss and accuracy of every `log_every` steps (and of the
        last, shorter window when steps is not a multiple).
    tasks_per_backward: meta-batches only: forward, loss and backward on groups of this many
        tasks, the gradients added up (see accumulate_gradient): the same update with the
        memory of one group. On a CPU, 1 is also faster for MAML (each task's activations are
        reused while they are still in memory; benchmarks/maml_peers.py).
    """
    if steps < 1:
        raise ValueError(f"steps={steps}; use steps >= 1")
    if log_every < 1:
        raise ValueError(f"log_every={log_every}; use log_every >= 1")
    if tasks_per_backward is not None and tasks_per_backward < 1:
        raise ValueError(
            f"tasks_per_backward={tasks_per_backward}; use an int >= 1, or None for the whole"
            " meta-batch at once"
        )
    if val_every < 0:
        raise ValueError(f"val_every={val_every}; use val_every >= 1, or 0 for no validation")
    if val_every > 0 and val_sampler is None:
        raise ValueError(f"val_every={val_every} but val_sampler is None; pass a val_sampler")
    if val_every == 0 and val_sampler is not None:
        raise ValueError("val_sampler given but val_every=0; set val_every to validate")
    if checkpoint is not None and val_every == 0:
        raise ValueError(
            "checkpoint keeps the best-validation weights; pass val_sampler and val_every too"
            " (or call save_checkpoint after fit)"
        )
    if val_every > 0 and val_episodes < 1:
        raise ValueError(f"val_episodes={val_episodes}; use val_episodes >= 1")
    if state is not None:
        if save_every < 1:
            raise ValueError(f"save_every={save_every}; use save_every >= 1")
        if not callable(getattr(sampler, "state_dict", None)):
            raise ValueError(
                f"state needs a sampler that can save its position, but {type(sampler).__name__}"
                " has no state_dict(); use an EpisodeSampler or gradient.meta_batches"
            )
    check_state_file(state, resume)

    if device is not None:
        method.to(device)
    parameter = next(itertools.chain(method.parameters(), method.buffers()), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    if optimizer is None:
        trainable = [p for p in method.parameters() if p.requires_grad]
        if not trainable:
            raise ValueError("method has no trainable parameters; there is nothing to fit")
        optimizer = torch.optim.Adam(trainable, lr=1e-3)
    if lr_schedule is None or isinstance(lr_schedule, LRScheduler):
        scheduler = lr_schedule
    else:
        scheduler = LambdaLR(optimizer, lr_schedule)
    # Under DDP (metalearn_course.distributed) `method` is the wrapper: calling it averages
    # gradients across processes; its loss and weights are those of the module inside, and
    # only the first process writes files.
    core = unwrap(method)
    compute_loss = _loss_function(core, loss_fn)
    writes = is_main()

    val_set: list[Episode] = []
    if val_every > 0:
        # Drawn once: every validation then scores the very same tasks.
        val_set = [e.to(device) for e in itertools.islice(val_sampler, val_episodes)]
        if len(val_set) < val_episodes:
            raise ValueError(
                f"val_sampler gave only {len(val_set)} episodes; use val_episodes <="
                f" {len(val_set)} or an endless EpisodeSampler"
            )

    history = History()
    best_state: dict[str, torch.Tensor] | None = None
    window_loss, window_accuracy, window_steps = 0.0, 0.0, 0
    done = 0  # steps already taken by an earlier, interrupted run
    if state is not None and Path(state).exists():
        saved = read_checkpoint(state)
        if saved.get("steps") != steps:
            raise ValueError(
                f"{state} belongs to a run of steps={saved.get('steps')}, not steps={steps};"
                " resume with the same settings, or remove the file to start over"
            )
        core.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        sampler.load_state_dict(saved["sampler"])
        torch.set_rng_state(saved["torch_rng"])
        history = History(**saved["history"])
        window_loss, window_accuracy, window_steps = saved["window"]
        best_state, done = saved["best_state"], saved["step"]

    def save_state(step: int) -> None:
        save_checkpoint(
            core,
            state,
            step=step,
            steps=steps,
            optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict() if scheduler is not None else None,
            sampler=sampler.state_dict(),
            torch_rng=torch.get_rng_state(),
            history=dataclasses.asdict(history),
            window=[window_loss, window_accuracy, window_steps],
            best_state=best_state,
        )

    modes = [(m, m.training) for m in method.modules()]
    method.train()
    # mininterval: a notebook stores every refresh of the bar, so refresh at most once a second
    bar = tqdm(
        total=steps,
        initial=done,
        disable=not progress,
        leave=False,
        file=sys.stderr,
        mininterval=1.0,
    )
    step = done
    try:
        for step, episode in enumerate(itertools.islice(sampler, steps - done), start=done + 1):
            episode = episode.to(device)
            if episode.query_y.numel() == 0:
                raise ValueError("the sampler's episodes have no queries; use queries >= 1")
            optimizer.zero_grad(set_to_none=True)
            try:
                output, value = accumulate_gradient(
                    method, episode, compute_loss, tasks_per_backward
                )
            except FloatingPointError as error:
                raise FloatingPointError(f"at step {step}: {error}") from None
            optimizer.step()
            if scheduler is not None:
                scheduler.step()

            window_loss += value
            # [N*Q, N] for an episode; [B, N*Q, N] for a meta-batch (stack_episodes)
            expected = (*episode.query_y.shape, episode.way)
            if tuple(output.shape) == expected:
                window_accuracy += episode_accuracy(output.detach(), episode.query_y)
            else:
                window_accuracy = math.nan
            window_steps += 1
            if step % log_every == 0 or step == steps:
                history.step.append(step)
                history.loss.append(window_loss / window_steps)
                history.accuracy.append(window_accuracy / window_steps)
                window_loss, window_accuracy, window_steps = 0.0, 0.0, 0
                shown = {"loss": f"{history.loss[-1]:.3f}", "acc": f"{history.accuracy[-1]:.3f}"}
                if history.best_val is not None:
                    shown["best_val"] = f"{history.best_val:.3f}"
                bar.set_postfix(shown, refresh=False)  # drawn at the next (rate-limited) update

            if val_every > 0 and step % val_every == 0:
                # few_shot switches to eval mode and back, and runs without gradients.
                accuracy = few_shot(method, val_set, len(val_set), device, progress=False).mean
                history.val_step.append(step)
                history.val_accuracy.append(accuracy)
                if history.best_val is None or accuracy > history.best_val:
                    history.best_step, history.best_val = step, accuracy
                    best_state = {k: v.detach().clone() for k, v in core.state_dict().items()}
                    if checkpoint is not None and writes:
                        save_checkpoint(core, checkpoint, step=step, val_accuracy=accuracy)
            if state is not None and writes and (step % save_every == 0 or step == steps):
                save_state(step)
            bar.update(1)
    finally:
        bar.close()
        for module, training in modes:
            module.train(training)
    if step < steps:
        raise ValueError(
            f"sampler gave only {step} episodes but steps={steps}; use steps <= {step} or an"
            " endless EpisodeSampler"
        )
    if best_state is not None:
        core.load_state_dict(best_state)  # early stopping: keep the best validated weights
    return history
