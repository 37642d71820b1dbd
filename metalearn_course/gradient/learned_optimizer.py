"""A learned optimizer: an LSTM that maps each coordinate's gradient to its update.

Andrychowicz, Denil, Gomez, Hoffman, Pfau, Schaul, Shillingford & de Freitas 2016, "Learning to
learn by gradient descent by gradient descent", arXiv:1606.04474.

A hand-designed optimizer is a fixed rule from gradients to updates (SGD: g_t = -η ∇_t). The
paper makes the rule a recurrent network m with parameters φ, and learns φ:

    θ_{t+1} = θ_t + g_t,      [g_t, h_{t+1}] = m(∇_t, h_t, φ),      ∇_t = ∇_θ f(θ_t).

m is *coordinate-wise*: one two-layer LSTM (20 units per layer) reads every coordinate of θ on
its own, each with its own hidden state but all with the same weights φ. The optimizer thus has
a few thousand weights whatever the size of θ, and permuting θ's coordinates permutes the updates.

Meta-training minimises the loss along the optimization trajectory, by Adam on φ:

    L(φ) = E_f [ Σ_{t=1}^{T} w_t f(θ_t) ],      w_t = 1.

The horizon of 100 steps is cut into unrolls of T = 20 (truncated backpropagation through time):
θ and h carry over from one unroll to the next but are detached in between. The gradients ∇_t
fed to m are DETACHED: the paper assumes ∂∇_t/∂φ = 0, so no second derivatives of f are needed,
and φ is still reached through θ_{t+1} = θ_t + g_t inside every f(θ_t). Departures, to train in
about a minute on a laptop CPU: 32 functions per run (the paper's code: 128), Adam's step size
decays along a cosine, and the φ with the best validation meta-loss is kept (as in that code).

Gradient preprocessing (Appendix A): gradients span many orders of magnitude, so each one enters
the LSTM as the pair

    ∇ ↦ (log|∇| / p, sgn ∇)   if |∇| ≥ e^{-p},      ∇ ↦ (-1, e^p ∇)   otherwise,      p = 10,

and the LSTM's output is multiplied by 0.1 (the output scale) so early updates are small.

Tasks are the paper's random quadratics f(θ) = ||Wθ - y||², W ∈ R^{10×10} and y ∈ R^{10} with
i.i.d. standard Gaussian entries, started at θ_0 ~ N(0, 0.01² I) as in the authors' code. The
hand-designed baselines (SGD, NAG, Adam, RMSprop) get a learning rate tuned on a grid on
training functions, as in the paper, and every optimizer is scored on the same held-out ones.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise

import torch
from torch import nn
from tqdm import tqdm

State = list[tuple[torch.Tensor, torch.Tensor]]  # (h, c) per LSTM layer, [coordinates, hidden]
UpdateRule = Callable[[torch.Tensor], torch.Tensor]  # ∇_t -> g_t; keeps its own state
OptimizerFn = Callable[[torch.Tensor], UpdateRule]  # θ_0 -> a fresh rule for one run

HAND_DESIGNED = {
    "SGD": torch.optim.SGD,
    "NAG": partial(torch.optim.SGD, momentum=0.9, nesterov=True),
    "Adam": torch.optim.Adam,
    "RMSprop": torch.optim.RMSprop,
}
LR_GRID = tuple(10 ** (k / 4) for k in range(-16, 5))  # 1e-4 ... 10, four per decade


def preprocess_gradients(grad: torch.Tensor, p: float = 10.0) -> torch.Tensor:
    """The paper's two-number encoding of each gradient entry: [..., 2] (Appendix A)."""
    if p <= 0:
        raise ValueError(f"p={p}; use p > 0 (the paper uses 10)")
    big = grad.abs() >= math.exp(-p)
    # The clamp keeps log away from 0 (-inf) in the branch torch.where discards.
    log = torch.log(grad.abs().clamp(min=math.exp(-p))) / p
    magnitude = torch.where(big, log, torch.full_like(grad, -1.0))
    sign = torch.where(big, torch.sign(grad), math.exp(p) * grad)
    return torch.stack([magnitude, sign], dim=-1)


class LSTMOptimizer(nn.Module):
    """The coordinate-wise LSTM m(∇_t, h_t, φ): gradients of any shape -> updates of that shape.

    Every coordinate is one row of the LSTM's batch, so weights are shared across coordinates.
    """

    def __init__(
        self,
        hidden: int = 20,
        layers: int = 2,
        preprocess: bool = True,
        p: float = 10.0,
        output_scale: float = 0.1,
    ) -> None:
        super().__init__()
        if hidden < 1 or layers < 1:
            raise ValueError(f"hidden={hidden}, layers={layers}; use both >= 1")
        if p <= 0:
            raise ValueError(f"p={p}; use p > 0 (the paper uses 10)")
        sizes = [2 if preprocess else 1] + [hidden] * layers
        self.cells = nn.ModuleList(nn.LSTMCell(a, b) for a, b in pairwise(sizes))
        self.head = nn.Linear(hidden, 1)
        self.preprocess, self.p, self.output_scale = preprocess, p, output_scale

    def initial_state(self, coordinates: int) -> State:
        """Zero (h, c) for every layer and coordinate: each coordinate starts with no memory."""
        weight = self.head.weight
        zeros = weight.new_zeros(coordinates, weight.shape[1])
        return [(zeros, zeros) for _ in self.cells]

    def forward(self, grad: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """One optimizer step: returns the update g_t (same shape as grad) and h_{t+1}."""
        if len(state) != len(self.cells) or state[0][0].shape[0] != grad.numel():
            raise ValueError(
                f"state does not fit a gradient of {grad.numel()} coordinates;"
                " make it with initial_state(grad.numel())"
            )
        flat = grad.reshape(-1, 1)  # coordinates become the LSTM's batch
        x = preprocess_gradients(flat[:, 0], self.p) if self.preprocess else flat
        new_state = []
        for cell, (h, c) in zip(self.cells, state, strict=True):
            h, c = cell(x, (h, c))
            new_state.append((h, c))
            x = h
        update = self.output_scale * self.head(x)
        return update.reshape(grad.shape), new_state

    def rule(self, theta: torch.Tensor) -> UpdateRule:
        """An OptimizerFn for `optimize`: a fresh hidden state for a run starting at theta."""
        state = self.initial_state(theta.numel())

        def update(grad: torch.Tensor) -> torch.Tensor:
            nonlocal state
            step, state = self(grad, state)
            return step

        return update


@dataclass(eq=False)
class Quadratics:
    """n random quadratics f_i(θ) = ||W_i θ - y_i||² and their starting points θ_0."""

    W: torch.Tensor  # [n, dim, dim]
    y: torch.Tensor  # [n, dim]
    theta0: torch.Tensor  # [n, dim]

    @classmethod
    def sample(
        cls,
        n: int,
        *,
        seed: int | torch.Generator,
        dim: int = 10,
        device: str | torch.device | None = None,
    ) -> Quadratics:
        """Draw n functions from a seed or a torch.Generator. They are drawn on the CPU, so a
        seed gives the same functions on every device. meta_train(config) draws its validation
        functions first from seed=config.seed, so Quadratics.sample(128, seed=config.seed) are
        those: training functions, fit for tuning baselines; test with another seed."""
        if n < 1 or dim < 1:
            raise ValueError(f"n={n}, dim={dim}; use both >= 1")
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        W = torch.randn(n, dim, dim, generator=gen)
        y = torch.randn(n, dim, generator=gen)
        theta0 = 0.01 * torch.randn(n, dim, generator=gen)
        return cls(W.to(device), y.to(device), theta0.to(device))

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """f_i(θ_i) for each function: θ [n, dim] -> [n]."""
        residual = (self.W @ theta[..., None])[..., 0] - self.y
        return (residual**2).sum(dim=-1)


def quadratic_gradient(functions: Quadratics, theta: torch.Tensor) -> torch.Tensor:
    """∇_t = ∇_θ f(θ_t), DETACHED from whatever produced θ_t: the paper's ∂∇_t/∂φ = 0.

    Taking the gradient at a detached copy means no create_graph and no second derivatives: the
    meta-gradient treats ∇_t as data, exactly like the paper's truncated graph (Fig. 2, dashed).
    """
    with torch.enable_grad():
        leaf = theta.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(functions.loss(leaf).sum(), leaf)
    return grad


def optimize(optimizer_fn: OptimizerFn, functions: Quadratics, steps: int) -> torch.Tensor:
    """Run θ_{t+1} = θ_t + rule(∇_t) on every function: losses [steps + 1, n], row 0 at θ_0."""
    if steps < 1:
        raise ValueError(f"steps={steps}; use steps >= 1")
    with torch.no_grad():
        theta = functions.theta0.clone()
        rule = optimizer_fn(theta)
        losses = [functions.loss(theta)]
        for _ in range(steps):
            theta = theta + rule(quadratic_gradient(functions, theta))
            losses.append(functions.loss(theta))
    return torch.stack(losses)


def hand_designed(name: str, lr: float) -> OptimizerFn:
    """torch.optim's SGD, NAG, Adam or RMSprop as an OptimizerFn (default settings but lr)."""
    if name not in HAND_DESIGNED:
        raise ValueError(f"name={name!r}; use one of {sorted(HAND_DESIGNED)}")
    if not lr > 0:
        raise ValueError(f"lr={lr}; use lr > 0")

    def make(theta0: torch.Tensor) -> UpdateRule:
        # torch.optim steps a leaf tensor in place; the update is how far it moved.
        x = theta0.detach().clone()
        optimizer = HAND_DESIGNED[name]([x], lr=lr)

        def update(grad: torch.Tensor) -> torch.Tensor:
            before = x.clone()
            x.grad = grad
            optimizer.step()
            return x - before

        return update

    return make


def tune_baselines(
    functions: Quadratics,
    steps: int = 100,
    grid: Sequence[float] = LR_GRID,
    names: Sequence[str] = tuple(HAND_DESIGNED),
) -> dict[str, float]:
    """Each optimizer's learning rate from `grid` with the lowest mean loss at `steps` on
    `functions` (pass TRAINING functions: tuning on the test set would flatter the baselines)."""
    if not grid:
        raise ValueError("grid is empty; give at least one learning rate")
    best = {}
    for name in names:
        final = [optimize(hand_designed(name, lr), functions, steps)[-1].mean() for lr in grid]
        # A diverged run (inf or nan) must never win, so nan counts as +inf.
        scores = torch.stack(final).nan_to_num(nan=math.inf)
        best[name] = float(grid[int(scores.argmin())])
    return best


def unroll(
    optimizer: LSTMOptimizer, functions: Quadratics, theta: torch.Tensor, state: State, steps: int
) -> tuple[torch.Tensor, torch.Tensor, State]:
    """One truncation of `steps` optimizer steps from (θ, h): the meta-loss Σ_t mean_i f_i(θ_t)
    (w_t = 1), and the final θ and state, all still in φ's graph."""
    meta_loss = theta.new_zeros(())
    for _ in range(steps):
        gradient = quadratic_gradient(functions, theta)
        update, state = optimizer(gradient, state)  # ∇_t is data: detached
        theta = theta + update
        meta_loss = meta_loss + functions.loss(theta).mean()
    return meta_loss, theta, state


@dataclass
class MetaTrainConfig:
    """Meta-training hyper-parameters. The paper: 128 functions per run, horizon 100, unroll 20,
    Adam; fewer functions per run here, so that a laptop CPU does enough runs in a minute."""

    runs: int = 200  # optimization runs; each gives ceil(horizon / unroll) Adam steps on φ
    functions: int = 32  # quadratics optimized in parallel per run (the meta-batch)
    dim: int = 10
    horizon: int = 100
    unroll: int = 20
    meta_lr: float = 2e-2  # Adam's, decayed to 0 along a cosine over the runs
    val_every: int = 20  # runs between validations; 0: no validation, keep the last φ
    val_functions: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("runs", "functions", "dim", "horizon", "unroll", "val_functions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; use {name} >= 1")
        if self.unroll > self.horizon:
            raise ValueError(
                f"unroll={self.unroll} > horizon={self.horizon}; use unroll <= horizon"
            )
        if not self.meta_lr > 0:
            raise ValueError(f"meta_lr={self.meta_lr}; use meta_lr > 0")
        if self.val_every < 0:
            raise ValueError(f"val_every={self.val_every}; use val_every >= 1, or 0 for none")


@dataclass
class LSTMOptimizerHistory:
    """Per run, means over its functions: f averaged over the trajectory (the meta-loss / T),
    and f at the end. Validation: the same trajectory mean on fixed validation functions."""

    run: list[int] = field(default_factory=list)
    meta_loss: list[float] = field(default_factory=list)
    final_loss: list[float] = field(default_factory=list)
    val_run: list[int] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_run: int | None = None


def meta_train(
    optimizer: LSTMOptimizer, config: MetaTrainConfig | None = None, progress: bool = False
) -> LSTMOptimizerHistory:
    """Learn φ by truncated BPTT through the optimization of fresh random quadratics.

    With validation, the φ with the lowest validation meta-loss is restored at the end (the
    authors' code keeps the best evaluated optimizer too): meta-training is noisy, and the last
    run's φ is not always the best.
    """
    config = MetaTrainConfig() if config is None else config
    device = optimizer.head.weight.device
    generator = torch.Generator().manual_seed(config.seed)  # all functions come from this stream
    val_set = Quadratics.sample(config.val_functions, seed=generator, dim=config.dim, device=device)
    meta_optimizer = torch.optim.Adam(optimizer.parameters(), lr=config.meta_lr)
    segments = math.ceil(config.horizon / config.unroll)
    # Decaying the step size lets φ settle instead of ending wherever the last noisy step left it.
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(meta_optimizer, config.runs * segments)
    history, best = LSTMOptimizerHistory(), None
    for run in tqdm(range(1, config.runs + 1), disable=not progress, file=sys.stderr):
        functions = Quadratics.sample(
            config.functions, seed=generator, dim=config.dim, device=device
        )
        theta = functions.theta0
        state = optimizer.initial_state(theta.numel())
        total = 0.0
        for start in range(0, config.horizon, config.unroll):
            steps = min(config.unroll, config.horizon - start)
            meta_loss, theta, state = unroll(optimizer, functions, theta, state, steps)
            if not torch.isfinite(meta_loss):
                raise FloatingPointError(f"meta-loss is {meta_loss.item()} at run {run}")
            meta_optimizer.zero_grad(set_to_none=True)
            meta_loss.backward()
            meta_optimizer.step()
            schedule.step()
            total += meta_loss.item()
            # Truncation: the next unroll starts from here but does not backpropagate into it.
            theta = theta.detach()
            state = [(h.detach(), c.detach()) for h, c in state]
        history.run.append(run)
        history.meta_loss.append(total / config.horizon)
        history.final_loss.append(functions.loss(theta).mean().item())
        if config.val_every and (run % config.val_every == 0 or run == config.runs):
            val_loss = optimize(optimizer.rule, val_set, config.horizon)[1:].mean().item()
            history.val_run.append(run)
            history.val_loss.append(val_loss)
            if best is None or val_loss < min(history.val_loss[:-1]):
                history.best_run = run
                best = {k: v.detach().clone() for k, v in optimizer.state_dict().items()}
    if best is not None:
        optimizer.load_state_dict(best)
    return history
