"""Regret of the bandit agents (metalearn_course.rl): trajectories with the arms pulled
(play_with_actions), the cumulative pseudo-regret computed from them, and UCB1 with a Beta prior
(no first round; Greedy in the limit)."""

import pytest
import torch

from metalearn_course.rl import (
    UCB1,
    BanditTasks,
    Gittins,
    Greedy,
    RandomAgent,
    Thompson,
    play,
    play_with_actions,
    pseudo_regret,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


@pytest.mark.parametrize("agent_class", [RandomAgent, UCB1, Thompson], ids=lambda c: c.__name__)
def test_play_with_actions_matches_play_and_the_outcome_table(agent_class):
    tasks = BanditTasks.from_seeds(range(40), arms=4, horizon=12)
    actions, rewards = play_with_actions(agent_class(), tasks, seed=5)
    assert actions.shape == rewards.shape == (40, 12) and actions.dtype == torch.long
    assert torch.equal(rewards, play(agent_class(), tasks, seed=5))
    # Replaying the recorded arms against the outcome table gives the recorded rewards: the j-th
    # pull of arm a pays outcomes[a, j].
    for i in range(40):
        seen = [0] * 4
        for t, a in enumerate(actions[i].tolist()):
            assert rewards[i, t] == tasks.outcomes[i, a, seen[a]]
            seen[a] += 1


def test_pseudo_regret_by_hand_and_against_the_oracle():
    means = torch.tensor([[0.2, 0.9, 0.5], [0.6, 0.1, 0.3]])
    tasks = BanditTasks(means, torch.zeros(2, 3, 4))
    actions = torch.tensor([[0, 1, 2, 1], [0, 0, 1, 2]])
    expected = torch.tensor([[0.7, 0.7, 1.1, 1.1], [0.0, 0.0, 0.5, 0.8]])
    assert torch.allclose(pseudo_regret(tasks, actions), expected)
    # Its final value is the oracle's expected total minus the expected total of the arms pulled.
    tasks = BanditTasks.from_seeds(range(300), arms=5, horizon=30)
    actions, _ = play_with_actions(Gittins(), tasks, seed=0)
    pulled = tasks.means.gather(1, actions).sum(1)
    assert torch.allclose(pseudo_regret(tasks, actions)[:, -1], tasks.oracle() - pulled, atol=1e-4)
    # Never negative, never decreasing; random play's grows linearly, at the mean gap per pull.
    regret = pseudo_regret(tasks, play_with_actions(RandomAgent(), tasks, seed=0)[0])
    assert (regret >= 0).all() and (regret.diff(dim=1) >= 0).all()
    gap = (tasks.means.max(1).values - tasks.means.mean(1)).mean()
    assert regret[:, -1].mean() / 30 == pytest.approx(gap.item(), rel=0.05)


def test_pseudo_regret_checks_the_shape():
    tasks = BanditTasks.from_seeds(range(3), arms=2, horizon=5)
    with pytest.raises(ValueError, match="one arm per task and pull"):
        pseudo_regret(tasks, torch.zeros(3, 4, dtype=torch.long))


def test_ucb1_with_beta_prior_needs_no_first_round_and_reduces_to_greedy():
    tasks = BanditTasks.from_seeds(range(64), arms=6, horizon=6)
    agent = UCB1(c=0.2, beta_prior=True)
    play(agent, tasks, seed=0)
    pulls = agent.successes + agent.failures
    assert (pulls == 0).any()  # not every arm is pulled first, unlike the textbook UCB1
    # Without a bonus it is greedy on the posterior mean: the same scores, ties and rewards.
    tasks = BanditTasks.from_seeds(range(200), arms=4, horizon=25)
    same = play(UCB1(c=0.0, beta_prior=True), tasks, seed=3)
    assert torch.equal(same, play(Greedy(), tasks, seed=3))

    # A bonus makes it explore more than greedy: more distinct arms tried per task.
    def arms_tried(agent):
        play(agent, tasks, seed=3)
        return ((agent.successes + agent.failures) > 0).sum(1).float().mean()

    assert arms_tried(UCB1(c=1.0, beta_prior=True)) > arms_tried(Greedy())
