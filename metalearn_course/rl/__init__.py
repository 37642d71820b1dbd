"""Meta-reinforcement learning: learning to explore, on Bernoulli multi-armed bandits.

bandits.py holds the task distribution (arm means U[0, 1]), as a gymnasium.Env and as a batch of
torch tasks stepped at once; baselines.py the hand-designed agents (random, greedy, ε-greedy,
UCB1, Thompson sampling, optimistic Thompson sampling, the Gittins index), vectorised over
tasks; rl2.py the RL² recurrent policy of Duan et al. 2016 and its PPO + GAE training.

Every agent is scored by `play(agent, tasks, seed)` on the same `BanditTasks.from_seeds(...)`,
so a comparison is always on identical tasks with identical reward draws.
"""

from metalearn_course.rl.bandits import (
    Agent,
    BanditTasks,
    BatchedBandits,
    BernoulliBandit,
    play,
    play_with_actions,
    pseudo_regret,
)
from metalearn_course.rl.baselines import (
    UCB1,
    EpsilonGreedy,
    Gittins,
    Greedy,
    OptimisticThompson,
    RandomAgent,
    Thompson,
    finite_horizon_gittins,
    gittins_index,
)
from metalearn_course.rl.rl2 import PPOHistory, RL2Agent, RL2Config, RL2Policy, train_rl2

__all__ = [
    "UCB1",
    "Agent",
    "BanditTasks",
    "BatchedBandits",
    "BernoulliBandit",
    "EpsilonGreedy",
    "Gittins",
    "Greedy",
    "OptimisticThompson",
    "PPOHistory",
    "RL2Agent",
    "RL2Config",
    "RL2Policy",
    "RandomAgent",
    "Thompson",
    "finite_horizon_gittins",
    "gittins_index",
    "play",
    "play_with_actions",
    "pseudo_regret",
    "train_rl2",
]
