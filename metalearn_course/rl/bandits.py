"""Bernoulli multi-armed bandits: the task distribution of the meta-RL chapter.

Duan et al. 2016, "RL²: Fast Reinforcement Learning via Slow Reinforcement Learning",
arXiv:1611.02779, Section 3.1; also Wang et al. 2016, "Learning to reinforcement learn",
arXiv:1611.05763.

A task is a bandit with k arms; pulling arm a pays 1 with probability μ_a and 0 otherwise. Each
task draws its means independently, μ_a ~ U[0, 1], and a trial is n pulls of one task. The
score of an agent is its total reward per trial, averaged over many tasks; no agent can beat
the oracle that always pulls the best arm, n · E[max_a μ_a] = n · k / (k + 1).

Randomness is drawn once per task, when the task is made. Task number i comes from its own
numpy generator, `np.random.default_rng(seed_i)`: first the k means, then a k × n table of
uniforms u, and the j-th pull of arm a pays [u_{a,j} < μ_a]. Every entry is used at most once,
so rewards are i.i.d. Bernoulli(μ_a) as if drawn at pull time; the gain is *common random
numbers*: two agents played on the same seeds see the same outcome whenever they pull an arm
for the j-th time, so their difference is measured with far less noise than on fresh tasks.

Two interfaces over the same tasks:

- `BernoulliBandit`, a `gymnasium.Env` (one task at a time, `reset(seed=s)` then `step(a)`),
  for reading and for gymnasium tooling. gymnasium seeds its generator exactly as
  `np.random.default_rng(s)`, so `reset(seed=s)` builds task s.
- `BanditTasks` + `play`: thousands of tasks as torch tensors, stepped at once on the CPU or a
  GPU, for training RL² and for evaluating every agent on identical tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium
import numpy as np
import torch


def check_bandit(arms: int, horizon: int) -> None:
    if arms < 2:
        raise ValueError(f"arms={arms}; use arms >= 2 (one arm leaves nothing to choose)")
    if horizon < 1:
        raise ValueError(f"horizon={horizon}; use horizon >= 1 pull")


def _draw_task(rng: np.random.Generator, arms: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """(means [k], outcomes [k, n]) in the one fixed order both interfaces share."""
    means = rng.random(arms)
    outcomes = rng.random((arms, horizon)) < means[:, None]
    return means, outcomes


@dataclass(frozen=True)
class BanditTasks:
    """A batch of bandit tasks. means [B, k]; outcomes [B, k, n]: the j-th pull of arm a pays
    outcomes[:, a, j] (0. or 1.)."""

    means: torch.Tensor
    outcomes: torch.Tensor

    @classmethod
    def from_seeds(
        cls, seeds: Sequence[int], arms: int, horizon: int, device: str | torch.device = "cpu"
    ) -> BanditTasks:
        """Task i from `np.random.default_rng(seeds[i])`: the task `BernoulliBandit` builds on
        `reset(seed=seeds[i])`. Seeds are non-negative integers."""
        check_bandit(arms, horizon)
        if len(seeds) == 0:
            raise ValueError("seeds is empty; pass at least one task seed, e.g. range(1000)")
        drawn = [_draw_task(np.random.default_rng(int(s)), arms, horizon) for s in seeds]
        means = torch.tensor(np.stack([m for m, _ in drawn]), dtype=torch.float32)
        outcomes = torch.tensor(np.stack([o for _, o in drawn]), dtype=torch.float32)
        return cls(means.to(device), outcomes.to(device))

    @property
    def num_tasks(self) -> int:
        return self.means.shape[0]

    @property
    def arms(self) -> int:
        return self.means.shape[1]

    @property
    def horizon(self) -> int:
        return self.outcomes.shape[2]

    @property
    def device(self) -> torch.device:
        return self.means.device

    def oracle(self) -> torch.Tensor:
        """Expected total reward of always pulling the best arm, per task [B]."""
        return self.horizon * self.means.max(dim=1).values


class BatchedBandits:
    """Many bandit tasks stepped at once: `step(actions [B])` returns rewards [B]."""

    def __init__(self, tasks: BanditTasks):
        self.tasks = tasks
        self.reset()

    def reset(self) -> None:
        self.t = 0
        self.pulls = torch.zeros(
            self.tasks.num_tasks, self.tasks.arms, dtype=torch.long, device=self.tasks.device
        )

    def step(self, actions: torch.Tensor) -> torch.Tensor:
        tasks = self.tasks
        if self.t >= tasks.horizon:
            raise RuntimeError(f"all {tasks.horizon} pulls are used; call reset() to replay")
        if actions.shape != (tasks.num_tasks,):
            raise ValueError(
                f"actions has shape {tuple(actions.shape)}; expected ({tasks.num_tasks},),"
                " one arm per task"
            )
        if actions.min() < 0 or actions.max() >= tasks.arms:
            raise ValueError(f"actions must be arm numbers in [0, {tasks.arms - 1}]")
        rows = torch.arange(tasks.num_tasks, device=tasks.device)
        rewards = tasks.outcomes[rows, actions, self.pulls[rows, actions]]
        self.pulls[rows, actions] += 1
        self.t += 1
        return rewards


class Agent(Protocol):
    """What `play` needs from an agent: act on every task at once, then see the outcome."""

    def reset(self, num_tasks: int, arms: int, horizon: int, device: torch.device) -> None: ...

    def act(self, t: int, generator: torch.Generator) -> torch.Tensor:
        """Arms [B] (long) for pull t = 0, 1, ..., n - 1."""
        ...

    def observe(self, actions: torch.Tensor, rewards: torch.Tensor) -> None: ...


@torch.no_grad()
def play_with_actions(
    agent: Agent, tasks: BanditTasks, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `agent` for a full trial on every task: (arms pulled [B, n], rewards [B, n]). `seed`
    seeds the agent's own randomness (exploration, sampling, tie-breaking), not the tasks."""
    env = BatchedBandits(tasks)
    generator = torch.Generator(device=tasks.device).manual_seed(seed)
    agent.reset(tasks.num_tasks, tasks.arms, tasks.horizon, tasks.device)
    actions, rewards = [], []
    for t in range(tasks.horizon):
        actions.append(agent.act(t, generator))
        rewards.append(env.step(actions[-1]))
        agent.observe(actions[-1], rewards[-1])
    return torch.stack(actions, dim=1), torch.stack(rewards, dim=1)


def play(agent: Agent, tasks: BanditTasks, seed: int = 0) -> torch.Tensor:
    """Run `agent` for a full trial on every task; rewards [B, n] (see `play_with_actions`)."""
    return play_with_actions(agent, tasks, seed)[1]


def pseudo_regret(tasks: BanditTasks, actions: torch.Tensor) -> torch.Tensor:
    """Cumulative pseudo-regret [B, n] of the arms pulled, actions [B, n]:

        R_t = Σ_{s ≤ t} (μ* - μ_{a_s}),       μ* = max_a μ_a,

    the regret without the Bernoulli noise of the rewards (Bubeck & Cesa-Bianchi 2012,
    arXiv:1204.5721, Sec. 1): R_n = n μ* - Σ_t μ_{a_t}, whose mean over tasks is the oracle's
    expected total minus the agent's."""
    if actions.shape != (tasks.num_tasks, tasks.horizon):
        raise ValueError(
            f"actions has shape {tuple(actions.shape)}; expected ({tasks.num_tasks},"
            f" {tasks.horizon}), one arm per task and pull (from play_with_actions)"
        )
    gaps = tasks.means.max(dim=1, keepdim=True).values - tasks.means.gather(1, actions)
    return gaps.cumsum(dim=1)


class BernoulliBandit(gymnasium.Env):
    """One Bernoulli bandit task with the gymnasium API.

    A bandit has no state, so the observation is always 0 (as in Duan et al.); the agent must
    remember its own actions and rewards. Every `reset` draws a new task (new arm means) from
    the env's generator; the trial ends (`terminated`) after `horizon` pulls.
    `info["means"]` reveals the task, for scoring only.
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012 (gymnasium's convention)

    def __init__(self, arms: int = 5, horizon: int = 100):
        check_bandit(arms, horizon)
        self.arms, self.horizon = arms, horizon
        self.action_space = gymnasium.spaces.Discrete(arms)
        self.observation_space = gymnasium.spaces.Discrete(1)
        self.means: np.ndarray | None = None

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)
        self.means, self._outcomes = _draw_task(self.np_random, self.arms, self.horizon)
        self._pulls = np.zeros(self.arms, dtype=np.int64)
        self.t = 0
        return 0, {"means": self.means.copy()}

    def step(self, action: int) -> tuple[int, float, bool, bool, dict[str, Any]]:
        if self.means is None or self.t >= self.horizon:
            raise RuntimeError("the trial is over (or never started); call reset() first")
        if not self.action_space.contains(action):
            raise ValueError(f"action={action!r}; use an arm number in [0, {self.arms - 1}]")
        reward = float(self._outcomes[action, self._pulls[action]])
        self._pulls[action] += 1
        self.t += 1
        return 0, reward, self.t == self.horizon, False, {}
