"""The settings of every paper reproduction, written once: ``metalearn-course reproduce`` runs them.

A `Recipe` is one method in one setting (say ProtoNet, Omniglot 20-way 1-shot), with the paper
and table whose number it reproduces and up to three budgets:

  paper  the paper's schedule (training episodes, way/shot/queries in training, learning rates
         and schedule, meta-batch, inner steps): hours on a GPU. Where a paper does not state a
         setting, the recipe's comment says whose choice stands in for it.
  book   what the chapter's notebook runs on a laptop CPU (the notebook's "book" budget): it
         gives the numbers printed in the book. `Recipe.notebook` names that notebook, and
         tests/test_recipes.py fails when its parameters cell and the book budget disagree.
  quick  a few steps and 20 test episodes: a smoke test that the whole path runs.

Everything here is plain, frozen data: no models, no training. Each family of methods has its
own budget type with only the settings it uses: `MetricBudget` (Siamese, Matching, Prototypical
and Relation networks), `MAMLBudget` (MAML, first-order MAML, Meta-SGD, ANIL), `ReptileBudget`,
`SequenceBudget` (MANN), `BanditBudget` (RL²) and `InContextBudget` (the in-context
regressor). A learning-rate schedule is a value too:
`Constant()`, `WarmupCosine()`, `StepDecay(every=2000, factor=0.5)` or `LinearDecay()`, which
`metalearn_course.reproduce` turns into `train.warmup_cosine`, `train.step_decay` or
`train.linear_decay`. The runner, the tests and the notebooks' checks all read these values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from metalearn_course.rl.rl2 import RL2Config  # RL²'s one configuration type (a dataclass)

BUDGETS = ("paper", "book", "quick")
QUERIES = 15  # query images per class in the test episodes: the course's shared protocol


# ---------------------------------------------------------------------------------------------
# Settings: what task a recipe is scored on


@dataclass(frozen=True, kw_only=True)
class FewShot:
    """`way`-way `shot`-shot classification of Omniglot characters (the Vinyals split)."""

    way: int
    shot: int

    @property
    def name(self) -> str:
        return f"omniglot-{self.way}w{self.shot}s"


@dataclass(frozen=True, kw_only=True)
class Sequences:
    """Santoro et al.'s label sequences: episodes of `way` Omniglot classes, each label given
    one step after its image, scored at every presentation of a class."""

    way: int

    @property
    def name(self) -> str:
        return f"omniglot-{self.way}w-sequences"


@dataclass(frozen=True, kw_only=True)
class Bandits:
    """Bernoulli bandits with `arms` arms, arm means drawn from U[0, 1], `horizon` pulls per
    trial (Duan et al. 2016)."""

    arms: int
    horizon: int

    @property
    def name(self) -> str:
        return f"bandits-k{self.arms}n{self.horizon}"


@dataclass(frozen=True, kw_only=True)
class LinearRegression:
    """Garg et al.'s in-context linear regression: prompts of `points` examples of
    y = w·x + noise·ε, with w, x ~ N(0, I_dim) and ε ~ N(0, 1)."""

    dim: int
    points: int
    noise: float

    @property
    def name(self) -> str:
        noisy = f"-noise{self.noise:g}" if self.noise else ""
        return f"linear-d{self.dim}n{self.points}{noisy}"


Task = FewShot | Sequences | Bandits | LinearRegression


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules: a factor multiplying the optimizer's rate at each step


@dataclass(frozen=True)
class Constant:
    """The same rate at every step (MAML's Adam)."""


@dataclass(frozen=True)
class WarmupCosine:
    """The book's: a linear warm-up over the first 5% of the steps, then a cosine decay to 0
    (`train.warmup_cosine`)."""


@dataclass(frozen=True, kw_only=True)
class StepDecay:
    """The papers' step decay: the rate times `factor` every `every` steps (`train.step_decay`;
    Snell et al. halve Adam's rate every 2000 episodes)."""

    every: int
    factor: float = 0.5


@dataclass(frozen=True)
class LinearDecay:
    """From the full rate at the first step down to 0 at the last (`train.linear_decay`;
    Reptile's ε)."""


Schedule = Constant | WarmupCosine | StepDecay | LinearDecay


# ---------------------------------------------------------------------------------------------
# Budgets: one type per family of methods, with the settings that family uses


@dataclass(frozen=True, kw_only=True)
class MetricBudget:
    """A metric learner (Siamese, Matching, Prototypical or Relation network): Adam, one step
    per training episode, on one model used for every test setting of its way."""

    steps: int  # training episodes, one Adam step each
    lr: float  # Adam's (peak) learning rate
    schedule: Schedule
    train_way: int | None = None  # classes per training episode; None: the test way
    train_shot: int | None = None  # support images per class in training; None: the test shot
    train_queries: int = 5  # query images per class in training episodes
    val_every: int = 0  # validate every so many steps and keep the best weights (0: never)
    val_episodes: int = 200  # validation episodes (5-way, the test shot)
    test_episodes: int = 600
    test_queries: int = QUERIES  # query images per class in the test episodes


@dataclass(frozen=True, kw_only=True)
class MAMLBudget:
    """MAML, first-order MAML, Meta-SGD or ANIL on the Conv4 classifier: Adam on meta-batches
    of tasks of the test way, `inner_steps` gradient steps of rate α on each task's support."""

    steps: int  # meta-iterations (one Adam step each)
    lr: float  # Adam's (peak) learning rate for the initialisation θ
    schedule: Schedule
    train_shot: int | None = None  # support images per class in training; None: the test shot
    train_queries: int  # query images per class in training tasks
    meta_batch: int  # tasks per meta-iteration
    inner_steps: int  # inner gradient steps in training
    inner_lr: float  # α (Meta-SGD: the value every learned α starts at)
    eval_inner_steps: int  # inner gradient steps at test time
    alpha_lr: float | None = None  # Meta-SGD only: Adam's rate for the learned α (None: lr)
    hidden: int = 64  # filters per conv block, as in the papers
    test_episodes: int = 600
    test_queries: int = QUERIES


@dataclass(frozen=True, kw_only=True)
class ReptileBudget:
    """Reptile on the Conv4 classifier: inner steps of `inner_optimizer` on each task, then the
    outer update θ ← θ + ε (φ̄ - θ), an SGD step of rate ε (`lr`) on the meta-batch's mean."""

    steps: int  # meta-iterations
    lr: float  # ε, the outer step size
    schedule: Schedule
    train_shot: int  # images per class of a training task
    train_queries: int = 5  # query images per class of a training task (only logged)
    meta_batch: int  # tasks per meta-iteration
    inner_optimizer: str  # "adam" (the authors') or "sgd"
    inner_steps: int  # inner steps in training
    inner_lr: float  # the inner optimizer's learning rate
    inner_batch: int | None  # images per inner step in training; None: the whole task
    eval_inner_steps: int  # inner steps at test time
    eval_inner_batch: int | None  # images per inner step at test time; None: the whole support
    hidden: int = 64  # filters per conv block, as in the papers
    test_episodes: int = 600
    test_queries: int = QUERIES


@dataclass(frozen=True, kw_only=True)
class SequenceBudget:
    """MANN on Omniglot label sequences (book/04_memory/mann_omniglot): Adam on batches of
    `batch` episodes of way × `instances` presentations; `test_batches` batches of 100 test
    episodes."""

    steps: int  # Adam steps, one batch of episodes each
    lr: float
    batch: int  # episodes per training step
    hidden: int  # controller LSTM units
    slots: int  # memory rows
    width: int  # numbers per memory row
    heads: int  # read heads
    write: str  # "key" (the paper), "add" (NTM-style add vector), "bind" (the course's)
    key_strength: bool  # sharpen the reads with the NTM's key strength (not in the paper)
    instances: int = 10  # drawings of each class per episode
    test_batches: int = 10  # batches of 100 test episodes


@dataclass(frozen=True, kw_only=True)
class BanditBudget:
    """RL² on Bernoulli bandits (book/05_rl/): PPO as configured by `config` (its arms and
    horizon are the setting's), scored on the evaluation tasks with seeds 0 .. eval_tasks - 1."""

    config: RL2Config
    eval_tasks: int = 1000


@dataclass(frozen=True, kw_only=True)
class InContextBudget:
    """An in-context regressor (book/08_incontext/icl_regression): a causal transformer trained
    with Adam on `batch` prompts of fresh tasks per step, scored on `test_prompts` new ones."""

    steps: int  # Adam steps, one batch of prompts each
    lr: float  # Adam's peak learning rate
    schedule: Schedule
    batch: int  # prompts per step, each of a new task
    d_model: int  # the transformer's width
    layers: int  # blocks
    heads: int  # attention heads per block
    test_prompts: int = 1000


Budget = MetricBudget | MAMLBudget | ReptileBudget | SequenceBudget | BanditBudget | InContextBudget

# The budget type of each method: a recipe of another type is refused when it is written.
BUDGET_TYPES: dict[str, type] = {
    "siamese": MetricBudget,
    "matching": MetricBudget,
    "protonet": MetricBudget,
    "relation": MetricBudget,
    "maml": MAMLBudget,
    "fomaml": MAMLBudget,
    "reptile": ReptileBudget,
    "metasgd": MAMLBudget,
    "anil": MAMLBudget,
    "mann": SequenceBudget,
    "rl2": BanditBudget,
    "icl-regression": InContextBudget,
}


def quick_budget(budget: MetricBudget | MAMLBudget | ReptileBudget | InContextBudget) -> Budget:
    """A budget cut to a smoke test: 3 steps, at most 2 tasks per meta-batch, no validation,
    20 test episodes (or prompts)."""
    match budget:
        case InContextBudget():
            return dataclasses.replace(budget, steps=3, test_prompts=20)
        case MetricBudget():
            return dataclasses.replace(budget, steps=3, val_every=0, test_episodes=20)
        case MAMLBudget() | ReptileBudget():
            meta_batch = min(budget.meta_batch, 2)
            return dataclasses.replace(budget, steps=3, meta_batch=meta_batch, test_episodes=20)
    raise TypeError(f"{type(budget).__name__} has no automatic quick budget; write one")


@dataclass(frozen=True, kw_only=True)
class Recipe:
    """One method in one setting, with its budgets and the published number it reproduces."""

    method: str  # a key of BUDGET_TYPES
    task: Task
    source: str  # paper, arXiv id and table
    # as printed in the paper: accuracy in percent, or RL²'s total reward; None where the paper
    # shows the result as a figure only (`source` names it)
    published: float | None
    paper: Budget | None = None
    book: Budget | None = None
    quick: Budget | None = None  # None: quick_budget(book), or of paper where there is no book
    notebook: str | None = None  # the notebook whose parameters cell is the book budget

    def __post_init__(self) -> None:
        if self.paper is None and self.book is None:
            raise ValueError(f"{self.method} {self.setting}: give a paper or a book budget")
        if (self.book is None) != (self.notebook is None):
            raise ValueError(f"{self.method} {self.setting}: a book budget names its notebook")
        if self.quick is None:
            base = self.book if self.book is not None else self.paper
            object.__setattr__(self, "quick", quick_budget(base))  # frozen: set once, here
        for name, budget in self.budgets.items():
            if not isinstance(budget, BUDGET_TYPES[self.method]):
                kind = BUDGET_TYPES[self.method].__name__
                raise TypeError(f"{self.method} {self.setting}: its {name} budget is not a {kind}")
            if isinstance(budget, MAMLBudget) and budget.alpha_lr is not None:
                if self.method != "metasgd":
                    raise ValueError(f"{self.method}: alpha_lr is Meta-SGD's learned α's rate")

    @property
    def setting(self) -> str:
        """The setting's name, as on the command line: omniglot-5w1s, bandits-k5n100, ..."""
        return self.task.name

    @property
    def way(self) -> int:
        return self.task.way  # few-shot and sequence settings

    @property
    def shot(self) -> int:
        return self.task.shot  # few-shot settings

    @property
    def budgets(self) -> dict[str, Budget]:
        """The budgets this recipe has, by name (paper, book, quick)."""
        named = {"paper": self.paper, "book": self.book, "quick": self.quick}
        return {name: budget for name, budget in named.items() if budget is not None}


def as_dict(budget: Budget) -> dict[str, Any]:
    """The budget as JSON values (results.json's "config"); a schedule as it is written here,
    e.g. "StepDecay(every=2000, factor=0.5)"."""
    values = {}
    for entry in dataclasses.fields(budget):
        value = getattr(budget, entry.name)
        if isinstance(value, Schedule):
            value = repr(value)
        elif dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        values[entry.name] = value
    return values


# ---------------------------------------------------------------------------------------------
# The metric learners (book/02_metric/). Book budgets: each notebook's, one model trained with
# 1-shot episodes and the book's warm-up + cosine schedule. Paper budgets: the long schedule of
# Snell et al. 2017 (arXiv:1703.05175) on Omniglot, Adam at 1e-3 halved every 2000 episodes
# with early stopping on the validation classes (the notebooks' "full" budget), with each
# method's training episodes.

KOCH = "Koch et al. 2015, evaluated by Vinyals et al. 2016 (arXiv:1606.04080), Table 1"
VINYALS = "Vinyals et al. 2016 (arXiv:1606.04080), Table 1, no fine-tuning"
SNELL = "Snell et al. 2017 (arXiv:1703.05175), Table 1"
SUNG = "Sung et al. 2018 (arXiv:1711.06025), Table 1"

# Koch et al. 2015's convolutional Siamese network as evaluated by Vinyals et al.
SIAMESE_BOOK = MetricBudget(
    steps=400, lr=3e-3, schedule=WarmupCosine(), train_way=60, train_shot=1, train_queries=2
)
SIAMESE_PAPER = MetricBudget(
    steps=20_000,
    lr=1e-3,
    schedule=StepDecay(every=2000, factor=0.5),
    train_way=60,
    train_queries=2,
    val_every=500,
)
MATCHING_BOOK = MetricBudget(
    steps=450, lr=0.01, schedule=WarmupCosine(), train_way=20, train_shot=1, train_queries=9
)
MATCHING_PAPER = MetricBudget(
    steps=20_000,
    lr=1e-3,
    schedule=StepDecay(every=2000, factor=0.5),
    train_way=20,
    train_queries=9,
    val_every=500,
)
PROTONET_BOOK = MetricBudget(
    steps=550, lr=0.01, schedule=WarmupCosine(), train_way=60, train_shot=1, train_queries=2
)
# Snell et al.: 60-way training episodes, 5 queries, training shot = test shot.
PROTONET_PAPER = MetricBudget(
    steps=20_000,
    lr=1e-3,
    schedule=StepDecay(every=2000, factor=0.5),
    train_way=60,
    train_queries=5,
    val_every=500,
)
RELATION_BOOK = MetricBudget(
    steps=1000, lr=3e-3, schedule=WarmupCosine(), train_way=20, train_shot=1, train_queries=5
)
# The 20-way test episodes have 5 queries per class: every query meets all 20 class maps.
RELATION_BOOK_20WAY = MetricBudget(
    steps=1000,
    lr=3e-3,
    schedule=WarmupCosine(),
    train_way=20,
    train_shot=1,
    train_queries=5,
    test_queries=5,
)
# Sung et al.: the authors' 5-way 1-shot script (5-way episodes, 19 queries, Adam 1e-3 halved
# every 100,000 episodes, a million episodes); their other settings' scripts are not
# reproduced here.
RELATION_PAPER_5W1S = MetricBudget(
    steps=1_000_000,
    lr=1e-3,
    schedule=StepDecay(every=100_000, factor=0.5),
    train_queries=19,
    val_every=5000,
)

SIAMESE_NOTEBOOK = "book/02_metric/siamese.ipynb"
MATCHING_NOTEBOOK = "book/02_metric/matching.ipynb"
PROTONET_NOTEBOOK = "book/02_metric/protonet.ipynb"
RELATION_NOTEBOOK = "book/02_metric/relation.ipynb"

METRIC_RECIPES = [
    Recipe(method="siamese", task=FewShot(way=5, shot=1), source=KOCH, published=96.7,
           paper=SIAMESE_PAPER, book=SIAMESE_BOOK, notebook=SIAMESE_NOTEBOOK),
    Recipe(method="siamese", task=FewShot(way=5, shot=5), source=KOCH, published=98.4,
           paper=SIAMESE_PAPER, book=SIAMESE_BOOK, notebook=SIAMESE_NOTEBOOK),
    Recipe(method="siamese", task=FewShot(way=20, shot=1), source=KOCH, published=88.0,
           paper=SIAMESE_PAPER, book=SIAMESE_BOOK, notebook=SIAMESE_NOTEBOOK),
    Recipe(method="siamese", task=FewShot(way=20, shot=5), source=KOCH, published=96.5,
           paper=SIAMESE_PAPER, book=SIAMESE_BOOK, notebook=SIAMESE_NOTEBOOK),
    Recipe(method="matching", task=FewShot(way=5, shot=1), source=VINYALS, published=98.1,
           paper=MATCHING_PAPER, book=MATCHING_BOOK, notebook=MATCHING_NOTEBOOK),
    Recipe(method="matching", task=FewShot(way=5, shot=5), source=VINYALS, published=98.9,
           paper=MATCHING_PAPER, book=MATCHING_BOOK, notebook=MATCHING_NOTEBOOK),
    Recipe(method="matching", task=FewShot(way=20, shot=1), source=VINYALS, published=93.8,
           paper=MATCHING_PAPER, book=MATCHING_BOOK, notebook=MATCHING_NOTEBOOK),
    Recipe(method="matching", task=FewShot(way=20, shot=5), source=VINYALS, published=98.5,
           paper=MATCHING_PAPER, book=MATCHING_BOOK, notebook=MATCHING_NOTEBOOK),
    Recipe(method="protonet", task=FewShot(way=5, shot=1), source=SNELL, published=98.8,
           paper=PROTONET_PAPER, book=PROTONET_BOOK, notebook=PROTONET_NOTEBOOK),
    Recipe(method="protonet", task=FewShot(way=5, shot=5), source=SNELL, published=99.7,
           paper=PROTONET_PAPER, book=PROTONET_BOOK, notebook=PROTONET_NOTEBOOK),
    Recipe(method="protonet", task=FewShot(way=20, shot=1), source=SNELL, published=96.0,
           paper=PROTONET_PAPER, book=PROTONET_BOOK, notebook=PROTONET_NOTEBOOK),
    Recipe(method="protonet", task=FewShot(way=20, shot=5), source=SNELL, published=98.9,
           paper=PROTONET_PAPER, book=PROTONET_BOOK, notebook=PROTONET_NOTEBOOK),
    Recipe(method="relation", task=FewShot(way=5, shot=1), source=SUNG, published=99.6,
           paper=RELATION_PAPER_5W1S, book=RELATION_BOOK, notebook=RELATION_NOTEBOOK),
    Recipe(method="relation", task=FewShot(way=5, shot=5), source=SUNG, published=99.8,
           book=RELATION_BOOK, notebook=RELATION_NOTEBOOK),
    Recipe(method="relation", task=FewShot(way=20, shot=1), source=SUNG, published=97.6,
           book=RELATION_BOOK_20WAY, notebook=RELATION_NOTEBOOK),
    Recipe(method="relation", task=FewShot(way=20, shot=5), source=SUNG, published=99.1,
           book=RELATION_BOOK_20WAY, notebook=RELATION_NOTEBOOK),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The gradient-based methods (book/03_gradient/). Book budgets: each notebook's, one 5-way
# model trained on 1-shot tasks (Reptile: on its 10-image tasks) with Adam's warm-up + cosine
# schedule, used for both 5-way settings, with the test-time inner steps chosen in the notebook
# on the validation classes. There are no 20-way book budgets.

FINN = "Finn et al. 2017 (arXiv:1703.03400), Table 1"
# The MAML paper reports first-order MAML on MiniImagenet only; its Omniglot numbers are Nichol
# et al.'s "1st-order MAML + Transduction" row, next to Reptile's (Table 2 of arXiv v3, whose
# Reptile numbers differ from v1's).
NICHOL_FIRST_ORDER = (
    "Nichol et al. 2018 (arXiv:1803.02999v3), Table 2, 1st-order MAML + Transduction"
)
NICHOL = "Nichol et al. 2018 (arXiv:1803.02999v3), Table 2, Reptile + Transduction"
LI = "Li et al. 2017 (arXiv:1707.09835), Table 1"
RAGHU = "Raghu et al. 2020 (arXiv:1909.09157), Table 2"

# Finn et al. 2017, Omniglot: Conv4 with 64 filters, Adam at 1e-3 for 60,000 meta-iterations,
# one query per class; 5-way: meta-batch 32, α = 0.4, 1 inner step (3 at test); 20-way:
# meta-batch 16, α = 0.1, 5 steps. Meta-SGD (Li et al.) and ANIL (Raghu et al.) are given the
# same schedule: Meta-SGD uses MAML's network and one inner step, ANIL follows MAML's 20-way
# schedule with the inner loop on the head; their own training lengths are not restated here.
MAML_PAPER_5WAY = MAMLBudget(
    steps=60_000,
    lr=1e-3,
    schedule=Constant(),
    train_queries=1,
    meta_batch=32,
    inner_steps=1,
    inner_lr=0.4,
    eval_inner_steps=3,
)
MAML_PAPER_20WAY = MAMLBudget(
    steps=60_000,
    lr=1e-3,
    schedule=Constant(),
    train_queries=1,
    meta_batch=16,
    inner_steps=5,
    inner_lr=0.1,
    eval_inner_steps=5,
)
MAML_BOOK = MAMLBudget(  # book/03_gradient/maml_omniglot.ipynb
    steps=1300,
    lr=3e-3,
    schedule=WarmupCosine(),
    train_shot=1,
    train_queries=5,
    meta_batch=4,
    inner_steps=1,
    inner_lr=0.4,
    eval_inner_steps=3,
)
# book/03_gradient/first_order_omniglot.ipynb: five inner steps of 0.1 (the first-order
# direction is poor at MAML's one step of 0.4), 5 at test time
FOMAML_BOOK = MAMLBudget(
    steps=300,
    lr=3e-3,
    schedule=WarmupCosine(),
    train_shot=1,
    train_queries=5,
    meta_batch=4,
    inner_steps=5,
    inner_lr=0.1,
    eval_inner_steps=5,
)
METASGD_BOOK = MAMLBudget(  # book/03_gradient/metasgd_anil_omniglot.ipynb
    steps=300,
    lr=3e-3,
    schedule=WarmupCosine(),
    train_shot=1,
    train_queries=5,
    meta_batch=4,
    inner_steps=1,
    inner_lr=0.4,  # where every learned α starts
    eval_inner_steps=1,
    alpha_lr=0.01,
)
# Nichol et al. 2018, "Reptile + Transduction" (the course's protocol is transductive). Paper
# budgets: the commands of the authors' repository (openai/supervised-reptile, README, "the
# commands used for the paper"): inner Adam, ε annealed linearly from 1 to 0, 5 tasks per
# meta-iteration, 10 images per class.
REPTILE_PAPER_5WAY = ReptileBudget(
    steps=100_000,
    lr=1.0,
    schedule=LinearDecay(),
    train_shot=10,
    meta_batch=5,
    inner_optimizer="adam",
    inner_steps=5,
    inner_lr=1e-3,
    inner_batch=10,
    eval_inner_steps=50,
    eval_inner_batch=5,
)
REPTILE_PAPER_20WAY = ReptileBudget(
    steps=200_000,
    lr=1.0,
    schedule=LinearDecay(),
    train_shot=10,
    meta_batch=5,
    inner_optimizer="adam",
    inner_steps=10,
    inner_lr=5e-4,
    inner_batch=20,
    eval_inner_steps=50,
    eval_inner_batch=10,
)
# book/03_gradient/reptile_omniglot.ipynb: the authors' 5-way settings but for 100
# meta-iterations, a larger inner rate and 5 test-time steps (chosen there on the validation
# classes, for both settings)
REPTILE_BOOK = ReptileBudget(
    steps=100,
    lr=1.0,
    schedule=LinearDecay(),
    train_shot=10,
    meta_batch=5,
    inner_optimizer="adam",
    inner_steps=5,
    inner_lr=3e-3,
    inner_batch=10,
    eval_inner_steps=5,
    eval_inner_batch=5,
)

MAML_NOTEBOOK = "book/03_gradient/maml_omniglot.ipynb"
FIRST_ORDER_NOTEBOOK = "book/03_gradient/first_order_omniglot.ipynb"
REPTILE_NOTEBOOK = "book/03_gradient/reptile_omniglot.ipynb"
METASGD_NOTEBOOK = "book/03_gradient/metasgd_anil_omniglot.ipynb"

GRADIENT_RECIPES = [
    Recipe(method="maml", task=FewShot(way=5, shot=1), source=FINN, published=98.7,
           paper=MAML_PAPER_5WAY, book=MAML_BOOK, notebook=MAML_NOTEBOOK),
    Recipe(method="maml", task=FewShot(way=5, shot=5), source=FINN, published=99.9,
           paper=MAML_PAPER_5WAY, book=MAML_BOOK, notebook=MAML_NOTEBOOK),
    Recipe(method="maml", task=FewShot(way=20, shot=1), source=FINN, published=95.8,
           paper=MAML_PAPER_20WAY),
    Recipe(method="maml", task=FewShot(way=20, shot=5), source=FINN, published=98.9,
           paper=MAML_PAPER_20WAY),
    Recipe(method="fomaml", task=FewShot(way=5, shot=1), source=NICHOL_FIRST_ORDER, published=98.3,
           paper=MAML_PAPER_5WAY, book=FOMAML_BOOK, notebook=FIRST_ORDER_NOTEBOOK),
    Recipe(method="fomaml", task=FewShot(way=5, shot=5), source=NICHOL_FIRST_ORDER, published=99.2,
           paper=MAML_PAPER_5WAY, book=FOMAML_BOOK, notebook=FIRST_ORDER_NOTEBOOK),
    Recipe(method="fomaml", task=FewShot(way=20, shot=1), source=NICHOL_FIRST_ORDER, published=89.4,
           paper=MAML_PAPER_20WAY),
    Recipe(method="fomaml", task=FewShot(way=20, shot=5), source=NICHOL_FIRST_ORDER, published=97.9,
           paper=MAML_PAPER_20WAY),
    Recipe(method="reptile", task=FewShot(way=5, shot=1), source=NICHOL, published=97.68,
           paper=REPTILE_PAPER_5WAY, book=REPTILE_BOOK, notebook=REPTILE_NOTEBOOK),
    Recipe(method="reptile", task=FewShot(way=5, shot=5), source=NICHOL, published=99.48,
           paper=REPTILE_PAPER_5WAY, book=REPTILE_BOOK, notebook=REPTILE_NOTEBOOK),
    Recipe(method="reptile", task=FewShot(way=20, shot=1), source=NICHOL, published=89.43,
           paper=REPTILE_PAPER_20WAY),
    Recipe(method="reptile", task=FewShot(way=20, shot=5), source=NICHOL, published=97.12,
           paper=REPTILE_PAPER_20WAY),
    Recipe(method="metasgd", task=FewShot(way=5, shot=1), source=LI, published=99.53,
           paper=MAML_PAPER_5WAY, book=METASGD_BOOK, notebook=METASGD_NOTEBOOK),
    Recipe(method="metasgd", task=FewShot(way=5, shot=5), source=LI, published=99.93,
           paper=MAML_PAPER_5WAY, book=METASGD_BOOK, notebook=METASGD_NOTEBOOK),
    Recipe(method="metasgd", task=FewShot(way=20, shot=1), source=LI, published=95.93,
           paper=MAML_PAPER_20WAY),
    Recipe(method="metasgd", task=FewShot(way=20, shot=5), source=LI, published=98.97,
           paper=MAML_PAPER_20WAY),
    # Raghu et al. report ANIL on 20-way Omniglot only; the book trains a 5-way ANIL
    # (metasgd_anil_omniglot), which therefore has no recipe.
    Recipe(method="anil", task=FewShot(way=20, shot=1), source=RAGHU, published=96.2,
           paper=MAML_PAPER_20WAY),
    Recipe(method="anil", task=FewShot(way=20, shot=5), source=RAGHU, published=98.0,
           paper=MAML_PAPER_20WAY),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Memory: Santoro et al. 2016 (arXiv:1605.06065), Table 1, MANN (LRUA), 5 classes: accuracy at
# the 2nd presentation of a class (82.8%; the 5th: 94.9%). The paper's own split and
# augmentation are not reproduced: the course uses the Vinyals split, as everywhere. Paper
# budget: the architecture of the widely used reproduction (128 slots × 40, 4 heads, a 200-unit
# controller, the key written); its length, 10,000 steps of 16 episodes, is the course's
# choice, not a number from the paper. Book budget (book/04_memory/mann_omniglot): a smaller
# memory, the course's "bind" write and sharpened reads (named deviations, see
# metalearn_course.memory.mann), and a larger learning rate.

MANN_RECIPE = Recipe(
    method="mann",
    task=Sequences(way=5),
    source="Santoro et al. 2016 (arXiv:1605.06065), Table 1, MANN (LRUA), 2nd presentation",
    published=82.8,
    paper=SequenceBudget(
        steps=10_000,
        lr=3e-3,
        batch=16,
        hidden=200,
        slots=128,
        width=40,
        heads=4,
        write="key",
        key_strength=False,
    ),
    book=SequenceBudget(
        steps=1200,
        lr=0.01,
        batch=16,
        hidden=200,
        slots=32,
        width=40,
        heads=1,
        write="bind",
        key_strength=True,
    ),
    quick=SequenceBudget(
        steps=3,
        lr=0.01,
        batch=16,
        hidden=200,
        slots=32,
        width=40,
        heads=1,
        write="bind",
        key_strength=True,
        test_batches=1,
    ),
    notebook="book/04_memory/mann_omniglot.ipynb",
)


# ---------------------------------------------------------------------------------------------
# Meta-RL: Duan et al. 2016 (arXiv:1611.02779), Table 1, RL²: total reward per trial, mean
# over 1,000 tasks. Book budgets: the meta-RL chapter's notebooks (rl2_bandits for k = 5,
# n = 100, with 128 trials per update; bandit_table for the others, with 64), PPO minibatches
# of 32 trials. Paper budgets: the paper's 256 GRU units, 250,000 pulls per batch, γ = 0.99,
# GAE λ = 0.3 and sampled rewards, trained with the course's PPO instead of TRPO for 1,000
# updates (the course's choice; the paper's number of iterations is not restated here). There
# are no book budgets for n = 500 (the notebook's "full" budget adds them). Quick budgets: 3
# updates of 16 trials, scored on 100 tasks.

DUAN = "Duan et al. 2016 (arXiv:1611.02779), Table 1, RL² (total reward per trial)"
RL2_BANDITS_NOTEBOOK = "book/05_rl/rl2_bandits.ipynb"
BANDIT_TABLE_NOTEBOOK = "book/05_rl/bandit_table.ipynb"


def _rl2_paper(arms: int, horizon: int) -> BanditBudget:
    return BanditBudget(
        config=RL2Config(
            arms=arms,
            horizon=horizon,
            hidden=256,
            tasks_per_update=250_000 // horizon,  # 250,000 pulls per batch
            updates=1000,
            gamma=0.99,
            gae_lambda=0.3,
            expected_rewards=False,
        )
    )


def _rl2_book(arms: int, horizon: int, trials: int) -> BanditBudget:
    return BanditBudget(
        config=RL2Config(
            arms=arms,
            horizon=horizon,
            hidden=64,
            updates=280,
            tasks_per_update=trials,
            minibatches=trials // 32,
        )
    )


def _rl2_quick(arms: int, horizon: int) -> BanditBudget:
    config = RL2Config(arms=arms, horizon=horizon, tasks_per_update=16, updates=3)
    return BanditBudget(config=config, eval_tasks=100)


RL2_RECIPES = [
    Recipe(method="rl2", task=Bandits(arms=5, horizon=10), source=DUAN, published=6.7,
           paper=_rl2_paper(arms=5, horizon=10),
           book=_rl2_book(arms=5, horizon=10, trials=64), notebook=BANDIT_TABLE_NOTEBOOK,
           quick=_rl2_quick(arms=5, horizon=10)),
    Recipe(method="rl2", task=Bandits(arms=10, horizon=10), source=DUAN, published=6.7,
           paper=_rl2_paper(arms=10, horizon=10),
           book=_rl2_book(arms=10, horizon=10, trials=64), notebook=BANDIT_TABLE_NOTEBOOK,
           quick=_rl2_quick(arms=10, horizon=10)),
    Recipe(method="rl2", task=Bandits(arms=5, horizon=100), source=DUAN, published=78.7,
           paper=_rl2_paper(arms=5, horizon=100),
           book=_rl2_book(arms=5, horizon=100, trials=128), notebook=RL2_BANDITS_NOTEBOOK,
           quick=_rl2_quick(arms=5, horizon=100)),
    Recipe(method="rl2", task=Bandits(arms=10, horizon=100), source=DUAN, published=83.5,
           paper=_rl2_paper(arms=10, horizon=100),
           book=_rl2_book(arms=10, horizon=100, trials=64), notebook=BANDIT_TABLE_NOTEBOOK,
           quick=_rl2_quick(arms=10, horizon=100)),
    Recipe(method="rl2", task=Bandits(arms=5, horizon=500), source=DUAN, published=401.6,
           paper=_rl2_paper(arms=5, horizon=500),
           quick=_rl2_quick(arms=5, horizon=500)),
    Recipe(method="rl2", task=Bandits(arms=10, horizon=500), source=DUAN, published=432.5,
           paper=_rl2_paper(arms=10, horizon=500),
           quick=_rl2_quick(arms=10, horizon=500)),
]  # fmt: skip


# ---------------------------------------------------------------------------------------------
# In-context learning: Garg et al. 2022 (arXiv:2208.01066), linear functions. The paper shows
# its result in figures (the trained transformer's error against the number of in-context
# examples, about that of least squares), so there is no number to quote: the run's
# score is the squared error / d after n - 1 examples, with least squares' and ridge's curves in
# results.json beside it. Paper budget: their released configuration (conf/base.yaml,
# conf/linear_regression.yaml): d = 20, prompts of 41 points, no noise, GPT-2 of 12 layers,
# width 256, 8 heads, 500,000 steps of 64 prompts, Adam at 1e-4. Departure: no curriculum (they
# grow d from 5 and the prompt from 11 points, a step every 2,000 steps, over the first 30,000).
# Book budget: book/08_incontext/icl_regression (d = 5, 10 points, noise 0.5).

GARG = "Garg et al. 2022 (arXiv:2208.01066), linear functions (shown in figures, no number)"
ICL_REGRESSION_RECIPES = [
    Recipe(
        method="icl-regression",
        task=LinearRegression(dim=5, points=10, noise=0.5),
        source=GARG,
        published=None,
        book=InContextBudget(
            steps=4000, lr=3e-3, schedule=WarmupCosine(), batch=64, d_model=32, layers=3, heads=4
        ),
        notebook="book/08_incontext/icl_regression.ipynb",
    ),
    Recipe(
        method="icl-regression",
        task=LinearRegression(dim=20, points=41, noise=0.0),
        source=GARG,
        published=None,
        paper=InContextBudget(
            steps=500_000, lr=1e-4, schedule=Constant(), batch=64, d_model=256, layers=12, heads=8
        ),
    ),
]

RECIPES: dict[tuple[str, str], Recipe] = {
    (recipe.method, recipe.setting): recipe
    for recipe in [
        *METRIC_RECIPES,
        *GRADIENT_RECIPES,
        MANN_RECIPE,
        *RL2_RECIPES,
        *ICL_REGRESSION_RECIPES,
    ]
}
DEFAULT_SETTINGS = {
    "mann": "omniglot-5w-sequences",
    "rl2": "bandits-k5n100",
    "icl-regression": "linear-d5n10-noise0.5",
}


def recipe_for(method: str, setting: str | None = None) -> Recipe:
    """The recipe (setting None: the method's first one, e.g. omniglot-5w1s), or a ValueError
    listing what exists."""
    methods = sorted({m for m, _ in RECIPES})
    if method not in methods:
        raise ValueError(f"method {method!r} is not reproducible yet; use one of {methods}")
    if setting is None:
        setting = DEFAULT_SETTINGS.get(method, "omniglot-5w1s")
    if (method, setting) not in RECIPES:
        settings = sorted(s for m, s in RECIPES if m == method)
        raise ValueError(f"{method} has no setting {setting!r}; choose from {settings}")
    return RECIPES[method, setting]
