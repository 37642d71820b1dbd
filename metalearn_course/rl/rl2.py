"""RL²: a recurrent policy whose hidden state *is* the learning algorithm.

Duan, Schulman, Chen, Bartlett, Sutskever & Abbeel 2016, "RL²: Fast Reinforcement Learning via
Slow Reinforcement Learning", arXiv:1611.02779; Wang et al. 2016, "Learning to reinforcement
learn", arXiv:1611.05763 (the same idea, trained with advantage actor-critic).

A GRU reads, at every pull t of a trial, x_t = (e_{t-1}, r_{t-1} e_{t-1}, r_{t-1}, (n - t) / n):
the one-hot previous arm e_{t-1}, the same one-hot times its reward, the reward, and the
fraction of pulls left. A bandit has no observation, and Duan et al.'s termination flag is
constant when every pull is an episode; the time left is what the finite-horizon optimum
depends on. The product r e is a function of the other inputs, added so that the successes
and failures of every arm are *sums* of inputs over time, which a GRU integrates readily,
rather than sums of products it would first have to learn. Its hidden state h_t is carried
over the whole trial of n pulls and reset between trials, and two linear heads read it: the
policy π(a | h_t) and a critic. Nothing about bandits is built in; the weights are trained
across many sampled tasks to maximise the expected total reward of a trial,

    J(θ) = E_{task} E_{π_θ} [ Σ_{t<n} γ^t r_t ],      γ = 1 by default (the trial is short),

so the fast learning (exploring, then exploiting) happens in h_t, with frozen weights.

The slow learner is PPO (Schulman et al. 2017, arXiv:1707.06347; Duan et al. used TRPO) with
generalized advantage estimation (Schulman et al. 2015, arXiv:1506.02438):

    δ_t = r_t + γ V_{t+1} - V_t,        A_t = Σ_{l≥0} (γλ)^l δ_{t+l},        V_n = 0,

    L(θ) = -E[min(ρ_t A_t, clip(ρ_t, 1-ε, 1+ε) A_t)] + c_V E[(v_t - R_t/m_t)²] - c_H E[H(π(·|h_t))]

with ρ_t = π_θ(a_t|h_t) / π_old(a_t|h_t), returns R_t = A_t + V_t, and advantages normalised per
batch. The critic predicts the mean reward per remaining pull, v_t, and V_t = m_t v_t with
m_t = Σ_{i<n-t} γ^i, so its target stays in [0, 1] whatever the horizon. Gradients are clipped
to a global norm, the step size and the entropy bonus decay linearly to 0.

Optional variance reduction, `expected_rewards=True`: the agent still *sees* the sampled reward
r_t, but learns from its expectation μ_{a_t}, known to the simulator. Since
E[r_t | history, a_t] = μ_{a_t} and every score-function term ∇ log π(a_s | h_s) with s ≤ t is
fixed once a_t is chosen, the policy gradient is unchanged in expectation; only the Bernoulli
noise of the training signal is gone (a departure from the papers, for a laptop budget).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from metalearn_course.checkpoints import TrainingState
from metalearn_course.rl.bandits import BanditTasks, BatchedBandits, check_bandit
from metalearn_course.schedules import linear_decay

TRAIN_SEEDS_FROM = 2**40  # training tasks use seeds >= this; keep evaluation seeds below it


class RL2Policy(nn.Module):
    """GRU over (previous arm one-hot, the same times its reward, the reward, fraction of pulls
    left), with a policy head (logits over arms) and a critic (mean reward per remaining pull)."""

    def __init__(self, arms: int, hidden: int = 64, seed: int = 0):
        super().__init__()
        if hidden < 1:
            raise ValueError(f"hidden={hidden}; use hidden >= 1 GRU units")
        self.arms = arms
        self.gru = nn.GRU(2 * arms + 2, hidden, batch_first=True)
        self.policy = nn.Linear(hidden, arms)
        self.critic = nn.Linear(hidden, 1)
        # Duan et al.'s initialisation, from our own generator: orthogonal recurrent weights
        # (one block per gate), Xavier elsewhere, zero biases; a near-uniform first policy.
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for block in self.gru.weight_hh_l0.chunk(3):
                nn.init.orthogonal_(block, generator=g)
            nn.init.xavier_uniform_(self.gru.weight_ih_l0, generator=g)
            nn.init.xavier_uniform_(self.critic.weight, generator=g)
            nn.init.orthogonal_(self.policy.weight, gain=0.01, generator=g)
            for bias in (self.gru.bias_ih_l0, self.gru.bias_hh_l0, self.policy.bias):
                bias.zero_()
            self.critic.bias.zero_()

    def inputs(
        self, prev_actions: torch.Tensor, prev_rewards: torch.Tensor, time_left: torch.Tensor
    ) -> torch.Tensor:
        """x [B, T, 2k + 2] from previous arms [B, T] (-1: none yet), rewards [B, T] and the
        fraction of pulls left [T]."""
        one_hot = F.one_hot(prev_actions.clamp_min(0), self.arms) * (prev_actions >= 0)[..., None]
        steps = time_left.expand(prev_actions.shape)
        r = prev_rewards[..., None]
        return torch.cat([one_hot.float(), one_hot * r, r, steps[..., None]], dim=-1)

    def forward(
        self, x: torch.Tensor, h: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """logits [B, T, k], critic v [B, T] (reward per remaining pull), last hidden state."""
        out, h = self.gru(x, h)
        return self.policy(out), self.critic(out).squeeze(-1), h


class RL2Agent:
    """A trained RL2Policy as an agent for `bandits.play`: weights frozen, learning in h."""

    def __init__(self, policy: RL2Policy, greedy: bool = False):
        self.policy, self.greedy = policy, greedy

    def reset(self, num_tasks: int, arms: int, horizon: int, device: torch.device) -> None:
        if arms != self.policy.arms:
            raise ValueError(f"the policy was built for {self.policy.arms} arms, not {arms}")
        self.horizon, self.h = horizon, None
        self.prev_actions = torch.full((num_tasks, 1), -1, device=device)
        self.prev_rewards = torch.zeros(num_tasks, 1, device=device)

    def act(self, t: int, generator: torch.Generator) -> torch.Tensor:
        left = torch.tensor([(self.horizon - t) / self.horizon], device=self.prev_rewards.device)
        x = self.policy.inputs(self.prev_actions, self.prev_rewards, left)
        logits, _, self.h = self.policy(x, self.h)
        if self.greedy:
            return logits[:, 0].argmax(dim=-1)
        return torch.multinomial(logits[:, 0].softmax(dim=-1), 1, generator=generator)[:, 0]

    def observe(self, actions: torch.Tensor, rewards: torch.Tensor) -> None:
        self.prev_actions, self.prev_rewards = actions[:, None], rewards[:, None]


@dataclass
class RL2Config:
    """Training hyper-parameters. Duan et al.: 256 GRU units, TRPO, GAE λ = 0.3, γ = 0.99,
    250,000 pulls per batch. The defaults here train in about 2 CPU minutes (one thread) at
    k = 5, n = 100, found by a small search: several PPO passes over smaller batches, a longer
    GAE (λ = 0.9) and the expected-reward signal learned fastest on that budget."""

    arms: int = 5
    horizon: int = 100
    hidden: int = 64
    tasks_per_update: int = 128  # trials per batch (× horizon pulls)
    updates: int = 280
    lr: float = 2e-3  # Adam's, decayed linearly to 0
    gamma: float = 1.0
    gae_lambda: float = 0.9
    clip: float = 0.2  # PPO's ε
    epochs: int = 4  # passes of PPO over each batch
    minibatches: int = 4  # per pass, split over tasks
    entropy: float = 0.05  # c_H, decayed linearly to 0
    value_coef: float = 0.5  # c_V
    max_grad_norm: float = 1.0
    expected_rewards: bool = True  # learn from μ_{a_t} instead of r_t (see the docstring)
    seed: int = 0

    def __post_init__(self) -> None:
        check_bandit(self.arms, self.horizon)
        for name in ("hidden", "tasks_per_update", "updates", "epochs", "minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}; use {name} >= 1")
        if self.tasks_per_update % self.minibatches:
            raise ValueError(
                f"tasks_per_update={self.tasks_per_update} is not a multiple of"
                f" minibatches={self.minibatches}; make it one"
            )
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)}; use a value in [0, 1]")
        for name in ("lr", "clip", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}={getattr(self, name)}; use {name} > 0")
        for name in ("entropy", "value_coef"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}; use {name} >= 0")


@dataclass
class PPOHistory:
    """Per update: mean total reward of the batch's trials, the loss terms, elapsed seconds."""

    reward: list[float] = field(default_factory=list)
    policy_loss: list[float] = field(default_factory=list)
    value_loss: list[float] = field(default_factory=list)
    entropy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def pulls_to_go(horizon: int, gamma: float, device: torch.device) -> torch.Tensor:
    """m_t = Σ_{i < n - t} γ^i for t = 0..n-1: the critic's scale."""
    left = torch.arange(horizon, 0, -1, device=device, dtype=torch.float32)
    return left if gamma == 1 else (1 - gamma**left) / (1 - gamma)


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """Advantages A_t [B, n] of one full trial per row (V_n = 0: nothing after the trial)."""
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else 0.0
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages


@torch.no_grad()
def rollout(policy: RL2Policy, tasks: BanditTasks, generator: torch.Generator):
    """One trial on every task, sampling from π: actions, rewards, log π(a_t), v_t and the
    expected rewards μ_{a_t}, each [B, n]."""
    env, n = BatchedBandits(tasks), tasks.horizon
    prev_actions = torch.full((tasks.num_tasks, 1), -1, device=tasks.device)
    prev_rewards = torch.zeros(tasks.num_tasks, 1, device=tasks.device)
    time_left = torch.arange(n, 0, -1, device=tasks.device) / n
    h, actions, rewards, log_probs, values, expected = None, [], [], [], [], []
    for t in range(n):
        x = policy.inputs(prev_actions, prev_rewards, time_left[t : t + 1])
        logits, v, h = policy(x, h)
        log_pi = logits[:, 0].log_softmax(dim=-1)
        action = torch.multinomial(log_pi.exp(), 1, generator=generator)
        reward = env.step(action[:, 0])
        prev_actions, prev_rewards = action, reward[:, None]
        actions.append(action[:, 0])
        rewards.append(reward)
        log_probs.append(log_pi.gather(1, action)[:, 0])
        values.append(v[:, 0])
        expected.append(tasks.means.gather(1, action)[:, 0])
    return tuple(torch.stack(x, dim=1) for x in (actions, rewards, log_probs, values, expected))


def evaluate_actions(policy: RL2Policy, actions: torch.Tensor, rewards: torch.Tensor):
    """Re-run the GRU over whole recorded trials in one call: logits [B, n, k], v [B, n]."""
    horizon = actions.shape[1]
    prev_actions = F.pad(actions, (1, -1), value=-1)  # what was seen before pull t
    prev_rewards = F.pad(rewards, (1, -1), value=0.0)
    time_left = torch.arange(horizon, 0, -1, device=actions.device) / horizon
    logits, v, _ = policy(policy.inputs(prev_actions, prev_rewards, time_left))
    return logits, v


def training_tasks(
    config: RL2Config, rng: np.random.Generator, device: torch.device
) -> BanditTasks:
    """A fresh batch of training tasks, with seeds drawn at or above TRAIN_SEEDS_FROM."""
    seeds = rng.integers(TRAIN_SEEDS_FROM, 2**62, size=config.tasks_per_update)
    return BanditTasks.from_seeds(seeds.tolist(), config.arms, config.horizon, device)


def train_rl2(
    config: RL2Config | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    state: str | Path | None = None,
    save_every: int = 10,
    resume: bool = False,
) -> tuple[RL2Policy, PPOHistory]:
    """Train an RL2Policy with PPO + GAE on freshly sampled tasks at every update.

    state, save_every, resume: as train.fit's. With `state`, the whole training state (policy,
    Adam, schedule, the task and action generators, history) is written there atomically every
    `save_every` updates and at the end; with resume=True a run continues from that file and
    ends with the same weights as a run that was never stopped.
    """
    config = RL2Config() if config is None else config
    device = torch.device(device)
    run = TrainingState(state, dataclasses.asdict(config), resume)
    policy = RL2Policy(config.arms, config.hidden, seed=config.seed).to(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.lr)
    steps = config.updates * config.epochs * config.minibatches
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay(steps))
    entropy_decay = linear_decay(config.updates)  # the entropy bonus decays to 0 too
    task_rng = np.random.default_rng(config.seed)  # the tasks of every update
    generator = torch.Generator(device=device).manual_seed(config.seed)  # actions, minibatches
    scale = pulls_to_go(config.horizon, config.gamma, device)
    history, done = PPOHistory(), 0
    saved = run.load()
    if saved is not None:
        policy.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        task_rng.bit_generator.state = saved["task_rng"]
        generator.set_state(saved["generator"].to("cpu"))
        history, done = PPOHistory(**saved["history"]), saved["update"]

    def save_state(update: int) -> None:
        run.save(
            policy,
            update=update,
            optimizer=optimizer.state_dict(),
            schedule=schedule.state_dict(),
            task_rng=task_rng.bit_generator.state,
            generator=generator.get_state(),
            history=dataclasses.asdict(history),
        )

    start = time.perf_counter() - (history.seconds[-1] if history.seconds else 0.0)
    bar = dict(disable=not progress, file=sys.stderr, initial=done, total=config.updates)
    for update in tqdm(range(done, config.updates), **bar):
        tasks = training_tasks(config, task_rng, device)
        actions, rewards, old_log_probs, old_v, expected = rollout(policy, tasks, generator)
        values = old_v * scale
        signal = expected if config.expected_rewards else rewards
        advantages = gae(signal, values, config.gamma, config.gae_lambda)
        targets = (advantages + values) / scale  # R_t / m_t: the critic's target
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        entropy_coef = config.entropy * entropy_decay(update)
        for _ in range(config.epochs):
            order = torch.randperm(config.tasks_per_update, generator=generator, device=device)
            for rows in order.chunk(config.minibatches):
                logits, v = evaluate_actions(policy, actions[rows], rewards[rows])
                log_probs = logits.log_softmax(-1)
                new = log_probs.gather(-1, actions[rows, :, None])[..., 0]
                ratio = torch.exp(new - old_log_probs[rows])
                adv = advantages[rows]
                clipped = ratio.clamp(1 - config.clip, 1 + config.clip)
                policy_loss = -torch.minimum(ratio * adv, clipped * adv).mean()
                value_loss = (v - targets[rows]).pow(2).mean()
                entropy = -(log_probs.exp() * log_probs).sum(-1).mean()
                loss = policy_loss + config.value_coef * value_loss - entropy_coef * entropy
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
                optimizer.step()
                schedule.step()
        history.reward.append(rewards.sum(1).mean().item())
        history.policy_loss.append(policy_loss.item())
        history.value_loss.append(value_loss.item())
        history.entropy.append(entropy.item())
        history.seconds.append(time.perf_counter() - start)
        if state is not None and ((update + 1) % save_every == 0 or update + 1 == config.updates):
            save_state(update + 1)
    return policy, history
