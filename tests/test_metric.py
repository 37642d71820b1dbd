"""Metric learners: shapes, the equations' invariants, input checks, and that they learn.

Synthetic data: class c is a bright 7×7 blob in cell c of a 4×3 grid, on uniform noise, so a
tiny network separates the classes within a few steps. Networks are narrow (16 channels) to
keep the whole file fast on a CPU.
"""

import pytest
import torch
import torch.nn.functional as F
from helpers import blob_images
from torch import nn

from metalearn_course.data.episodes import Episode, EpisodeSampler
from metalearn_course.metric import MatchingNet, ProtoNet, RelationNet, SiameseNet
from metalearn_course.metric.matching import cosine_attention
from metalearn_course.metric.protonet import linear_classifier_weights, prototypes
from metalearn_course.metric.relation import relation_encoder, relation_loss
from metalearn_course.metric.siamese import pair_bce
from metalearn_course.nets import Conv4
from metalearn_course.train import fit

WIDTH = 16


def make(name: str) -> torch.nn.Module:
    """A narrow version of each method (seeded, so every test sees the same weights)."""
    torch.manual_seed(0)
    if name == "proto":
        return ProtoNet(Conv4(hidden=WIDTH))
    if name == "matching":
        return MatchingNet(Conv4(hidden=WIDTH))
    if name == "relation":
        return RelationNet(channels=WIDTH)
    return SiameseNet(Conv4(hidden=WIDTH), embedding_dim=WIDTH)


METHODS = ["proto", "matching", "relation", "siamese"]


def episode(way: int = 5, shot: int = 1, queries: int = 3, seed: int = 0) -> Episode:
    return EpisodeSampler(blob_images(), way, shot, queries, seed=seed).sample()


def shuffled_support(e: Episode, seed: int = 1) -> Episode:
    order = torch.randperm(len(e.support_y), generator=torch.Generator().manual_seed(seed))
    return Episode(e.support_x[order], e.support_y[order], e.query_x, e.query_y, e.classes)


def test_siamese_all_pairs_by_cdist_equal_the_broadcast_form():
    torch.manual_seed(0)
    model = SiameseNet(nn.Identity(), embedding_dim=7).double()
    with torch.no_grad():  # both signs of α, so both cdist terms matter
        model.l1_weights.weight.copy_(torch.linspace(-1, 1, 7)[None])
    queries = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    support = torch.randn(3, 7, dtype=torch.float64, requires_grad=True)
    fast = model.all_pair_logits(queries, support)
    slow = model.pair_logit(queries[:, None, :], support[None, :, :])
    torch.testing.assert_close(fast, slow)
    weights = torch.randn(5, 3, dtype=torch.float64)  # and the same gradients
    grads = [
        torch.autograd.grad((out * weights).sum(), (queries, support, model.l1_weights.weight))
        for out in (fast, slow)
    ]
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize(("way", "shot"), [(5, 1), (3, 2)])
def test_output_shape_and_dtype(name, way, shot):
    e = episode(way, shot, queries=4)
    out = make(name)(e)
    assert out.shape == (way * 4, way)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", METHODS)
def test_support_order_does_not_matter(name):
    model = make(name).eval()  # eval: batch norm uses running statistics, not the batch's
    e = episode(3, 2)
    with torch.no_grad():
        torch.testing.assert_close(model(shuffled_support(e)), model(e))


def test_prototypes_are_class_means_in_any_order():
    embeddings = torch.randn(6, 4, dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    expected = embeddings.view(3, 2, 4).mean(dim=1)
    torch.testing.assert_close(prototypes(embeddings, labels, 3), expected)
    order = torch.tensor([5, 2, 0, 3, 1, 4])
    torch.testing.assert_close(prototypes(embeddings[order], labels[order], 3), expected)
    with pytest.raises(ValueError, match=r"class\(es\) \[2\]"):
        prototypes(embeddings[:4], labels[:4], 3)
    with pytest.raises(ValueError, match="labels"):
        prototypes(embeddings, labels[:5], 3)


def test_protonet_is_a_linear_classifier():
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(7, 5, dtype=torch.float64, generator=generator)
    centres = torch.randn(3, 5, dtype=torch.float64, generator=generator)
    distance_logits = -(torch.cdist(features, centres) ** 2)
    w, b = linear_classifier_weights(centres)
    linear_logits = features @ w.T + b
    # They differ by -||f(x)||², the same for every class of a query...
    difference = distance_logits - linear_logits
    torch.testing.assert_close(difference, -(features**2).sum(1, keepdim=True).expand(-1, 3))
    # ...so the class probabilities are identical.
    torch.testing.assert_close(distance_logits.softmax(1), linear_logits.softmax(1))

    # The same through the module, in float64: logits = linear layer on the query embeddings.
    model = make("proto").double().eval()
    e = episode(5, 2)
    e = Episode(e.support_x.double(), e.support_y, e.query_x.double(), e.query_y, e.classes)
    with torch.no_grad():
        w, b = linear_classifier_weights(prototypes(model.encoder(e.support_x), e.support_y, 5))
        linear = model.encoder(e.query_x) @ w.T + b
        torch.testing.assert_close(model(e).softmax(1), linear.softmax(1))


def test_protonet_cosine_and_bad_distance():
    model = ProtoNet(Conv4(hidden=WIDTH), distance="cosine")
    logits = model(episode())
    assert (logits.abs() <= 1 + 1e-6).all()
    with pytest.raises(ValueError, match="distance"):
        ProtoNet(distance="manhattan")


def test_matching_learned_scale_sharpens_but_keeps_the_ranking():
    plain = make("matching").eval()
    assert plain.log_scale is None and plain.scale == 1.0
    scaled = MatchingNet(plain.encoder, learn_scale=True).eval()
    assert scaled.log_scale.requires_grad and scaled.scale.item() == pytest.approx(10.0)
    e = episode(5, 1, queries=3)
    with torch.no_grad():
        a, b = plain.attention(e), scaled.attention(e)
    torch.testing.assert_close(b.sum(1), torch.ones(15))
    assert torch.equal(a.argmax(1), b.argmax(1))  # same favourite support image
    assert (b.amax(1) >= a.amax(1)).all()  # a scale > 1 sharpens the attention


def test_matching_attention_and_probabilities():
    model = make("matching")
    e = episode(3, 2, queries=4)
    attention = model.attention(e)
    assert attention.shape == (12, 6)
    torch.testing.assert_close(attention.sum(1), torch.ones(12))
    probabilities = model(e).exp()
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    torch.testing.assert_close(probabilities.sum(1), torch.ones(12))
    # With K > 1 a class's probability sums the attention over all its shots.
    torch.testing.assert_close(probabilities, attention.view(12, 3, 2).sum(-1))
    # Cross-entropy of the logits is the NLL of the paper's prediction ŷ.
    nll = -probabilities[torch.arange(12), e.query_y].log().mean()
    torch.testing.assert_close(F.cross_entropy(model(e), e.query_y), nll)
    torch.testing.assert_close(
        cosine_attention(torch.ones(2, 3), torch.ones(4, 3)), torch.full((2, 4), 0.25)
    )


def test_one_shot_matching_equals_cosine_protonet():
    matching = make("matching").eval()
    proto = ProtoNet(matching.encoder, distance="cosine").eval()
    e = episode(5, 1)
    with torch.no_grad():
        torch.testing.assert_close(matching(e), proto(e).log_softmax(1))


def test_relation_scores_and_loss():
    assert relation_encoder()(torch.zeros(2, 1, 28, 28)).shape == (2, 64, 7, 7)
    assert relation_encoder(padded=False)(torch.zeros(2, 1, 28, 28)).shape == (2, 64, 5, 5)
    small = RelationNet(channels=WIDTH, map_size=5)  # the authors' unpadded Omniglot encoder
    assert small(episode(3, 2, queries=4)).shape == (12, 3)
    model = make("relation")
    e = episode(3, 2, queries=4)
    scores = model(e)
    assert ((scores >= 0) & (scores <= 1)).all()
    target = F.one_hot(e.query_y, 3).float()
    torch.testing.assert_close(model.loss(scores, e), ((scores - target) ** 2).mean())
    torch.testing.assert_close(relation_loss(scores, e.query_y), model.loss(scores, e))
    with pytest.raises(ValueError, match="map_size"):
        RelationNet(channels=WIDTH, map_size=9)(e)  # the encoder makes 7×7 maps
    with pytest.raises(ValueError, match="map_size"):
        RelationNet(map_size=3)


def test_relation_class_map_mean_is_sum_over_k():
    torch.manual_seed(0)
    summed = RelationNet(channels=WIDTH).eval()
    averaged = RelationNet(summed.encoder, channels=WIDTH, class_map="mean").eval()
    averaged.relation = summed.relation
    one, three = episode(3, 1, queries=2), episode(3, 3, queries=2)
    with torch.no_grad():
        torch.testing.assert_close(summed(one), averaged(one))  # K = 1: the same
        maps = summed.encoder(three.support_x).view(3, 3, WIDTH, 7, 7)  # class-major support
        queries = summed.encoder(three.query_x)
        torch.testing.assert_close(
            averaged(three), summed.relation_scores(maps.mean(dim=1), queries)
        )
    with pytest.raises(ValueError, match="class_map"):
        RelationNet(class_map="max")


@pytest.mark.parametrize("train_mode", [False, True])
def test_relation_split_convolution_equals_concatenated_pairs(train_mode):
    """relation_scores never builds the concatenated pairs; it must equal the module run on them
    (in train mode too, where batch norm normalises over all pairs)."""
    model = make("relation").train(train_mode)
    class_maps, queries = torch.randn(3, WIDTH, 7, 7), torch.randn(4, WIDTH, 7, 7)
    pairs = torch.cat(
        [class_maps[None].expand(4, -1, -1, -1, -1), queries[:, None].expand(-1, 3, -1, -1, -1)],
        dim=2,
    ).flatten(0, 1)
    expected = model.relation(pairs).view(4, 3)
    torch.testing.assert_close(model.relation_scores(class_maps, queries), expected)


def test_siamese_verifier_and_l1_weights():
    model = make("siamese")
    e = episode(5, 1)
    p = model.verify(e.query_x, e.query_x.flip(0))
    assert p.shape == (15,)
    assert ((p >= 0) & (p <= 1)).all()
    # The weighted L1 distance is learnable: it gets gradients and moves with the optimizer.
    alpha = model.l1_weights.weight
    assert alpha.requires_grad
    before = alpha.detach().clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.pair_loss(e).backward()
    assert alpha.grad.abs().sum() > 0
    optimizer.step()
    assert not torch.equal(alpha.detach(), before)
    with pytest.raises(ValueError, match="x2"):
        model.verify(e.query_x, e.support_x)


def test_siamese_logits_are_best_shot_pairs_and_losses_agree():
    model = make("siamese")
    e = episode(3, 2, queries=2)
    pairs = model.pair_logits(e)  # [6, 6], support class-major
    torch.testing.assert_close(model(e), pairs.view(6, 3, 2).amax(-1))
    # pair_loss: all query × support pairs, positives weighted by #negative / #positive.
    same = (e.query_y[:, None] == e.support_y[None, :]).float()
    expected = F.binary_cross_entropy_with_logits(pairs, same, pos_weight=torch.tensor(2.0))
    torch.testing.assert_close(model.pair_loss(e), expected)
    # One shot: the class logits are all the pairs, so the trainer's loss is the pair loss.
    e1 = episode(5, 1)
    torch.testing.assert_close(model.loss(model(e1), e1), model.pair_loss(e1))
    with pytest.raises(ValueError, match="same"):
        pair_bce(torch.zeros(3), torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="embedding_dim"):
        SiameseNet(Conv4(hidden=WIDTH), embedding_dim=64)(e)


@pytest.mark.parametrize("name", METHODS)
def test_training_loss_falls(name):
    model = make(name)
    sampler = EpisodeSampler(blob_images(), way=5, shot=1, queries=3, seed=0)
    history = fit(model, sampler, steps=30, log_every=1, progress=False)
    first, last = sum(history.loss[:5]) / 5, sum(history.loss[-5:]) / 5
    # 10%, not more: plain Matching Networks cannot go below log(1 + 4/e) ≈ 0.90 (matching.py).
    assert last < 0.9 * first, history.loss


def bad_episodes() -> dict[str, tuple[Episode, str]]:
    e = episode(3, 2, queries=2)
    sx, sy, qx, qy, c = e.support_x, e.support_y, e.query_x, e.query_y, e.classes
    return {
        "support rows": (Episode(sx[:5], sy, qx, qy, c), "support_x has 5 rows but support_y"),
        "query rows": (Episode(sx, sy, qx, qy[:-1], c), "query_x has 6 rows but query_y has 5"),
        "label range": (Episode(sx, sy + 1, qx, qy, c), "support_y holds labels outside 0..2"),
        "float labels": (Episode(sx, sy, qx, qy.float(), c), "query_y.dtype"),
        "missing class": (Episode(sx, sy.clamp(max=1), qx, qy, c), r"class\(es\) \[2\]"),
        "batched": (Episode(sx[None], sy[None], qx[None], qy[None], c[None]), "support_x"),
        "image shapes": (Episode(sx, sy, qx[..., :14], qy, c), "query_x images"),
    }


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("case", list(bad_episodes()))
def test_mismatched_episodes_raise(name, case):
    bad, message = bad_episodes()[case]
    with pytest.raises(ValueError, match=message):
        make(name)(bad)
