"""In-context linear regression: a transformer that learns least squares from its prompt.

Garg, Tsipras, Liang & Valiant 2022, "What Can Transformers Learn In-Context? A Case Study of
Simple Function Classes", arXiv:2208.01066. A task is a linear function of d inputs; a prompt is
n of its input-output pairs followed, position by position, by the next input:

    w ~ N(0, I_d),   x_i ~ N(0, I_d),   y_i = w·x_i   (+ σ ε_i, ε_i ~ N(0, 1), if noisy)
    prompt = (x_1, y_1, x_2, y_2, ..., x_n, y_n)

The model M_θ reads the prompt with a causal mask and predicts y_i at the token of x_i, from
x_1, y_1, ..., x_{i-1}, y_{i-1}, x_i alone; training minimises the squared error at every
position at once (all prompt lengths 0..n-1 in one pass), over fresh tasks every step:

    min_θ  E_{w, x, y} [ (1/n) Σ_i ( M_θ(x_1, y_1, ..., x_i) - y_i )² ]

No weight can store w (it is new in every prompt): a model that does well has learned, in its
weights, an *algorithm* that fits the examples in its context. Which one? Garg et al. compare it
with the algorithms of baselines.py: `least_squares` (the best possible once i >= d, noiseless),
`averaging` and `nearest_neighbours`; the transformer tracks least squares. Akyürek,
Schuurmans, Andreas, Ma & Zhou 2022, "What learning algorithm is in-context learning?
Investigations with linear models", arXiv:2211.15661, find it close to `ridge` (the
Bayes-optimal predictor for noisy tasks); von Oswald, Niklasson, Randazzo, Sacramento,
Mordvintsev, Zhmoginov & Vladymyrov 2023, "Transformers learn in-context by gradient descent",
arXiv:2212.07677, show one linear attention layer can implement one step of gradient descent on
the prompt (`gradient_step`).

Tokens, one layout for the whole chapter: an x-token is [x, 0] and a y-token [0_d, y], both of
width d+1, interleaved x_1, y_1, ..., x_n, y_n -> [B, 2n, d+1] (`tokens`). Garg et al. write the
y-token as (y, 0, ..., 0) in the x's own d coordinates; giving y a coordinate of its own makes
the two kinds of token orthogonal, so the read-in can tell them apart without a flag.

Task diversity. Raventós, Paul, Chen & Ganguli 2023, "Pretraining task diversity and the
emergence of non-Bayesian in-context learning for regression", arXiv:2306.15063: draw w from a
fixed pool of M vectors (`LinearTasks(pool=M)`). With few tasks the model memorises the pool and
predicts like the Bayes posterior over it; past a threshold of M it learns ridge regression,
which also works for w's it never saw.

Training with the shared loop. A `Prompts` batch has the attributes train.fit reads (`to`,
`query_y` = the targets ys, `way`), and `InContextRegressor.loss` is the squared error, so
``fit(InContextRegressor(d, n), LinearTasks(d, n, batch), steps)`` trains it. `way` is None
(there are no classes): fit's training accuracy is then logged as nan, by its own rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from metalearn_course.incontext.transformer import Transformer, causal_mask


@dataclass(eq=False)  # eq=False: `==` on tensors is elementwise, so a generated __eq__ would lie
class Prompts:
    """B prompts of n (x, y) pairs of one linear task each."""

    xs: torch.Tensor  # [B, n, d] inputs
    ys: torch.Tensor  # [B, n] outputs, y_i = w·x_i (+ noise)
    w: torch.Tensor  # [B, d] each prompt's task

    @property
    def query_y(self) -> torch.Tensor:
        """The targets, under the name train.fit reads: every position is predicted."""
        return self.ys

    @property
    def way(self) -> None:
        """No classes: fit sees that the output is not [..., way] scores and logs acc = nan."""
        return None

    def to(self, device: str | torch.device, non_blocking: bool = False) -> Prompts:
        """A copy of the batch with every tensor on `device`."""
        xs, ys, w = (t.to(device, non_blocking=non_blocking) for t in (self.xs, self.ys, self.w))
        return Prompts(xs, ys, w)


def check_prompt(xs: torch.Tensor, ys: torch.Tensor) -> None:
    """Raise ValueError unless xs is [B, n, d] and ys [B, n] with the same B and n."""
    if xs.ndim != 3:
        raise ValueError(
            f"xs has shape {tuple(xs.shape)}; expected [batch, points, dim]"
            " (for one prompt, add a leading batch dimension: xs[None])"
        )
    if tuple(ys.shape) != tuple(xs.shape[:2]):
        raise ValueError(
            f"ys has shape {tuple(ys.shape)} but xs {tuple(xs.shape)}; expected ys"
            f" [batch, points] = {list(xs.shape[:2])}, one output per input"
        )


class LinearTasks:
    """An endless, seeded stream of Prompts: `batch` prompts of `points` pairs in `dim` inputs.

    noise: σ, the standard deviation of the output noise (0: noiseless, Garg et al.).
    pool: None draws a fresh w ~ N(0, I) per prompt; an int M draws it uniformly from M vectors
        made once from the seed (Raventós et al.'s task diversity); a tensor [M, dim] draws it
        from those vectors (another stream's `task_pool`: new prompts of the same tasks).
    x_scale: inputs x ~ N(0, x_scale² I) (Garg et al.'s scaled-input test: > 1 is out of
        distribution for a model trained with 1).
    seed: the same arguments and seed give the same prompts (a torch.Generator of its own).
    """

    def __init__(
        self,
        dim: int,
        points: int,
        batch: int,
        *,
        noise: float = 0.0,
        pool: int | torch.Tensor | None = None,
        x_scale: float = 1.0,
        seed: int = 0,
    ) -> None:
        for name, value in (("dim", dim), ("points", points), ("batch", batch)):
            if value < 1:
                raise ValueError(f"{name}={value}; use {name} >= 1")
        if noise < 0:
            raise ValueError(f"noise={noise}; the noise's standard deviation must be >= 0")
        if isinstance(pool, torch.Tensor):
            if pool.ndim != 2 or pool.shape[-1] != dim or len(pool) < 1:
                raise ValueError(
                    f"pool has shape {tuple(pool.shape)}; a pool of tasks is [M >= 1, dim={dim}]"
                )
        elif pool is not None and pool < 1:
            raise ValueError(f"pool={pool}; use pool >= 1 tasks, or None for fresh tasks")
        if x_scale <= 0:
            raise ValueError(f"x_scale={x_scale}; use x_scale > 0")
        self.dim, self.points, self.batch = dim, points, batch
        self.noise, self.x_scale, self.seed = noise, x_scale, seed
        self._generator = torch.Generator().manual_seed(seed)
        # The pool comes first from the seed, so a pool depends on the seed only.
        self.task_pool = pool.clone() if isinstance(pool, torch.Tensor) else None
        if isinstance(pool, int):
            self.task_pool = self._normal(pool, dim)

    def _normal(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self._generator)

    def sample(self) -> Prompts:
        """The next batch of prompts."""
        if self.task_pool is None:
            w = self._normal(self.batch, self.dim)
        else:
            pick = torch.randint(len(self.task_pool), (self.batch,), generator=self._generator)
            w = self.task_pool[pick]
        xs = self.x_scale * self._normal(self.batch, self.points, self.dim)
        ys = torch.einsum("bnd,bd->bn", xs, w) + self.noise * self._normal(self.batch, self.points)
        return Prompts(xs, ys, w)

    def __iter__(self) -> Iterator[Prompts]:
        while True:
            yield self.sample()

    def state_dict(self) -> dict[str, Any]:
        """Where the stream is (train.fit's resumable `state` file): the generator's state."""
        return {"seed": self.seed, "generator": self._generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state_dict()` was taken (same arguments and seed)."""
        if state.get("seed") != self.seed:
            raise ValueError(
                f"the state is of a stream with seed={state.get('seed')}, this one has"
                f" seed={self.seed}; build LinearTasks with the run's seed"
            )
        self._generator.set_state(state["generator"])


def tokens(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """The prompt as tokens: x-token [x, 0], y-token [0_d, y], interleaved -> [B, 2n, d+1]."""
    check_prompt(xs, ys)
    x_tokens = F.pad(xs, (0, 1))  # [x, 0]
    y_tokens = F.pad(ys[..., None], (xs.shape[-1], 0))  # [0_d, y]
    # stack to [B, n, 2, d+1], then read the pairs in order: x_1, y_1, x_2, y_2, ...
    return torch.stack([x_tokens, y_tokens], dim=2).flatten(1, 2)


class InContextRegressor(nn.Module):
    """Garg et al.'s model: read-in, learned positions, a causal Transformer, read-out.

    dim, points: d and the longest prompt n it reads (2n learned positions).
    Input: Prompts; output: predictions [B, n], prediction i read at the token of x_i.
    """

    def __init__(
        self, dim: int, points: int, d_model: int = 64, layers: int = 4, heads: int = 4
    ) -> None:
        super().__init__()
        if dim < 1 or points < 1:
            raise ValueError(f"dim={dim}, points={points}; use dim >= 1 and points >= 1")
        self.dim, self.points = dim, points
        self.read_in = nn.Linear(dim + 1, d_model)
        # Positions matter here (unlike for a set): which y belongs to which x is told by order.
        self.position = nn.Embedding(2 * points, d_model)
        # GPT-2's initialisation (std 0.02), not nn.Embedding's N(0, 1): position vectors of
        # norm ~ √d_model drown out what a token says. Measured (d = 5, 10 points, 2 layers of
        # width 32, 4,000 steps): with N(0, 1) the error after 9 examples was still 0.67 (0 would
        # be perfect, 1 is predicting 0); with std 0.02 it was 0.15.
        nn.init.normal_(self.position.weight, std=0.02)
        self.transformer = Transformer(d_model, layers, heads)
        self.read_out = nn.Linear(d_model, 1)

    def forward(self, prompts: Prompts) -> torch.Tensor:
        xs, ys = prompts.xs, prompts.ys
        check_prompt(xs, ys)
        if xs.shape[-1] != self.dim:
            raise ValueError(f"xs has dim={xs.shape[-1]} inputs but the model dim={self.dim}")
        if xs.shape[1] > self.points:
            raise ValueError(
                f"the prompts have {xs.shape[1]} points but the model learned positions for"
                f" points={self.points}; use at most {self.points} points or a larger model"
            )
        length = 2 * xs.shape[1]
        h = self.read_in(tokens(xs, ys)) + self.position.weight[:length]
        h = self.transformer(h, causal_mask(length, device=h.device))
        return self.read_out(h[:, 0::2]).squeeze(-1)  # the x-token positions 0, 2, 4, ...

    def loss(self, predictions: torch.Tensor, prompts: Prompts) -> torch.Tensor:
        """Mean squared error over every position of every prompt."""
        return F.mse_loss(predictions, prompts.ys)
