"""The shared few-shot evaluator: CI formula, oracle/random methods, modes and fair episodes."""

import math

import pytest
import torch
from torch import nn

from metalearn_course.data.episodes import Episode, EpisodeSampler
from metalearn_course.evaluate import (
    Accuracy,
    embed_images,
    episode_accuracy,
    few_shot,
    few_shot_accuracies,
    mean_ci95,
)


def coded_images(n_classes: int = 30, n_per_class: int = 20) -> torch.Tensor:
    """Pixel (0, 0) holds the class index, so an oracle can read the answer off the image."""
    images = torch.zeros(n_classes, n_per_class, 4, 4, dtype=torch.uint8)
    images[:, :, 0, 0] = torch.arange(n_classes)[:, None]
    return images


def sampler(seed: int = 0) -> EpisodeSampler:
    return EpisodeSampler(coded_images(), way=5, shot=1, queries=15, seed=seed)


def oracle(episode: Episode) -> torch.Tensor:
    cls = (episode.query_x[:, 0, 0, 0] * 255).round().long()
    labels = (cls[:, None] == episode.classes[None, :]).float().argmax(dim=1)
    return nn.functional.one_hot(labels, episode.way).float()


def test_mean_ci95_matches_hand_computation():
    values = [1.0, 0.5, 0.75, 0.25]
    mean = sum(values) / 4
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (4 - 1))  # sample std, ddof=1
    result = mean_ci95(values)
    assert result.n == 4
    assert result.mean == pytest.approx(0.625)
    assert result.ci95 == pytest.approx(1.96 * std / math.sqrt(4))
    assert mean_ci95(torch.tensor(values)) == result
    assert math.isnan(mean_ci95([0.5]).ci95)
    with pytest.raises(ValueError, match="values"):
        mean_ci95([])


def test_accuracy_prints_in_percent():
    assert str(Accuracy(mean=0.9713, ci95=0.0031, n=600)) == "97.13 ± 0.31 % (600 episodes)"
    assert str(Accuracy(mean=0.5, ci95=math.nan, n=1)) == "50.00 ± nan % (1 episode)"


def test_episode_accuracy():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [1.0, 0.0]])
    assert episode_accuracy(logits, torch.tensor([0, 1, 1, 1])) == 0.5
    with pytest.raises(ValueError, match="logits"):
        episode_accuracy(logits, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="queries"):
        episode_accuracy(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long))


def test_oracle_scores_one_with_zero_interval():
    result = few_shot(oracle, sampler(), episodes=50, progress=False)
    assert (result.mean, result.ci95, result.n) == (1.0, 0.0, 50)


def test_random_method_scores_one_over_way():
    generator = torch.Generator().manual_seed(0)

    def guess(episode: Episode) -> torch.Tensor:
        return torch.randn(episode.query_y.shape[0], episode.way, generator=generator)

    result = few_shot(guess, sampler(), episodes=600, progress=False)
    # Standard error ~0.002 with 600 episodes of 75 queries: 0.02 is ten of them.
    assert result.mean == pytest.approx(1 / 5, abs=0.02)
    assert 0 < result.ci95 < 0.01


class Recorder(nn.Module):
    """Records how the evaluator called it; answers like the oracle."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.frozen = nn.Dropout()
        self.calls: list[tuple[bool, bool, torch.Tensor, str]] = []

    def forward(self, episode: Episode) -> torch.Tensor:
        device = episode.query_x.device.type
        self.calls.append((self.training, torch.is_grad_enabled(), episode.classes, device))
        return oracle(episode)


def test_modes_are_restored_and_grad_is_off():
    model = Recorder()
    model.train()
    model.frozen.eval()  # a submodule deliberately kept in eval mode
    few_shot(model, sampler(), episodes=3, progress=False)
    assert [call[:2] for call in model.calls] == [(False, False)] * 3
    assert [call[3] for call in model.calls] == ["cpu"] * 3  # the parameters' device
    assert model.training and model.linear.training and not model.frozen.training

    model.eval()
    few_shot(model, sampler(), episodes=1, progress=False)
    assert not model.training


def test_wrong_logits_shape_is_reported_and_mode_restored():
    broken = Recorder().train()
    broken.forward = lambda episode: oracle(episode)[:, :2]  # forgot three classes
    with pytest.raises(ValueError, match=r"shape \(75, 2\) .* expected \(75, 5\)"):
        few_shot(broken, sampler(), episodes=2, progress=False)
    assert broken.training


def test_progress_bar_goes_to_stderr_and_device_can_be_given(capsys):
    result = few_shot(oracle, sampler(), episodes=5, device="cpu", progress=True)
    assert result.mean == 1.0
    assert capsys.readouterr().out == ""  # stdout stays clean for notebook outputs


def test_equal_seeds_give_identical_episodes_to_both_methods():
    first, second = Recorder(), Recorder()
    few_shot(first, sampler(seed=4), episodes=20, progress=False)
    few_shot(second, sampler(seed=4), episodes=20, progress=False)
    for a, b in zip(first.calls, second.calls, strict=True):
        assert torch.equal(a[2], b[2])


def test_per_episode_scores_allow_paired_comparisons():
    oracle_scores = few_shot_accuracies(oracle, sampler(), episodes=30, progress=False)
    constant = few_shot_accuracies(
        lambda e: torch.zeros(len(e.query_y), e.way), sampler(), episodes=30, progress=False
    )
    assert oracle_scores.shape == constant.shape == (30,)
    assert oracle_scores.dtype == torch.float64
    difference = mean_ci95(oracle_scores - constant)  # argmax of zeros is label 0: 1/5 right
    assert difference.mean == pytest.approx(0.8)


def test_gradient_adaptation_works_inside_the_evaluator():
    # torch.func.grad ignores the outer no_grad: one step of a linear probe on the support set.
    def one_step_probe(episode: Episode) -> torch.Tensor:
        features = episode.support_x.flatten(1)
        weights = torch.zeros(features.shape[1], episode.way)

        def loss(w: torch.Tensor) -> torch.Tensor:
            return nn.functional.cross_entropy(features @ w, episode.support_y)

        weights = weights - 10.0 * torch.func.grad(loss)(weights)
        return episode.query_x.flatten(1) @ weights

    images = torch.zeros(5, 20, 16, dtype=torch.uint8)
    images[torch.arange(5), :, torch.arange(5)] = 255  # class c lights up pixel c
    episodes = EpisodeSampler(images.view(5, 20, 4, 4), way=5, shot=1, queries=5)
    result = few_shot(one_step_probe, episodes, episodes=10, progress=False)
    assert result.mean == 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="episodes=0"):
        few_shot(oracle, sampler(), episodes=0)
    fixed = list(sampler().take(3))
    assert few_shot(oracle, fixed, episodes=3, progress=False).n == 3
    with pytest.raises(ValueError, match="only 3 episodes"):
        few_shot(oracle, fixed, episodes=5, progress=False)


def test_embedded_split_gives_the_same_episodes_and_scores():
    """Embed once, sample many: features sampled with the image sampler's seed are the same
    episodes, and a metric learner scores them exactly as it scores the images."""
    from metalearn_course.metric import ProtoNet
    from metalearn_course.nets import Conv4

    torch.manual_seed(0)
    images = torch.randint(0, 256, (12, 20, 28, 28), dtype=torch.uint8)
    model = ProtoNet(Conv4(hidden=8)).train()
    model(EpisodeSampler(images, 5, 2, 3, seed=9).sample())  # move batch norm's running stats
    features = embed_images(model.encoder, images, batch_size=50)
    assert features.shape == (12, 20, 8) and features.dtype == torch.float32
    assert model.training  # mode restored
    on_images = few_shot_accuracies(model, EpisodeSampler(images, 5, 2, 3, seed=4), 20)
    head = ProtoNet(nn.Identity())
    on_features = few_shot_accuracies(head, EpisodeSampler(features, 5, 2, 3, seed=4), 20)
    torch.testing.assert_close(on_images, on_features)
    a = EpisodeSampler(images, 5, 2, 3, seed=4).sample()
    b = EpisodeSampler(features, 5, 2, 3, seed=4).sample()
    assert torch.equal(a.classes, b.classes) and torch.equal(a.query_y, b.query_y)
    with pytest.raises(ValueError, match="batch_size"):
        embed_images(model.encoder, images, batch_size=0)
    with pytest.raises(ValueError, match="float features"):
        EpisodeSampler(images[:, :, 0], 5, 1, 1)  # uint8 [n_classes, n, 28] is no image set
