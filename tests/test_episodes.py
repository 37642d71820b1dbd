"""EpisodeSampler: shapes, label remapping, fairness, reproducibility and input checks.

The synthetic images encode where they came from: pixel (0, 0) holds the class index and pixel
(0, 1) the image ("drawer") index within its class, so every test can tell exactly which image
the sampler picked.
"""

import itertools

import numpy as np
import pytest
import torch

from metalearn_course.data.episodes import Episode, EpisodeBatch, EpisodeSampler, stack_episodes


def coded_images(n_classes: int = 30, n_per_class: int = 20, size: int = 6) -> torch.Tensor:
    images = torch.zeros(n_classes, n_per_class, size, size, dtype=torch.uint8)
    images[:, :, 0, 0] = torch.arange(n_classes)[:, None]
    images[:, :, 0, 1] = torch.arange(n_per_class)[None, :]
    return images


def decode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(class, drawer) of each image in a float batch [M, 1, H, W]."""
    pixels = (x[:, 0, 0, :2] * 255).round().long()
    return pixels[:, 0], pixels[:, 1]


def same(a: Episode, b: Episode) -> bool:
    fields = ("support_x", "support_y", "query_x", "query_y", "classes")
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in fields)


def test_shapes_dtypes_and_properties():
    episode = EpisodeSampler(coded_images(), way=5, shot=2, queries=3).sample()
    assert episode.support_x.shape == (10, 1, 6, 6)
    assert episode.query_x.shape == (15, 1, 6, 6)
    assert episode.support_x.dtype == episode.query_x.dtype == torch.float32
    assert episode.support_y.dtype == episode.query_y.dtype == episode.classes.dtype == torch.int64
    assert episode.classes.shape == (5,)
    assert 0.0 <= episode.support_x.min() and episode.support_x.max() <= 1.0
    assert (episode.way, episode.shot, episode.queries) == (5, 2, 3)
    # Class-major order: all shots of label 0, then label 1, ...
    assert episode.support_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert episode.query_y.tolist() == [i for i in range(5) for _ in range(3)]


def test_channels_float_and_numpy_inputs():
    color = torch.rand(8, 10, 3, 5, 5)
    episode = EpisodeSampler(color, way=4, shot=1, queries=2).sample()
    assert episode.support_x.shape == (4, 3, 5, 5)
    # Float images are used as they are (no /255): every support image is one of the inputs.
    for x, c in zip(episode.support_x, episode.classes, strict=True):
        assert any(torch.equal(x, image) for image in color[c])
    from_numpy = EpisodeSampler(coded_images().numpy(), way=5, shot=1, queries=1, seed=3)
    from_torch = EpisodeSampler(coded_images(), way=5, shot=1, queries=1, seed=3)
    assert same(from_numpy.sample(), from_torch.sample())


@pytest.mark.parametrize("n_classes", [30, 6])  # rejection sampling, and ranking random keys
def test_labels_point_to_the_right_classes_and_images_are_distinct(n_classes):
    sampler = EpisodeSampler(coded_images(n_classes), way=5, shot=2, queries=4, seed=1)
    for episode in sampler.take(300):
        assert len(set(episode.classes.tolist())) == 5, "a class repeated within an episode"
        seen = set()
        for x, y in ((episode.support_x, episode.support_y), (episode.query_x, episode.query_y)):
            cls, drawer = decode(x)
            # query_y[i] == c exactly when the image came from classes[c]
            assert torch.equal(cls, episode.classes[y])
            seen.update(zip(cls.tolist(), drawer.tolist(), strict=True))
        assert len(seen) == 5 * (2 + 4), "an image appears twice (e.g. in support and query)"


def test_same_seed_same_episodes_different_seed_different():
    images = coded_images()
    a, b = (EpisodeSampler(images, way=5, shot=1, queries=5, seed=7) for _ in range(2))
    # 600 episodes cross several internal blocks.
    assert all(same(x, y) for x, y in zip(a.take(600), b.take(600), strict=True))
    c = EpisodeSampler(images, way=5, shot=1, queries=5, seed=8)
    d = EpisodeSampler(images, way=5, shot=1, queries=5, seed=7)
    assert not all(same(x, y) for x, y in zip(c.take(20), d.take(20), strict=True))


def test_choices_do_not_depend_on_image_size_or_dtype():
    small = EpisodeSampler(coded_images(size=3), way=5, shot=1, queries=5, seed=2)
    large = EpisodeSampler(coded_images(size=9).float() / 255, way=5, shot=1, queries=5, seed=2)
    for a, b in zip(small.take(300), large.take(300), strict=True):
        assert torch.equal(a.classes, b.classes)
        assert torch.equal(decode(a.query_x)[1], decode(b.query_x)[1])


def test_one_stream_however_it_is_consumed():
    images = coded_images()
    make = lambda: EpisodeSampler(images, way=3, shot=2, queries=2, seed=5)  # noqa: E731
    one_by_one = make()
    singles = [one_by_one.sample() for _ in range(4)]
    batch = make().sample_batch(4)
    iterated = make()
    for _ in iterated:  # a `break` must not kill the sampler's stream
        break
    rest = list(iterated.take(3))
    assert same(stack_episodes(singles), batch)
    assert all(same(x, y) for x, y in zip(singles[1:], rest, strict=True))


def test_classes_labels_and_images_are_drawn_uniformly():
    # Fixed seed: the bounds are far beyond chance level, so this never flakes.
    n_classes, way, n = 20, 5, 4000
    sampler = EpisodeSampler(coded_images(n_classes), way=way, shot=1, queries=0, seed=0)
    counts = np.zeros((n_classes, way))  # class c given label i
    drawers = np.zeros(20)
    for episode in sampler.take(n):
        counts[episode.classes.numpy(), np.arange(way)] += 1
        drawers[decode(episode.support_x)[1].numpy()] += 1

    def chi2(observed: np.ndarray) -> float:
        expected = observed.sum() / observed.size
        return float(((observed - expected) ** 2 / expected).sum())

    assert chi2(counts.sum(axis=1)) < 19 * 3  # 19 degrees of freedom: mean 19, sd ~6
    assert chi2(counts) < 99 * 2  # every (class, label) pair equally likely
    assert chi2(drawers) < 19 * 3


def test_rare_large_way_falls_back_and_is_uniform():
    sampler = EpisodeSampler(coded_images(6), way=5, shot=1, queries=1, seed=0)
    counts = np.bincount(np.concatenate([e.classes.numpy() for e in sampler.take(1200)]))
    assert np.all(np.abs(counts - 1000) < 65)  # each class in 5/6 of the episodes; sd ~13


def test_zero_queries_gives_empty_query_set():
    episode = EpisodeSampler(coded_images(), way=5, shot=3, queries=0).sample()
    assert episode.query_x.shape == (0, 1, 6, 6) and episode.query_y.shape == (0,)
    assert episode.queries == 0


def test_stack_episodes_and_to():
    sampler = EpisodeSampler(coded_images(), way=5, shot=1, queries=3)
    batch = sampler.sample_batch(4)
    assert batch.support_x.shape == (4, 5, 1, 6, 6)
    assert batch.query_y.shape == (4, 15) and batch.classes.shape == (4, 5)
    assert (batch.way, batch.shot, batch.queries) == (5, 1, 3)
    moved = batch.to("meta")  # a device every machine has: no GPU needed
    assert isinstance(moved, EpisodeBatch)
    tensors = (moved.support_x, moved.support_y, moved.query_x, moved.query_y, moved.classes)
    assert all(t.device.type == "meta" for t in tensors)
    assert same(batch.to("cpu"), batch)
    with pytest.raises(ValueError, match="episodes"):
        stack_episodes([])


def test_an_episode_batch_indexes_slices_and_iterates():
    """EpisodeBatch is the one way a meta-batch is indexed and sliced (the trainer's task
    groups and DDP's shards use it): episode i, a slice of episodes, the episodes in order."""
    sampler = EpisodeSampler(coded_images(), way=5, shot=2, queries=3, seed=1)
    singles = list(EpisodeSampler(coded_images(), way=5, shot=2, queries=3, seed=1).take(6))
    batch = sampler.sample_batch(6)
    assert len(batch) == 6
    assert isinstance(batch[2], Episode) and same(batch[2], singles[2])
    assert same(batch[-1], singles[5])
    part = batch[1:4]
    assert isinstance(part, EpisodeBatch) and len(part) == 3
    assert same(part, stack_episodes(singles[1:4]))
    assert part.support_x.data_ptr() == batch.support_x[1].data_ptr()  # a view, no copy
    assert all(same(a, b) for a, b in zip(batch, singles, strict=True))
    batch.validate_tasks()  # six valid episodes


def test_a_batch_is_not_one_episode_and_its_episodes_are_checked():
    """A method that takes one Episode and is given a whole batch says so; a batch whose
    fields disagree on the number of episodes, or holds a bad episode, is named."""
    from metalearn_course.metric import ProtoNet
    from metalearn_course.nets import Conv4

    batch = EpisodeSampler(coded_images(), way=5, shot=1, queries=2).sample_batch(3)
    sx, sy, qx, qy, c = (
        batch.support_x,
        batch.support_y,
        batch.query_x,
        batch.query_y,
        batch.classes,
    )
    with pytest.raises(ValueError, match=r"EpisodeBatch of 3 episodes .* one Episode"):
        ProtoNet(Conv4(hidden=4, blocks=1))(batch)
    with pytest.raises(ValueError, match="same leading number of episodes"):
        EpisodeBatch(sx, sy[:2], qx, qy, c).validate_tasks()
    bad = qy.clone()
    bad[1, 0] = 7
    with pytest.raises(ValueError, match="labels outside"):
        EpisodeBatch(sx, sy, qx, bad, c).validate_tasks()
    with pytest.raises(ValueError, match="stack_episodes"):  # stacked tensors in an Episode
        Episode(sx, sy, qx, qy, c).validate()


def test_episodes_do_not_share_memory():
    sampler = EpisodeSampler(coded_images(), way=5, shot=1, queries=3, seed=2)
    first, second = sampler.sample(), sampler.sample()
    before = second.support_y.clone(), second.support_x.clone()
    first.support_y += 1  # a student's in-place edit must not leak into the next episode
    first.support_x.zero_()
    assert torch.equal(second.support_y, before[0]) and torch.equal(second.support_x, before[1])


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"way": 0}, "way"),
        ({"way": 31}, "way"),
        ({"shot": 0}, "shot"),
        ({"queries": -1}, "queries"),
        ({"shot": 5, "queries": 16}, r"shot \+ queries"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, argument):
    settings = {"way": 5, "shot": 1, "queries": 1} | kwargs
    with pytest.raises(ValueError, match=argument):
        EpisodeSampler(coded_images(30, 20), **settings)


def test_bad_images_and_counts():
    with pytest.raises(ValueError, match="images has shape"):
        EpisodeSampler(torch.zeros(5, 20, 28, dtype=torch.uint8), way=2, shot=1, queries=1)
    with pytest.raises(ValueError, match=r"images\.dtype"):
        EpisodeSampler(torch.zeros(5, 20, 4, 4, dtype=torch.int64), way=2, shot=1, queries=1)
    with pytest.raises(TypeError, match="images"):
        EpisodeSampler([[0]], way=2, shot=1, queries=1)  # type: ignore[arg-type]
    sampler = EpisodeSampler(coded_images(), way=5, shot=1, queries=1)
    with pytest.raises(ValueError, match="n=0"):
        sampler.sample_batch(0)
    with pytest.raises(ValueError, match="n=-1"):
        sampler.take(-1)
    assert len(list(sampler.take(0))) == 0
    assert len(list(itertools.islice(sampler, 3))) == 3
