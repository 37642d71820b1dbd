"""Tests of metalearn_course.transfer: pre-training batches, freezing, few-shot transfer, task
embeddings. Tiny networks on 8×8 images, so the whole file runs in seconds."""

import itertools

import pytest
import torch
from torch import nn

from metalearn_course.data.episodes import Episode, EpisodeSampler
from metalearn_course.evaluate import few_shot
from metalearn_course.nets import Conv4
from metalearn_course.train import fit
from metalearn_course.transfer import (
    ClassBatches,
    Classifier,
    CosineHead,
    FineTuneAll,
    FineTuneHead,
    LinearProbe,
    cosine_logits,
    feature_statistics,
    fisher_embedding,
    fit_logistic_regression,
    freeze,
    freeze_up_to,
    nearest_source,
    statistics_frozen,
    task_distance,
    trainable,
    unfreeze,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_encoder(seed: int = 0) -> Conv4:
    """Conv4 with 2 blocks of 4 channels: 8×8 images -> 4 · 2 · 2 = 16 features."""
    torch.manual_seed(seed)
    return Conv4(hidden=4, blocks=2)


def class_images(n_classes: int = 6, n_per_class: int = 10, seed: int = 0) -> torch.Tensor:
    """uint8 images [n_classes, n_per_class, 8, 8]: a random template per class plus a little
    per-image noise."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(n_classes, 1, 8, 8, generator=g)
    noise = 0.1 * torch.randn(n_classes, n_per_class, 8, 8, generator=g)
    return ((templates + noise).clamp(0, 1) * 255).to(torch.uint8)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of the rows of logits whose largest entry is at the label, counted by hand."""
    rows = logits.tolist()
    hits = sum(row.index(max(row)) == y for row, y in zip(rows, labels.tolist(), strict=True))
    return hits / len(rows)


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def snapshot(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ---------------------------------------------------------------- ClassBatches and Classifier


def test_class_batches_are_seeded_labelled_and_cover_every_image():
    images = class_images(n_classes=5, n_per_class=4)
    a, b = ClassBatches(images, 6, seed=1), ClassBatches(images, 6, seed=1)
    first, second = next(a), next(b)
    assert torch.equal(first.query_x, second.query_x)
    assert torch.equal(first.query_y, second.query_y)
    assert not torch.equal(first.query_y, next(ClassBatches(images, 6, seed=2)).query_y)
    assert first.query_x.shape == (6, 1, 8, 8) and first.support_x.shape == (0, 1, 8, 8)
    assert first.way == 5 and torch.equal(first.classes, torch.arange(5))
    # Every image carries its class label.
    flat = images.flatten(0, 1).unsqueeze(1).float() / 255
    for x, y in zip(first.query_x, first.query_y, strict=True):
        matches = (flat == x).flatten(1).all(dim=1).nonzero().flatten()
        assert (matches // 4 == y).all()
    # One epoch (20 images, batches of 5) shows every image exactly once: all classes covered.
    sampler = ClassBatches(images, 5, seed=0)
    labels = torch.cat([next(sampler).query_y for _ in range(4)])
    assert torch.equal(torch.bincount(labels, minlength=5), torch.full((5,), 4))


def test_class_batches_resume_from_state_dict_across_epochs():
    images = class_images(n_classes=3, n_per_class=5)  # 15 images: epochs of 2 batches of 6
    reference = ClassBatches(images, 6, seed=3)
    expected = [next(reference).query_y for _ in range(7)]
    for taken in (0, 1, 2, 3):
        sampler = ClassBatches(images, 6, seed=3)
        for _ in range(taken):
            next(sampler)
        state = sampler.state_dict()
        resumed = ClassBatches(images, 6, seed=3)
        resumed.load_state_dict(state)
        rest = [next(resumed).query_y for _ in range(7 - taken)]
        assert all(torch.equal(x, y) for x, y in zip(rest, expected[taken:], strict=True))
    with pytest.raises(ValueError, match="seed"):
        ClassBatches(images, 6, seed=4).load_state_dict(state)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 31}, "batch_size=31"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"images": torch.zeros(3, 10, 8, 8, dtype=torch.int32)}, "dtype"),
        ({"images": torch.zeros(3, 8, 8, dtype=torch.uint8)}, "shape"),
        ({"images": torch.zeros(1, 10, 8, 8, dtype=torch.uint8)}, "2 classes"),
    ],
)
def test_class_batches_reject_bad_arguments(kwargs, message):
    arguments = {"images": class_images(3, 10), "batch_size": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        ClassBatches(**arguments)


def test_pretraining_with_fit_lowers_the_loss_and_resumes(tmp_path):
    images = class_images(n_classes=6, n_per_class=10)
    for head in ("linear", "cosine"):
        model = Classifier(tiny_encoder(), n_classes=6, feature_dim=16, head=head)
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        batches = ClassBatches(images, 16, seed=0)
        history = fit(model, batches, 30, optimizer=optimizer, progress=False, log_every=10)
        assert history.loss[-1] < 0.7 * history.loss[0], (head, history.loss)
    # fit can save and resume the run: the sampler has state_dict / load_state_dict.
    model = Classifier(tiny_encoder(), n_classes=6, feature_dim=16)
    fit(model, ClassBatches(images, 16, seed=0), 4, state=tmp_path / "s.pt", progress=False)
    assert (tmp_path / "s.pt").exists()
    with pytest.raises(ValueError, match="classes"):
        model(next(ClassBatches(class_images(n_classes=5), 4)))
    # Few-shot episodes of new classes are scored by nearest class mean: fit can validate.
    new_images = class_images(n_classes=4, seed=9)
    history = fit(
        model,
        ClassBatches(images, 16),
        4,
        val_sampler=EpisodeSampler(new_images, way=3, shot=2, queries=3, seed=0),
        val_every=2,
        val_episodes=3,
        progress=False,
    )
    scores = history.val_accuracy
    assert history.val_step == [2, 4] and len(scores) == 2 and history.best_val == max(scores)
    assert history.best_step == history.val_step[scores.index(max(scores))]  # the first best
    # fit restored the best weights: scoring the same 3 episodes again gives the best accuracy.
    same_episodes = EpisodeSampler(new_images, way=3, shot=2, queries=3, seed=0)
    again = few_shot(model, same_episodes, episodes=3, progress=False).mean
    assert again == pytest.approx(history.best_val, abs=1e-12)


def test_cosine_head_is_scale_times_cosine_on_a_hand_example():
    head = CosineHead(2, 2, scale=10.0)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    # f = (3, 4): cos with (1, 0) is 3/5, with (0, 2) is 4/5.
    logits = head(torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(logits, torch.tensor([[6.0, 8.0]]))
    assert torch.allclose(cosine_logits(torch.tensor([[3.0, 4.0]]), head.weight, 2.0), logits / 5)
    assert "scale" not in dict(head.named_parameters())  # fixed, as in the authors' code
    assert "scale" in dict(CosineHead(2, 2, learn_scale=True).named_parameters())
    with pytest.raises(ValueError, match="scale"):
        CosineHead(2, 2, scale=0.0)


# ---------------------------------------------------------------------------------- freezing


def test_freeze_really_freezes_parameters_and_batch_norm_statistics():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=0.1)
    freeze(model, "0", "1")
    assert trainable(model) == ["3.weight", "3.bias"]
    assert statistics_frozen(model) == ["1"]
    before = snapshot(model)
    model.train()  # what fit does: must not un-freeze the batch-norm statistics
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 3) + 2).pow(2).sum().backward()
        optimizer.step()
    after = snapshot(model)
    assert model[0].weight.grad is None and model[1].weight.grad is None
    for key in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var"):
        assert torch.equal(before[key], after[key]), key
    assert not torch.equal(before["3.weight"], after["3.weight"])

    unfreeze(model)
    assert len(trainable(model)) == 6 and statistics_frozen(model) == []
    model.train()
    model(torch.randn(8, 3) + 2)
    assert not torch.equal(model[1].running_mean, before["1.running_mean"])


def test_freeze_without_batch_norm_leaves_statistics_free_and_names_are_checked():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    freeze(model, batch_norm=False)
    assert trainable(model) == [] and statistics_frozen(model) == []
    model.train()
    model(torch.randn(8, 3) + 2)
    assert not torch.equal(model[1].running_mean, torch.zeros(4))
    with pytest.raises(ValueError, match="no parameter or submodule"):
        freeze(model, "encoder")


def test_freeze_up_to_freezes_leading_conv4_blocks():
    encoder = tiny_encoder()
    freeze_up_to(encoder, 1)
    assert all(name.startswith("encoder.1.") for name in trainable(encoder))
    assert len(trainable(encoder)) == 4  # conv weight, bias, batch-norm weight, bias
    assert statistics_frozen(encoder) == ["encoder.0.1"]
    freeze_up_to(encoder, 0)
    assert len(trainable(encoder)) == 8 and statistics_frozen(encoder) == []
    freeze_up_to(encoder, 2)
    assert trainable(encoder) == []
    with pytest.raises(ValueError, match="block=3"):
        freeze_up_to(encoder, 3)
    with pytest.raises(ValueError, match="Sequential"):
        freeze_up_to(nn.Linear(2, 2), 1)


# ------------------------------------------------------------------------- few-shot transfer


def toy_features(way=5, shot=20, queries=100, dim=10, seed=0) -> Episode:
    """A linearly separable feature episode: clusters around orthogonal directions."""
    g = torch.Generator().manual_seed(seed)
    means = 3 * torch.eye(dim)[:way]

    def draw(n):
        labels = torch.arange(way).repeat_interleave(n)
        return means[labels] + 0.3 * torch.randn(len(labels), dim, generator=g), labels

    (sx, sy), (qx, qy) = draw(shot), draw(queries)
    return Episode(sx, sy, qx, qy, torch.arange(way))


def test_linear_probe_recovers_a_linearly_separable_problem():
    episode = toy_features()
    logits = LinearProbe()(episode)
    assert logits.shape == (500, 5)
    assert (logits.argmax(dim=1) == episode.query_y).float().mean() >= 0.99
    # L-BFGS reaches the optimum: the penalised objective's gradient vanishes there.
    z = torch.nn.functional.normalize(episode.support_x, dim=-1).double()
    head = fit_logistic_regression(z, episode.support_y, 5, C=1.0)
    w = head["weight"].requires_grad_(True)
    b = head["bias"].requires_grad_(True)
    loss = nn.functional.cross_entropy(z @ w.T + b, episode.support_y) + (w**2).sum() / (2 * 100)
    loss.backward()
    assert w.grad.abs().max() < 1e-5 and b.grad.abs().max() < 1e-5
    with pytest.raises(ValueError, match="C=0"):
        LinearProbe(C=0)


def image_episode(seed: int = 0) -> Episode:
    return EpisodeSampler(class_images(6, 10), way=3, shot=2, queries=3, seed=seed).sample()


@pytest.mark.parametrize(
    "make",
    [
        lambda e: LinearProbe(e),
        lambda e: FineTuneHead(e, steps=10),
        lambda e: FineTuneHead(e, head="cosine", steps=10, init="prototypes"),
        lambda e: FineTuneAll(e, steps=3),
        lambda e: FineTuneAll(e, head="cosine", steps=3, init="random", seed=1),
    ],
)
def test_transfer_methods_give_logits_keep_the_encoder_and_are_deterministic(make):
    encoder = tiny_encoder()
    encoder.train()  # even in training mode, adaptation must not touch the stored encoder
    before = snapshot(encoder)
    method = make(encoder)
    episode = image_episode()
    first = method(episode)
    assert first.shape == (9, 3) and torch.isfinite(first).all()
    assert same(before, snapshot(encoder))
    assert torch.equal(first, method(episode))
    # The shared evaluator runs them in eval mode under no_grad; they adapt inside enable_grad,
    # so it scores exactly the logits of a direct call in eval mode.
    with torch.no_grad():
        assert torch.equal(method(episode), first)
    images = class_images(6, 10)
    episodes = itertools.islice(EpisodeSampler(images, way=3, shot=2, queries=3, seed=0), 2)
    method.eval()
    expected = sum(accuracy(method(e), e.query_y) for e in episodes) / 2
    method.train()
    sampler = EpisodeSampler(images, way=3, shot=2, queries=3, seed=0)
    scored = few_shot(method, sampler, episodes=2, progress=False).mean
    assert scored == pytest.approx(expected, abs=1e-6)  # float32 per-episode accuracies
    assert same(before, snapshot(encoder))


def test_fine_tune_head_from_prototypes_with_no_step_is_protonet():
    episode = toy_features(way=3, shot=4, queries=5)
    logits = FineTuneHead(None, init="prototypes", steps=0)(episode)
    centres = torch.stack([episode.support_x[episode.support_y == k].mean(0) for k in range(3)])
    protonet = -(torch.cdist(episode.query_x, centres) ** 2)
    difference = logits - protonet  # = ||f(x)||², the same for every class of a query
    assert torch.allclose(difference, difference[:, :1].expand_as(difference), atol=1e-4)


def test_fine_tune_all_adapts_only_the_trainable_layers():
    encoder = freeze_up_to(tiny_encoder(), 1)
    method = FineTuneAll(encoder, steps=3, lr=0.1)
    params, head = method.adapt(image_episode())
    original = dict(encoder.named_parameters())
    for name, value in params.items():
        changed = not torch.equal(value, original[name])
        assert changed == name.startswith("encoder.1."), name
    assert head["weight"].shape == (3, 16)
    with pytest.raises(ValueError, match="head="):
        FineTuneAll(encoder, head="mlp")
    with pytest.raises(ValueError, match="init="):
        FineTuneHead(None, init="zeros")


# ----------------------------------------------------------------------- task similarity


def domain_episodes(kind: str, seed: int, n: int = 3) -> list[Episode]:
    """`n` 3-way 3-shot tasks over the SAME 3 classes of one synthetic distribution: "blobs"
    (a bright 4×4 square per class) or "texture" (random binary pixels everywhere)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "blobs":
        templates = torch.zeros(3, 1, 8, 8)
        for c in range(3):
            i, j = torch.randint(0, 5, (2,), generator=g).tolist()
            templates[c, 0, i : i + 4, j : j + 4] = 1
    else:
        templates = (torch.rand(3, 1, 8, 8, generator=g) > 0.5).float()
    noise = 0.1 * torch.randn(3, 10, 8, 8, generator=g)
    images = ((templates + noise).clamp(0, 1) * 255).to(torch.uint8)
    return list(EpisodeSampler(images, way=3, shot=3, queries=2, seed=seed).take(n))


@pytest.mark.parametrize("embed", [feature_statistics, fisher_embedding])
def test_task_embeddings_separate_domains_and_pick_the_nearest_source(embed):
    probe = tiny_encoder(seed=1)
    a = [embed(probe, e) for e in domain_episodes("blobs", seed=0)]
    b = [embed(probe, e) for e in domain_episodes("texture", seed=1)]
    # Two tasks from the same classes are closer than tasks from different distributions.
    for task, kin, other in ((a[0], a[1:], b), (b[0], b[1:], a)):
        assert (
            task_distance(task, torch.stack(kin)).max()
            < task_distance(task, torch.stack(other)).min()
        )
    sources = torch.stack([torch.stack(a[:2]).mean(0), torch.stack(b[:2]).mean(0)])
    assert nearest_source(a[2], sources) == 0
    assert nearest_source(b[2], sources) == 1
    assert nearest_source(b[2], sources, metric="euclidean") == 1


def test_fisher_embedding_has_one_entry_per_filter_and_distances_check_inputs():
    probe = tiny_encoder()
    episode = domain_episodes("texture", seed=0, n=1)[0]
    assert fisher_embedding(probe, episode).shape == (8,)  # 2 conv layers × 4 filters
    full = fisher_embedding(probe, episode, per_filter=False)
    assert full.shape == (4 * 1 * 9 + 4 * 4 * 9,) and (full >= 0).all()
    with pytest.raises(ValueError, match="metric"):
        task_distance(full, full[None], metric="kl")
    with pytest.raises(ValueError, match="sizes"):
        task_distance(full, full[None, :5])
    with pytest.raises(ValueError, match="expected"):
        nearest_source(full[None], full[None])
