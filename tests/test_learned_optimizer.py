"""The learned optimizer (Andrychowicz et al. 2016): shapes, coordinate-wise weight sharing, the
paper's preprocessing, detached inner gradients, that meta-training helps, and input checks.

Everything runs on small quadratics with short horizons, so the file takes seconds on a CPU.
"""

import math

import pytest
import torch

from metalearn_course.gradient.learned_optimizer import (
    LR_GRID,
    LSTMOptimizer,
    MetaTrainConfig,
    Quadratics,
    hand_designed,
    meta_train,
    optimize,
    preprocess_gradients,
    tune_baselines,
    unroll,
)


@pytest.fixture(autouse=True)
def one_thread():
    """The tensors here are tiny ([coordinates, 20]): extra threads only add synchronisation,
    and on a busy machine waiting for a second core can make each step 100x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def lstm(seed: int = 0, **kwargs) -> LSTMOptimizer:
    torch.manual_seed(seed)
    return LSTMOptimizer(**kwargs)


def test_shapes():
    optimizer = lstm()
    grad = torch.randn(3, 4)
    state = optimizer.initial_state(grad.numel())
    assert [tuple(t.shape) for layer in state for t in layer] == [(12, 20)] * 4
    update, new_state = optimizer(grad, state)
    assert update.shape == grad.shape
    assert [tuple(t.shape) for layer in new_state for t in layer] == [(12, 20)] * 4
    assert preprocess_gradients(grad).shape == (3, 4, 2)

    functions = Quadratics.sample(5, dim=10, seed=0)
    assert functions.W.shape == (5, 10, 10) and functions.theta0.shape == (5, 10)
    assert functions.loss(functions.theta0).shape == (5,)
    for optimizer_fn in (optimizer.rule, hand_designed("Adam", 0.1)):
        losses = optimize(optimizer_fn, functions, steps=7)
        assert losses.shape == (8, 5)
        torch.testing.assert_close(losses[0], functions.loss(functions.theta0))


def test_quadratic_loss_is_the_formula():
    functions = Quadratics.sample(3, dim=4, seed=1)
    theta = torch.randn(3, 4)
    rows = zip(functions.W, theta, functions.y, strict=True)
    expected = torch.stack([((W @ t - y) ** 2).sum() for W, t, y in rows])
    torch.testing.assert_close(functions.loss(theta), expected)


@pytest.mark.parametrize("coordinates", [1, 7, 300])
def test_lstm_is_coordinatewise(coordinates):
    """Shared weights, separate states: permuting the coordinates permutes the updates, over
    several steps (so the hidden states travel with their coordinates), for any size."""
    optimizer = lstm()
    grads = torch.randn(3, coordinates)
    order = torch.randperm(coordinates, generator=torch.Generator().manual_seed(0))
    state = optimizer.initial_state(coordinates)
    permuted_state = optimizer.initial_state(coordinates)
    for grad in grads:
        update, state = optimizer(grad, state)
        permuted_update, permuted_state = optimizer(grad[order], permuted_state)
        torch.testing.assert_close(permuted_update, update[order])
    assert sum(p.numel() for p in optimizer.parameters()) < 6000  # independent of coordinates


def test_preprocessing_matches_the_paper():
    p = 10.0
    x = torch.tensor([2.0, -0.5, 1e-3, -1e-4, 3e-5, -1e-7, 0.0], dtype=torch.float64)
    expected = []
    for value in x.tolist():
        if abs(value) >= math.exp(-p):  # (log|∇| / p, sgn ∇)
            expected.append([math.log(abs(value)) / p, math.copysign(1.0, value)])
        else:  # (-1, e^p ∇)
            expected.append([-1.0, math.exp(p) * value])
    assert sum(abs(v) >= math.exp(-p) for v in x.tolist()) == 4  # both branches are exercised
    torch.testing.assert_close(preprocess_gradients(x, p), torch.tensor(expected).double())
    # The two branches meet at |∇| = e^{-p}: the encoding is continuous there.
    edge = torch.tensor([math.exp(-p) * 0.999999, math.exp(-p)], dtype=torch.float64)
    out = preprocess_gradients(edge, p)
    torch.testing.assert_close(out[0], out[1], atol=1e-5, rtol=0)
    # Another p, and the log branch of a large gradient.
    torch.testing.assert_close(
        preprocess_gradients(torch.tensor([100.0, -1e-3]), p=2.0),
        torch.tensor([[math.log(100.0) / 2, 1.0], [-1.0, -1e-3 * math.exp(2.0)]]),
    )


def meta_gradient(optimizer, functions, second_order: bool, steps: int = 5) -> torch.Tensor:
    """A hand-written unroll with the analytic gradient ∇f = 2 Wᵀ(Wθ - y): detached (the
    paper's first-order meta-gradient) or not (the full second-order one)."""
    theta = functions.theta0
    state = optimizer.initial_state(theta.numel())
    meta_loss = 0.0
    for _ in range(steps):
        source = theta if second_order else theta.detach()
        residual = (functions.W @ source[..., None])[..., 0] - functions.y
        grad = 2 * (functions.W.transpose(1, 2) @ residual[..., None])[..., 0]
        update, state = optimizer(grad, state)
        theta = theta + update
        meta_loss = meta_loss + functions.loss(theta).mean()
    return torch.cat([g.flatten() for g in torch.autograd.grad(meta_loss, optimizer.parameters())])


def test_inner_gradients_are_detached():
    """unroll's meta-gradient is the first-order one: equal to the hand-written unroll with
    detached gradients, and different from the second-order one (so the check has teeth)."""
    # float64, so that rounding cannot be mistaken for (or hide) the second-order term.
    optimizer = lstm(output_scale=1.0).double()
    sample = Quadratics.sample(4, dim=3, seed=2)
    functions = Quadratics(sample.W.double(), sample.y.double(), sample.theta0.double())
    theta = functions.theta0
    meta_loss, _, _ = unroll(optimizer, functions, theta, optimizer.initial_state(12), 5)
    ours = torch.cat([g.flatten() for g in torch.autograd.grad(meta_loss, optimizer.parameters())])
    first_order = meta_gradient(optimizer, functions, second_order=False)
    torch.testing.assert_close(ours, first_order, rtol=1e-10, atol=1e-12)
    second_order = meta_gradient(optimizer, functions, second_order=True)
    # Small but real: float64 rounding is ~1e-15 relative, the difference ~1e-4.
    assert (ours - second_order).norm() > 1e-6 * second_order.norm()


def held_out_meta_loss(optimizer: LSTMOptimizer, horizon: int = 40) -> float:
    losses = optimize(optimizer.rule, Quadratics.sample(64, seed=12345), horizon)
    return losses[1:].mean().item()


def test_meta_training_lowers_held_out_meta_loss():
    optimizer = lstm()
    before = held_out_meta_loss(optimizer)
    config = MetaTrainConfig(runs=30, functions=16, horizon=40, unroll=10, val_every=10)
    history = meta_train(optimizer, config)
    after = held_out_meta_loss(optimizer)
    assert len(history.meta_loss) == 30 and history.val_run == [10, 20, 30]
    assert history.best_run in history.val_run
    assert after < 0.5 * before, (before, after)
    assert all(math.isfinite(v) for v in history.meta_loss)


def test_meta_training_is_deterministic():
    config = MetaTrainConfig(runs=3, functions=4, horizon=10, unroll=5, val_every=2)
    first, second = lstm(), lstm()
    h1, h2 = meta_train(first, config), meta_train(second, config)
    assert h1 == h2
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_meta_training_restores_the_best_validated_optimizer():
    """The validation functions are the first draw from seed=config.seed, and the returned
    optimizer is the one with the lowest validation meta-loss, not the last one."""
    config = MetaTrainConfig(
        runs=6, functions=4, horizon=10, unroll=5, val_every=1, val_functions=8, meta_lr=0.3
    )
    optimizer = lstm()
    history = meta_train(optimizer, config)
    assert history.best_run < config.runs  # a too-large meta_lr: the last run is not the best
    val_set = Quadratics.sample(8, seed=config.seed)
    val_loss = optimize(optimizer.rule, val_set, config.horizon)[1:].mean().item()
    assert val_loss == pytest.approx(min(history.val_loss), rel=1e-6)
    assert history.best_run == history.val_run[history.val_loss.index(min(history.val_loss))]


def test_hand_designed_matches_torch_optim():
    functions = Quadratics.sample(6, seed=3)
    losses = optimize(hand_designed("RMSprop", 0.01), functions, steps=10)
    theta = functions.theta0.clone().requires_grad_(True)
    reference = torch.optim.RMSprop([theta], lr=0.01)
    for _ in range(10):
        reference.zero_grad()
        functions.loss(theta).sum().backward()
        reference.step()
    torch.testing.assert_close(losses[-1], functions.loss(theta).detach(), rtol=1e-4, atol=1e-5)
    # SGD's update is -lr ∇ exactly.
    grad = torch.randn(6, 10)
    torch.testing.assert_close(hand_designed("SGD", 0.1)(functions.theta0)(grad), -0.1 * grad)


def test_tune_baselines_picks_a_converging_rate_from_the_grid():
    functions = Quadratics.sample(16, seed=4)
    grid = (1e-4, 1e-2, 10.0)  # too small, fine, divergent for SGD
    best = tune_baselines(functions, steps=20, grid=grid, names=("SGD", "Adam"))
    assert set(best) == {"SGD", "Adam"} and best["SGD"] == 1e-2
    assert all(lr in grid for lr in best.values()) and min(LR_GRID) <= 1e-4


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unroll=30 > horizon=20"):
        MetaTrainConfig(horizon=20, unroll=30)
    with pytest.raises(ValueError, match="runs=0"):
        MetaTrainConfig(runs=0)
    with pytest.raises(ValueError, match="meta_lr"):
        MetaTrainConfig(meta_lr=0.0)
    with pytest.raises(ValueError, match="val_every"):
        MetaTrainConfig(val_every=-1)
    functions = Quadratics.sample(2, seed=0)
    with pytest.raises(ValueError, match="steps=0"):
        optimize(hand_designed("SGD", 0.1), functions, steps=0)
    with pytest.raises(ValueError, match="name='Adagrad'"):
        hand_designed("Adagrad", 0.1)
    with pytest.raises(ValueError, match="lr=-1"):
        hand_designed("SGD", -1.0)
    with pytest.raises(ValueError, match="grid is empty"):
        tune_baselines(functions, grid=())
    with pytest.raises(ValueError, match="p=0"):
        preprocess_gradients(torch.ones(3), p=0.0)
    with pytest.raises(ValueError, match="hidden=0"):
        LSTMOptimizer(hidden=0)
    with pytest.raises(ValueError, match="n=0"):
        Quadratics.sample(0, seed=0)
    optimizer = lstm()
    with pytest.raises(ValueError, match=r"initial_state\(grad.numel\(\)\)"):
        optimizer(torch.ones(5), optimizer.initial_state(4))
