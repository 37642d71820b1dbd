"""The shared training loop: logging, validation and early stopping, checkpoints, the loss
convention, determinism and input checks.

Most tests train a ProtoNet whose encoder is one linear layer: fit does not care what the
method is, and this keeps the file fast.
"""

import itertools
import math
import os
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from helpers import blob_images
from torch import nn

from metalearn_course import train
from metalearn_course.checkpoints import load_checkpoint, save_checkpoint
from metalearn_course.data.episodes import EpisodeSampler
from metalearn_course.evaluate import Accuracy
from metalearn_course.metric import ProtoNet, RelationNet
from metalearn_course.train import FitHistory, fit


def tiny(seed: int = 0) -> ProtoNet:
    torch.manual_seed(seed)
    return ProtoNet(nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 8)))


def sampler(seed: int = 0, queries: int = 2) -> EpisodeSampler:
    return EpisodeSampler(blob_images(), way=3, shot=1, queries=queries, seed=seed)


def noise_sampler(seed: int = 0) -> EpisodeSampler:
    """Episodes of pure-noise classes: accuracies stay near chance and differ from step to step
    (on blob_images the tiny ProtoNet scores 1.0 at once, which would hide a miscount)."""
    images = torch.randint(0, 256, (6, 10, 28, 28), generator=torch.Generator().manual_seed(1))
    return EpisodeSampler(images.to(torch.uint8), way=3, shot=1, queries=2, seed=seed)


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_history_has_one_entry_per_window():
    model, seen = tiny(), []  # (loss, accuracy) of every training forward, counted here

    def record(module, args, logits):
        labels = args[0].query_y
        hits = (logits.argmax(dim=1) == labels).sum().item()
        seen.append((F.cross_entropy(logits, labels).item(), hits / labels.numel()))

    model.register_forward_hook(record)
    history = fit(model, noise_sampler(), steps=23, log_every=5, progress=False)
    assert isinstance(history, FitHistory)
    assert history.step == [5, 10, 15, 20, 23]  # the last, shorter window is logged too
    assert len(seen) == 23 and len(history.loss) == len(history.accuracy) == 5
    # Each entry is the mean over its window of the steps' loss and query accuracy.
    for i, window in enumerate([seen[0:5], seen[5:10], seen[10:15], seen[15:20], seen[20:23]]):
        losses, accuracies = zip(*window, strict=True)
        assert history.loss[i] == pytest.approx(sum(losses) / len(window), rel=1e-6)
        assert history.accuracy[i] == pytest.approx(sum(accuracies) / len(window), abs=1e-6)
    assert history.val_step == history.val_accuracy == []
    assert history.best_step is None and history.best_val is None


def test_validation_steps_best_checkpoint_and_restore(tmp_path, monkeypatch):
    scripted = iter([0.5, 0.9, 0.7])  # the second validation is the best
    calls = []

    def fake_few_shot(method, episodes, n, device=None, progress=True):
        calls.append((weights(method), list(episodes), n))
        return Accuracy(mean=next(scripted), ci95=0.0, n=n)

    monkeypatch.setattr(train, "few_shot", fake_few_shot)
    model, path = tiny(), tmp_path / "best.pt"
    history = fit(
        model,
        sampler(),
        steps=30,
        val_sampler=sampler(seed=9),
        val_every=10,
        val_episodes=4,
        checkpoint=path,
        progress=False,
    )
    assert history.val_step == [10, 20, 30]
    assert history.val_accuracy == [0.5, 0.9, 0.7]
    assert (history.best_step, history.best_val) == (20, 0.9)
    # Every validation scored the same 4 episodes.
    assert all(n == 4 and len(episodes) == 4 for _, episodes, n in calls)
    # (Episode has no __eq__, so list == compares the episodes by identity.)
    assert all(episodes == calls[0][1] for _, episodes, _ in calls)
    # The weights of step 20 are restored, and they are what the checkpoint holds.
    best = calls[1][0]
    assert same_weights(weights(model), best)
    assert not same_weights(calls[2][0], best)
    fresh = tiny(seed=1)
    assert load_checkpoint(fresh, path) == {"step": 20, "val_accuracy": 0.9}
    assert same_weights(weights(fresh), best)
    assert model.training  # fit leaves the modes as it found them


def test_real_validation_runs():
    model = tiny()
    history = fit(
        model,
        noise_sampler(),
        steps=4,
        val_sampler=noise_sampler(seed=5),
        val_every=2,
        val_episodes=3,
        progress=False,
    )
    scores = history.val_accuracy
    assert history.val_step == [2, 4] and len(scores) == 2 and history.best_val == max(scores)
    assert history.best_step == history.val_step[scores.index(max(scores))]  # the first best
    # The best weights are restored: the same 3 episodes, counted here, give the best accuracy.
    model.eval()
    with torch.no_grad():
        episodes = list(itertools.islice(noise_sampler(seed=5), 3))
        hits = sum((model(e).argmax(dim=1) == e.query_y).sum().item() for e in episodes)
    assert history.best_val == pytest.approx(hits / sum(e.query_y.numel() for e in episodes))


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    model = RelationNet(channels=4)  # has batch-norm buffers too
    fit(model, sampler(), steps=2, progress=False)
    path = tmp_path / "sub" / "model.pt"
    save_checkpoint(model, path, step=2, note="hello", curve=[0.5, 0.25])
    assert os.listdir(path.parent) == ["model.pt"]  # no temporary file left behind
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"state_dict", "step", "note", "curve"}
    fresh = RelationNet(channels=4)
    assert load_checkpoint(fresh, path) == {"step": 2, "note": "hello", "curve": [0.5, 0.25]}
    assert same_weights(weights(fresh), weights(model))
    with pytest.raises(ValueError, match="state_dict"):
        save_checkpoint(model, path, state_dict=1)


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    model, path = tiny(), tmp_path / "model.pt"
    save_checkpoint(model, path, step=1)
    old = path.read_bytes()

    def broken_save(obj, file):
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(model, path, step=2)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["model.pt"]


def test_same_seeds_same_weights():
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = RelationNet(channels=4)  # convolutions and batch norm, not just a linear layer
        history = fit(model, sampler(seed=4), steps=15, log_every=1, progress=False)
        runs.append((weights(model), history.loss))
    assert same_weights(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    torch.manual_seed(3)
    other = RelationNet(channels=4)
    fit(other, sampler(seed=5), steps=15, progress=False)
    assert not same_weights(weights(other), runs[0][0])


def test_loss_convention():
    seen = []

    class WithLoss(ProtoNet):
        def loss(self, output, episode):
            seen.append("method")
            return output.square().mean()

    torch.manual_seed(0)
    model = WithLoss(nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 4)))
    fit(model, sampler(), steps=2, progress=False)
    assert seen == ["method", "method"]

    def my_loss(output, episode):
        seen.append("loss_fn")
        assert output.shape == (6, 3) and episode.way == 3
        return output.mean()

    fit(model, sampler(), steps=1, loss_fn=my_loss, progress=False)  # loss_fn wins
    assert seen[-1] == "loss_fn"
    # Default: cross-entropy of the logits vs query_y (logged before the step changes them).
    model, first = tiny(), sampler().sample()
    expected = F.cross_entropy(model(first), first.query_y).item()
    history = fit(model, sampler(), steps=1, log_every=1, progress=False)
    assert history.loss[0] == pytest.approx(expected)


def test_custom_optimizer_and_lr_schedule():
    model = tiny()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    fit(
        model, sampler(), steps=5, optimizer=optimizer, lr_schedule=lambda s: 0.5**s, progress=False
    )
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**5)


def test_progress_bar_goes_to_stderr(capsys):
    fit(tiny(), sampler(), steps=3, progress=True)
    out, _ = capsys.readouterr()
    assert out == ""


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="steps"):
        fit(tiny(), sampler(), steps=0)
    with pytest.raises(ValueError, match="val_sampler"):
        fit(tiny(), sampler(), steps=2, val_every=1)
    with pytest.raises(ValueError, match="val_every"):
        fit(tiny(), sampler(), steps=2, val_sampler=sampler())
    with pytest.raises(ValueError, match="checkpoint"):
        fit(tiny(), sampler(), steps=2, checkpoint="x.pt")
    with pytest.raises(ValueError, match="sampler gave only 3"):
        fit(tiny(), list(sampler().take(3)), steps=5, progress=False)
    with pytest.raises(ValueError, match="queries"):
        fit(tiny(), sampler(queries=0), steps=1, progress=False)
    with pytest.raises(ValueError, match="scalar"):
        fit(tiny(), sampler(), steps=1, loss_fn=lambda out, e: out, progress=False)
    with pytest.raises(FloatingPointError, match="step 1"):
        fit(tiny(), sampler(), steps=1, loss_fn=lambda out, e: out.sum() * math.nan, progress=False)


@pytest.mark.parametrize("vmap", [False, True])
@pytest.mark.parametrize("group", [1, 3, 5])
def test_tasks_per_backward_accumulates_the_same_gradient(group, vmap):
    """Gradient accumulation over groups of tasks: the whole meta-batch's gradient (5 tasks,
    groups of 1, 3 + 2, 5), the same loss and outputs; float64, so only rounding differs.
    vmap: the engine's vmap over the tasks of a group instead of the core's loop."""
    from metalearn_course.engine import fast
    from metalearn_course.gradient import MAML, conv4_classifier

    torch.manual_seed(0)
    method = MAML(conv4_classifier(3, hidden=4, blocks=2, image_size=8).double(), 1, 0.4)
    if vmap:
        fast(method, vmap=True)
    images = torch.rand(6, 4, 8, 8, dtype=torch.float64)
    batch = EpisodeSampler(images, way=3, shot=1, queries=2, seed=0).sample_batch(5)
    batch = replace(batch, support_x=batch.support_x.double(), query_x=batch.query_x.double())
    results = []
    for tasks in (None, group):
        method.zero_grad(set_to_none=True)
        output, loss = train.accumulate_gradient(method, batch, method.loss, tasks)
        results.append((output, loss, [p.grad.clone() for p in method.parameters()]))
    (output, loss, grads), (output_g, loss_g, grads_g) = results
    torch.testing.assert_close(output_g, output, rtol=0, atol=1e-14)
    assert loss_g == pytest.approx(loss, rel=1e-14)
    for g, expected in zip(grads_g, grads, strict=True):
        torch.testing.assert_close(g, expected, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="tasks_per_backward"):
        fit(method, iter([batch]), steps=1, tasks_per_backward=0, progress=False)


def test_warmup_cosine_rises_then_decays_to_zero():
    factor = train.warmup_cosine(100)  # warm-up over 5 steps
    assert [factor(t) for t in range(5)] == pytest.approx(
        [(t + 1) / 5 * 0.5 * (1 + math.cos(math.pi * t / 100)) for t in range(5)]
    )
    values = [factor(t) for t in range(5, 100)]
    assert all(a > b for a, b in itertools.pairwise(values))  # decays from the peak
    assert values[-1] < 0.01 and train.warmup_cosine(1)(0) == 1.0
    with pytest.raises(ValueError, match="steps=0"):
        train.warmup_cosine(0)
