"""Reproduce a paper's number with the book's code: ``metalearn-course reproduce METHOD``.

    metalearn-course reproduce --list
    metalearn-course reproduce maml --setting omniglot-5w1s --budget book
    metalearn-course reproduce protonet --setting omniglot-20w1s --budget paper --device cuda
    metalearn-course reproduce rl2 --setting bandits-k10n100 --budget book
    torchrun --nproc_per_node=4 -m metalearn_course.cli reproduce maml --budget paper

This module is the runner; what it runs, every method's settings at the paper's, the book's and
a quick budget, each citing the paper and table it reproduces, is written once as data in
`metalearn_course.recipes`. `run` looks up a recipe, builds its model, trains and evaluates it:

  * few-shot classification (`MetricBudget`, `MAMLBudget`, `ReptileBudget`) trains with the
    shared loop (`train.fit`, resumable: ``--resume`` continues a run that was stopped) and
    evaluates with the shared protocol (`evaluate.few_shot_accuracies` on the seeded test
    episodes every chapter uses);
  * MANN (`SequenceBudget`) trains with the same loop on label sequences and is scored by its
    accuracy at the k-th presentation of a class (`memory.instance_accuracy`);
  * RL² (`BanditBudget`) trains with PPO (`rl.train_rl2`, resumable too) and is scored by the
    total reward of a trial on the seeded evaluation tasks of the meta-RL chapter;
  * the in-context regressor (`InContextBudget`) trains with the shared loop on fresh linear
    tasks and is scored by its squared error / d after the prompt's last example, with least
    squares' and ridge's errors beside it.

Every run writes to ``--out``: ``results.json`` (the score and its 95% CI, the budget's
settings, device, commit, wall time, library versions), ``model.pt`` (the trained weights,
`checkpoints.load_checkpoint`) and ``state.pt`` (the training state, for --resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metalearn_course import __version__, distributed
from metalearn_course.checkpoints import save_checkpoint
from metalearn_course.data import EpisodeSampler, load_omniglot
from metalearn_course.engine import fast
from metalearn_course.evaluate import Accuracy, few_shot_accuracies, mean_ci95
from metalearn_course.gradient import ANIL, MAML, MetaSGD, Reptile, conv4_classifier, meta_batches
from metalearn_course.incontext import (
    InContextRegressor,
    LinearTasks,
    least_squares,
    ridge,
    squared_errors,
)
from metalearn_course.memory import MANN, SequenceSampler, instance_accuracy
from metalearn_course.memory.black_box import PRESENTATIONS
from metalearn_course.metric import MatchingNet, ProtoNet, RelationNet, SiameseNet
from metalearn_course.nets import Conv4
from metalearn_course.recipes import (
    BUDGETS,
    QUERIES,
    RECIPES,
    BanditBudget,
    Budget,
    Constant,
    FewShot,
    InContextBudget,
    LinearDecay,
    LinearRegression,
    MAMLBudget,
    MetricBudget,
    Recipe,
    ReptileBudget,
    Schedule,
    SequenceBudget,
    Sequences,
    StepDecay,
    WarmupCosine,
    as_dict,
    recipe_for,
)
from metalearn_course.rl import BanditTasks, RL2Agent, play, train_rl2
from metalearn_course.schedules import linear_decay, step_decay, warmup_cosine
from metalearn_course.seeding import seed_everything
from metalearn_course.train import fit

FewShotBudget = MetricBudget | MAMLBudget | ReptileBudget


def lr_schedule(schedule: Schedule, steps: int) -> Callable[[int], float]:
    """The learning-rate factor of each step (0-based) of a run of `steps` steps, for
    `train.fit(lr_schedule=...)`."""
    match schedule:
        case Constant():
            return lambda step: 1.0
        case WarmupCosine():
            return warmup_cosine(steps)
        case StepDecay(every=every, factor=factor):
            return step_decay(every, factor)
        case LinearDecay():
            return linear_decay(steps)
    raise TypeError(f"schedule={schedule!r}; use one of the schedules of metalearn_course.recipes")


# ---------------------------------------------------------------------------------------------
# The model of each method (RL²'s policy is built by rl.train_rl2 itself)


def _siamese(task: FewShot, budget: MetricBudget) -> nn.Module:
    return SiameseNet(Conv4(pooled=2), 64 * 7 * 7)  # two max-pools fewer: 64 × 7 × 7 features


def _matching(task: FewShot, budget: MetricBudget) -> nn.Module:
    return MatchingNet(Conv4(), learn_scale=True)


def _protonet(task: FewShot, budget: MetricBudget) -> nn.Module:
    return ProtoNet(Conv4())


def _relation(task: FewShot, budget: MetricBudget) -> nn.Module:
    return RelationNet(map_size=5, class_map="mean")


def _maml_family(kind: type[MAML], **options: Any) -> Callable[[FewShot, MAMLBudget], nn.Module]:
    """MAML (first-order with first_order=True), MetaSGD or ANIL on the Conv4 classifier, with
    the budget's inner loop; run by the engine (the same method, faster)."""

    def build(task: FewShot, budget: MAMLBudget) -> nn.Module:
        method = kind(
            conv4_classifier(way=task.way, hidden=budget.hidden),
            budget.inner_steps,
            budget.inner_lr,
            eval_inner_steps=budget.eval_inner_steps,
            **options,
        )
        return fast(method)  # the loop over tasks: faster than vmap on a CPU, the same result

    return build


def _reptile(task: FewShot, budget: ReptileBudget) -> nn.Module:
    method = Reptile(
        conv4_classifier(way=task.way, hidden=budget.hidden),
        budget.inner_steps,
        budget.inner_lr,
        inner_optimizer=budget.inner_optimizer,
        eval_inner_steps=budget.eval_inner_steps,
        inner_batch=budget.inner_batch,
        eval_inner_batch=budget.eval_inner_batch,
    )
    return fast(method, fold=False)  # the book's Reptile numbers were trained unfolded


def _mann(task: Sequences, budget: SequenceBudget) -> nn.Module:
    return MANN(
        task.way,
        hidden=budget.hidden,
        slots=budget.slots,
        width=budget.width,
        heads=budget.heads,
        write=budget.write,
        key_strength=budget.key_strength,
    )


def _icl_regression(task: LinearRegression, budget: InContextBudget) -> nn.Module:
    # positions for twice the prompt, as the notebook's model (its longer-prompt test): the same
    # weights from the same seed; the positions beyond the training length are never trained
    return InContextRegressor(
        task.dim, 2 * task.points, d_model=budget.d_model, layers=budget.layers, heads=budget.heads
    )


MODELS: dict[str, Callable[[Any, Any], nn.Module]] = {
    "siamese": _siamese,
    "matching": _matching,
    "protonet": _protonet,
    "relation": _relation,
    "maml": _maml_family(MAML),
    "fomaml": _maml_family(MAML, first_order=True),
    "reptile": _reptile,
    "metasgd": _maml_family(MetaSGD),
    "anil": _maml_family(ANIL),
    "mann": _mann,
    "icl-regression": _icl_regression,
}


def build_model(recipe: Recipe, budget: Budget) -> nn.Module:
    """The untrained model of `recipe` at `budget` (not RL²: rl.train_rl2 builds its policy)."""
    if recipe.method not in MODELS:
        raise ValueError(f"{recipe.method}'s model is built by its trainer")
    return MODELS[recipe.method](recipe.task, budget)


def outer_optimizer(model: nn.Module, budget: FewShotBudget) -> torch.optim.Optimizer:
    """Adam on every parameter (Meta-SGD's learned rates α at their own rate, `alpha_lr`), or,
    for Reptile, SGD at rate ε: Reptile's `loss` hands the optimizer θ - φ̄, so one SGD step is
    the Reptile update."""
    match budget:
        case ReptileBudget():
            return torch.optim.SGD(model.parameters(), lr=budget.lr)
        case MAMLBudget(alpha_lr=alpha_lr) if alpha_lr is not None:  # Meta-SGD: see recipes
            alpha = model.get_submodule("alpha")
            learned_rates = {id(p) for p in alpha.parameters()}
            rest = [p for p in model.parameters() if id(p) not in learned_rates]
            groups = [{"params": rest}, {"params": list(alpha.parameters()), "lr": alpha_lr}]
            return torch.optim.Adam(groups, lr=budget.lr)
    return torch.optim.Adam(model.parameters(), lr=budget.lr)


# ---------------------------------------------------------------------------------------------
# The trainers: one per kind of task


@dataclass(frozen=True)
class Job:
    """Where and how one run trains: the budget's name, the process (device, rank and number of
    processes under torchrun), the output folder, whether to resume, and the seed."""

    budget_name: str
    process: distributed.Process
    out: Path
    resume: bool
    seed: int


@dataclass
class Outcome:
    """What a trainer hands back to `run`: the trained model and its test score."""

    model: nn.Module
    score: Accuracy  # mean, 95% CI half-width, n
    metric: str  # what the score is, for results.json and the printout
    percent: bool  # print the score as a percentage (accuracies), or as it is (rewards)
    counted: str  # what `score.n` counts: "episodes" or "tasks"
    train_seconds: float
    eval_seconds: float
    details: dict[str, Any] = field(default_factory=dict)


def _train_few_shot(recipe: Recipe, budget: FewShotBudget, job: Job) -> Outcome:
    """Omniglot few-shot classification: train.fit, then the shared test episodes."""
    process, seed = job.process, job.seed
    task = recipe.task
    train_split = load_omniglot("vinyals-train")
    test_split = load_omniglot("vinyals-test")
    train_way = task.way  # a metric learner may train on more classes per episode than it tests
    if isinstance(budget, MetricBudget) and budget.train_way is not None:
        train_way = budget.train_way
    train_shot = task.shot if budget.train_shot is None else budget.train_shot
    sampler = EpisodeSampler(train_split.images, train_way, train_shot, budget.train_queries, seed)
    # channels-last: faster convolutions on CPUs and GPUs, as in the notebooks
    model = build_model(recipe, budget).to(process.device, memory_format=torch.channels_last)
    options: dict[str, Any] = {}
    match budget:
        case MetricBudget():  # one episode per step, validation if the budget asks for it
            stream: Any = sampler
            steps_of = ""
            if budget.val_every:
                val = load_omniglot("vinyals-val")
                options = dict(
                    val_sampler=EpisodeSampler(val.images, task.way, task.shot, QUERIES, seed=seed),
                    val_every=budget.val_every,
                    val_episodes=budget.val_episodes,
                )
        case MAMLBudget():  # meta-batches of tasks, split across processes
            stream = meta_batches(sampler, budget.meta_batch, process.rank, process.world)
            steps_of = f" of {budget.meta_batch} tasks"
            # one backward per task: the same update with one task's memory
            options["tasks_per_backward"] = 1
        case ReptileBudget():  # the same, one backward for the whole meta-batch
            stream = meta_batches(sampler, budget.meta_batch, process.rank, process.world)
            steps_of = f" of {budget.meta_batch} tasks"
    if process.main:
        print(
            f"{recipe.method} {recipe.setting} ({recipe.source}), {job.budget_name} budget:"
            f" {budget.steps} steps{steps_of} of {train_way}-way {train_shot}-shot on"
            f" {process.device}" + (f" × {process.world} processes" if process.world > 1 else ""),
            flush=True,
        )
    start = time.perf_counter()
    fit(
        distributed.wrap(model, process),
        stream,
        budget.steps,
        optimizer=outer_optimizer(model, budget),
        lr_schedule=lr_schedule(budget.schedule, budget.steps),
        state=job.out / "state.pt",
        save_every=max(1, min(500, budget.steps // 10)),
        resume=job.resume,
        progress=process.main,
        **options,
    )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    queries = budget.test_queries
    test = EpisodeSampler(test_split.images, task.way, task.shot, queries, seed=seed + 1)
    scores = few_shot_accuracies(model, test, budget.test_episodes, progress=process.main)
    elapsed = time.perf_counter() - start
    return Outcome(model, mean_ci95(scores), "accuracy", True, "episodes", train_seconds, elapsed)


def _train_mann(recipe: Recipe, budget: SequenceBudget, job: Job) -> Outcome:
    """MANN on label sequences (train.fit), scored at every presentation of a class on
    100 × test_batches test episodes; the score is the 2nd presentation's, as published."""
    process, seed, way = job.process, job.seed, recipe.task.way
    train_split, test_split = load_omniglot("vinyals-train"), load_omniglot("vinyals-test")
    torch.manual_seed(seed)  # as mann_omniglot does right before building the MANN
    model = build_model(recipe, budget).to(process.device)
    print(
        f"mann {recipe.setting} ({recipe.source}), {job.budget_name} budget: {budget.steps}"
        f" steps of {budget.batch} sequences on {process.device}",
        flush=True,
    )
    start = time.perf_counter()
    fit(
        model,
        SequenceSampler(train_split.images, way, budget.instances, budget.batch, seed=seed),
        budget.steps,
        optimizer=torch.optim.Adam(model.parameters(), lr=budget.lr),
        state=job.out / "state.pt",
        save_every=max(1, min(500, budget.steps // 10)),
        resume=job.resume,
    )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    test = SequenceSampler(test_split.images, way, budget.instances, batch_size=100, seed=seed + 1)
    curve = instance_accuracy(model, test, budget.test_batches, PRESENTATIONS)
    details = {"by_presentation": {k: [a.mean, a.ci95] for k, a in curve.items()}}
    elapsed = time.perf_counter() - start
    metric = "accuracy at the 2nd presentation"
    return Outcome(model, curve[2], metric, True, "episodes", train_seconds, elapsed, details)


def _train_rl2(recipe: Recipe, budget: BanditBudget, job: Job) -> Outcome:
    """RL² (rl.train_rl2, PPO), scored by the total reward of a trial on tasks 0 .. N-1."""
    process = job.process
    config = dataclasses.replace(budget.config, seed=job.seed)
    print(
        f"rl2 {recipe.setting} ({recipe.source}), {job.budget_name} budget: {config.updates} PPO"
        f" updates of {config.tasks_per_update} trials on {process.device}",
        flush=True,
    )
    start = time.perf_counter()
    policy, _ = train_rl2(
        config, process.device, progress=True, state=job.out / "state.pt", resume=job.resume
    )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tasks = BanditTasks.from_seeds(
        range(budget.eval_tasks), config.arms, config.horizon, device=process.device
    )
    totals = play(RL2Agent(policy), tasks, seed=job.seed).sum(1)
    elapsed = time.perf_counter() - start
    metric = "total reward per trial"
    return Outcome(policy, mean_ci95(totals), metric, False, "tasks", train_seconds, elapsed)


def _train(recipe: Recipe, budget: Budget, job: Job) -> Outcome:
    """The trainer of the budget's kind of task."""
    match budget:
        case MetricBudget() | MAMLBudget() | ReptileBudget():
            return _train_few_shot(recipe, budget, job)
        case SequenceBudget():
            return _train_mann(recipe, budget, job)
        case BanditBudget():
            return _train_rl2(recipe, budget, job)
        case InContextBudget():
            return _train_icl_regression(recipe, budget, job)
    raise TypeError(f"{type(budget).__name__}: no trainer")


def _train_icl_regression(recipe: Recipe, budget: InContextBudget, job: Job) -> Outcome:
    """The in-context regressor (train.fit on fresh prompts), scored by its squared error / d
    after n - 1 in-context examples on test_prompts new prompts; the curves of the model, least
    squares and (noisy tasks) ridge with λ = σ², the Bayes-optimal predictor, by number of
    examples, go to results.json."""
    process, seed, task = job.process, job.seed, recipe.task
    torch.manual_seed(seed)
    model = build_model(recipe, budget).to(process.device)
    print(
        f"icl-regression {recipe.setting} ({recipe.source}), {job.budget_name} budget:"
        f" {budget.steps} steps of {budget.batch} prompts on {process.device}",
        flush=True,
    )
    start = time.perf_counter()
    fit(
        model,
        LinearTasks(task.dim, task.points, budget.batch, noise=task.noise, seed=seed),
        budget.steps,
        optimizer=torch.optim.Adam(model.parameters(), lr=budget.lr),
        lr_schedule=lr_schedule(budget.schedule, budget.steps),
        state=job.out / "state.pt",
        save_every=max(1, min(1000, budget.steps // 10)),
        resume=job.resume,
    )
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    test = LinearTasks(task.dim, task.points, budget.test_prompts, noise=task.noise, seed=seed + 1)
    prompts = test.sample()
    model.eval()
    with torch.no_grad():
        errors = {"transformer": squared_errors(model(prompts.to(process.device)).cpu(), prompts)}
    # float64: least squares divides by tiny singular values near i = d
    exact = least_squares(prompts.xs.double(), prompts.ys.double()).float()
    errors["least squares"] = squared_errors(exact, prompts)
    if task.noise > 0:
        errors["ridge"] = squared_errors(ridge(prompts.xs, prompts.ys, task.noise**2), prompts)
    curves = {name: e.mean(dim=0).tolist() for name, e in errors.items()}
    elapsed = time.perf_counter() - start
    metric = f"squared error / d after {task.points - 1} examples"
    score = mean_ci95(errors["transformer"][:, -1])
    details = {"by_examples": curves}
    return Outcome(model, score, metric, False, "prompts", train_seconds, elapsed, details)


# ---------------------------------------------------------------------------------------------
# One run, and the command line


def _commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def run(
    method: str,
    setting: str | None = None,
    budget: str = "book",
    device: str = "auto",
    out: str | Path | None = None,
    resume: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Train and evaluate one recipe; write results.json, model.pt and state.pt to `out`
    (default ``results/METHOD-SETTING-BUDGET``). Returns the results."""
    recipe = recipe_for(method, setting)
    if budget not in recipe.budgets:
        raise ValueError(
            f"{method} {recipe.setting} has no {budget!r} budget; choose from"
            f" {sorted(recipe.budgets)}"
        )
    plan = recipe.budgets[budget]
    out = Path(out) if out is not None else Path("results") / f"{method}-{recipe.setting}-{budget}"
    results_file = out / "results.json"
    if results_file.exists() and not resume:
        raise FileExistsError(
            f"{results_file} exists; pass --resume to continue or re-evaluate that run, or"
            " choose another --out"
        )
    try:
        process = distributed.launch(device)
    except ValueError as error:
        raise ValueError(f"--device {device}: {error}") from error
    if process.world > 1 and not isinstance(plan, MAMLBudget | ReptileBudget):
        raise ValueError(
            f"{method} trains on one episode or batch per step, which is not split across"
            " processes; run it without torchrun (one process, one device)"
        )
    seed_everything(seed)
    out.mkdir(parents=True, exist_ok=True)
    job = Job(budget_name=budget, process=process, out=out, resume=resume, seed=seed)
    try:
        outcome = _train(recipe, plan, job)
    except torch.OutOfMemoryError as error:
        raise SystemExit(
            f"out of memory on {process.device} ({error}); use a smaller meta-batch, more"
            " processes (torchrun), or --device cpu"
        ) from error
    score = outcome.score
    results = {
        "method": method,
        "setting": recipe.setting,
        "budget": budget,
        "config": as_dict(plan),
        "seed": seed,
        "metric": outcome.metric,
        "score": score.mean,
        "ci95": score.ci95,
        "n": score.n,
        **outcome.details,
        "published": recipe.published,
        "source": recipe.source,
        "device": str(process.device),
        "processes": process.world,
        "train_seconds": round(outcome.train_seconds, 1),
        "eval_seconds": round(outcome.eval_seconds, 1),
        "commit": _commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            "metalearn_course": __version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
    if process.main:
        save_checkpoint(
            outcome.model, out / "model.pt", recipe=f"{method} {recipe.setting}", budget=budget
        )
        tmp = results_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(results, indent=2) + "\n")
        tmp.replace(results_file)  # atomic: a reader never sees half a file
        if outcome.percent:
            shown = f"{100 * score.mean:.2f} ± {100 * score.ci95:.2f} %"
        else:
            shown = f"{score.mean:.2f} ± {score.ci95:.2f}"
        print(
            f"{method} {recipe.setting}: {outcome.metric} {shown} over {score.n} test"
            f" {outcome.counted} (published: {recipe.published or 'a figure only'}); wrote {out}",
            flush=True,
        )
    return results


def describe() -> str:
    """The table printed by ``reproduce --list``."""
    lines = [f"{'method':<9} {'setting':<21} {'published':>9}  budgets             source"]
    for recipe in RECIPES.values():
        budgets = ",".join(b for b in BUDGETS if b in recipe.budgets)
        published = "–" if recipe.published is None else f"{recipe.published:.1f}"
        lines.append(
            f"{recipe.method:<9} {recipe.setting:<21} {published:>9}  {budgets:<19} {recipe.source}"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``metalearn-course reproduce`` and ``python -m metalearn_course.reproduce``
    (defined once, here)."""
    parser.add_argument("method", nargs="?", help="e.g. maml, fomaml, protonet (see --list)")
    parser.add_argument("--list", action="store_true", help="list the recipes and exit")
    parser.add_argument(
        "--setting", help="e.g. omniglot-20w5s, bandits-k10n100 (default: the method's first)"
    )
    parser.add_argument("--budget", default="book", choices=BUDGETS, help="default: book")
    parser.add_argument("--device", default="auto", help="auto (a GPU if any), cpu, cuda")
    parser.add_argument("--out", type=Path, help="default: results/METHOD-SETTING-BUDGET")
    parser.add_argument("--resume", action="store_true", help="continue a stopped run")
    parser.add_argument("--seed", type=int, default=0)


def command(args: argparse.Namespace) -> None:
    """The command: run the options parsed by `add_arguments` (``metalearn-course reproduce``)."""
    if args.list or args.method is None:
        print(describe())
        return
    try:
        run(args.method, args.setting, args.budget, args.device, args.out, args.resume, args.seed)
    except (ValueError, FileExistsError) as error:
        raise SystemExit(f"reproduce: {error}") from error


if __name__ == "__main__":  # python -m metalearn_course.reproduce (e.g. under torchrun)
    parser = argparse.ArgumentParser(
        prog="python -m metalearn_course.reproduce", description=__doc__.split("\n")[0]
    )
    add_arguments(parser)
    command(parser.parse_args(sys.argv[1:]))
