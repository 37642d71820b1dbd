"""SinusoidTasks: MAML's sine-wave regression tasks."""

import math

import pytest
import torch

from metalearn_course.data.sinusoid import SinusoidBatch, SinusoidTasks, sinusoid


def test_shapes_dtypes_and_default_ranges():
    batch = SinusoidTasks(seed=0).sample(n_tasks=500, shots=10, queries=7)
    assert batch.support_x.shape == batch.support_y.shape == (500, 10, 1)
    assert batch.query_x.shape == batch.query_y.shape == (500, 7, 1)
    assert batch.amplitude.shape == batch.phase.shape == (500,)
    tensors = (batch.support_x, batch.query_y, batch.amplitude, batch.phase)
    assert all(t.dtype == torch.float32 for t in tensors)
    assert 0.1 <= batch.amplitude.min() and batch.amplitude.max() <= 5.0
    assert 0.0 <= batch.phase.min() and batch.phase.max() <= math.pi
    x = torch.cat([batch.support_x, batch.query_x], dim=1)
    assert -5.0 <= x.min() and x.max() <= 5.0
    # 500 tasks spread over the whole range, not stuck in a corner of it.
    assert batch.amplitude.min() < 0.5 and batch.amplitude.max() > 4.6


def test_targets_are_a_sin_x_minus_phase():
    batch = SinusoidTasks(seed=1).sample(n_tasks=8, shots=5, queries=5)
    a, phi = batch.amplitude[:, None, None].double(), batch.phase[:, None, None].double()
    for x, y in ((batch.support_x, batch.support_y), (batch.query_x, batch.query_y)):
        expected = a * torch.sin(x.double() - phi)  # minus: positive phase shifts right
        torch.testing.assert_close(y.double(), expected, atol=1e-5, rtol=1e-5)


def test_reproducible_and_seed_dependent():
    a, b = SinusoidTasks(seed=3), SinusoidTasks(seed=3)
    for _ in range(3):  # the whole sequence of batches, not just the first
        first, second = a.sample(4, 5, 5), b.sample(4, 5, 5)
        assert torch.equal(first.support_x, second.support_x)
        assert torch.equal(first.query_y, second.query_y)
        assert torch.equal(first.amplitude, second.amplitude)
    other = SinusoidTasks(seed=4).sample(4, 5, 5)
    assert not torch.equal(SinusoidTasks(seed=3).sample(4, 5, 5).amplitude, other.amplitude)


def test_custom_ranges_and_curves():
    tasks = SinusoidTasks(amplitude_range=(2.0, 2.0), phase_range=(0.0, 0.0), x_range=(0, 1))
    batch = tasks.sample(n_tasks=3, shots=4, queries=0)
    assert torch.all(batch.amplitude == 2.0) and torch.all(batch.phase == 0.0)
    assert batch.query_x.shape == (3, 0, 1)
    assert 0.0 <= batch.support_x.min() and batch.support_x.max() <= 1.0
    x, y = batch.curves(points=50)
    assert x.shape == (50,) and y.shape == (3, 50)
    assert x[0] == -5.0 and x[-1] == 5.0
    torch.testing.assert_close(y[0], 2.0 * torch.sin(x))
    torch.testing.assert_close(sinusoid(x, batch.amplitude[1], batch.phase[1]), y[1])
    assert isinstance(batch, SinusoidBatch)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"n_tasks": 0}, "n_tasks"), ({"shots": 0}, "shots"), ({"queries": -1}, "queries")],
)
def test_bad_sample_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        SinusoidTasks().sample(**({"n_tasks": 2, "shots": 5, "queries": 5} | kwargs))


@pytest.mark.parametrize("name", ["amplitude_range", "phase_range", "x_range"])
def test_bad_ranges(name):
    with pytest.raises(ValueError, match=name):
        SinusoidTasks(**{name: (1.0, -1.0)})
    with pytest.raises(ValueError, match=name):
        SinusoidTasks(**{name: (0.0, math.inf)})
    with pytest.raises(ValueError, match="points"):
        SinusoidTasks().sample(1, 1, 1).curves(points=1)
