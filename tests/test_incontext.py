"""In-context learning: the masks hide what they must (the causal mask of the regressor, the
episode mask of the classifier), the baselines are the algorithms they claim to be (checked
against independent closed forms and a hand-worked example), the task streams are seeded, both
models' losses fall under train.fit, and bad input fails with a message naming it.

Synthetic data only: Gaussian linear tasks and 28×28 noise images with a class-specific blob.
Networks are tiny to keep the file fast.
"""

import math

import pytest
import torch
from torch import nn

from metalearn_course.data.episodes import Episode, EpisodeSampler
from metalearn_course.evaluate import few_shot
from metalearn_course.incontext import (
    InContextClassifier,
    InContextRegressor,
    LinearTasks,
    Prompts,
    SelfAttention,
    Transformer,
    averaging,
    causal_mask,
    episode_mask,
    gradient_step,
    least_squares,
    nearest_neighbours,
    pool_posterior,
    ridge,
    squared_error_by_points,
    squared_errors,
    tokens,
)
from metalearn_course.nets import Conv4
from metalearn_course.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")


def small_regressor(dim: int = 3, points: int = 6) -> InContextRegressor:
    torch.manual_seed(0)
    return InContextRegressor(dim, points, d_model=16, layers=2, heads=2).eval()


def small_classifier(way: int = 3) -> InContextClassifier:
    torch.manual_seed(0)
    return InContextClassifier(Conv4(hidden=8), feature_dim=8, way=way, d_model=16, heads=2)


def blob_images(n_classes: int = 10, n_per_class: int = 6) -> torch.Tensor:
    """uint8 [n_classes, n_per_class, 28, 28]: noise plus a class-specific 7×7 blob."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 60, (n_classes, n_per_class, 28, 28), generator=generator)
    for c in range(n_classes):
        row, col = divmod(c, 3)
        images[c, :, 7 * row : 7 * row + 7, 7 * col : 7 * col + 7] += 180
    return images.to(torch.uint8)


def noiseless_prompts(dim: int, points: int, batch: int) -> Prompts:
    """float64 prompts, ys computed in float64, so exact fits are exact to ~1e-12."""
    generator = torch.Generator().manual_seed(3)
    xs = torch.randn(batch, points, dim, generator=generator, dtype=torch.float64)
    w = torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    return Prompts(xs, torch.einsum("bnd,bd->bn", xs, w), w)


# --- the masks -------------------------------------------------------------------------------


def test_causal_mask_is_lower_triangular():
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool())


@pytest.mark.parametrize("i", [0, 2, 5])
def test_prediction_i_ignores_y_i_and_everything_after_x_i(i):
    model = small_regressor()
    prompts = LinearTasks(3, 6, 4, seed=0).sample()
    with torch.no_grad():
        before = model(prompts)
        xs, ys = prompts.xs.clone(), prompts.ys.clone()
        ys[:, i:] += 5 * torch.randn_like(ys[:, i:])  # its own target and all later ones
        xs[:, i + 1 :] += 5 * torch.randn_like(xs[:, i + 1 :])  # all later inputs
        after = model(Prompts(xs, ys, prompts.w))
    torch.testing.assert_close(after[:, : i + 1], before[:, : i + 1])
    if i < 5:
        assert not torch.allclose(after[:, i + 1 :], before[:, i + 1 :], atol=1e-4)


def test_prediction_i_reads_the_earlier_examples():
    """Not vacuous: an earlier y does reach prediction 2 (and never prediction 0)."""
    model = small_regressor()
    prompts = LinearTasks(3, 6, 4, seed=0).sample()
    with torch.no_grad():
        before = model(prompts)
        ys = prompts.ys.clone()
        ys[:, 0] += 5.0
        after = model(Prompts(prompts.xs, ys, prompts.w))
    torch.testing.assert_close(after[:, 0], before[:, 0])
    assert (after[:, 2] - before[:, 2]).abs().min() > 1e-4


def test_kept_attention_is_causal_and_normalised():
    model = small_regressor()
    model.transformer.keep_attention(True)
    with torch.no_grad():
        model(LinearTasks(3, 6, 4, seed=0).sample())
    maps = model.transformer.attention_maps()
    assert len(maps) == 2 and maps[0].shape == (4, 2, 12, 12)
    for weights in maps:
        assert torch.all(weights.triu(diagonal=1) == 0)
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(4, 2, 12))


def test_episode_mask():
    expected = torch.tensor(
        [[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1]], dtype=torch.bool
    )
    assert torch.equal(episode_mask(2, 2), expected)


def replaced(episode: Episode, *, support: int | None = None, query: int | None = None) -> Episode:
    """A copy of `episode` with one support or query image replaced by noise."""
    sx, qx = episode.support_x.clone(), episode.query_x.clone()
    if support is not None:
        sx[support] = torch.rand_like(sx[support])
    if query is not None:
        qx[query] = torch.rand_like(qx[query])
    return Episode(sx, episode.support_y, qx, episode.query_y, episode.classes)


def test_a_query_sees_the_supports_and_itself_only():
    model = small_classifier().eval()  # eval: batch norm no longer mixes the images
    episode = EpisodeSampler(blob_images(), way=3, shot=2, queries=2, seed=0).sample()
    with torch.no_grad():
        logits = model(episode)
        other_query = model(replaced(episode, query=1))
        support = model(replaced(episode, support=0))
    assert logits.shape == (6, 3)
    torch.testing.assert_close(other_query[0], logits[0])
    torch.testing.assert_close(other_query[2:], logits[2:])
    assert not torch.allclose(other_query[1], logits[1], atol=1e-5)
    assert not torch.allclose(support[0], logits[0], atol=1e-5)


def test_the_classifier_ignores_the_order_of_the_supports():
    """No positional embedding: the support set is a set."""
    model = small_classifier().eval()
    episode = EpisodeSampler(blob_images(), way=3, shot=2, queries=2, seed=0).sample()
    order = torch.tensor([5, 0, 3, 1, 4, 2])
    shuffled = Episode(
        episode.support_x[order], episode.support_y[order], episode.query_x,
        episode.query_y, episode.classes,
    )  # fmt: skip
    with torch.no_grad():
        torch.testing.assert_close(model(shuffled), model(episode))


# --- the baselines ---------------------------------------------------------------------------


def test_least_squares_recovers_w_from_d_examples_and_not_before():
    dim = 4
    prompts = noiseless_prompts(dim, points=10, batch=64)
    error = (least_squares(prompts.xs, prompts.ys) - prompts.ys).abs()
    assert error[:, dim:].max() < 1e-5  # i >= d examples: the fit is exact
    assert torch.all(error[:, 1:dim].mean(dim=0) > 0.05)  # i < d: w is underdetermined
    assert torch.all(least_squares(prompts.xs, prompts.ys)[:, 0] == 0)


def ridge_by_svd(xs: torch.Tensor, ys: torch.Tensor, lam: float) -> torch.Tensor:
    """Ridge from the SVD X = U S Vᵀ: ŵ = V diag(s / (s² + λ)) Uᵀ y (prediction i from the first
    i examples), a route that shares nothing with the normal equations."""
    predictions = torch.zeros_like(ys)
    for i in range(1, xs.shape[1]):
        u, s, vh = torch.linalg.svd(xs[:, :i], full_matrices=False)
        coefficients = s / (s**2 + lam) * (u.transpose(1, 2) @ ys[:, :i, None]).squeeze(-1)
        w = (vh.transpose(1, 2) @ coefficients[..., None]).squeeze(-1)
        predictions[:, i] = (w * xs[:, i]).sum(dim=-1)
    return predictions


def test_ridge_is_its_closed_form_and_tends_to_least_squares():
    tasks = LinearTasks(4, 8, 16, noise=0.5, seed=1)
    prompts = tasks.sample()
    xs, ys = prompts.xs.double(), prompts.ys.double()
    torch.testing.assert_close(ridge(xs, ys, 0.25), ridge_by_svd(xs, ys, 0.25))
    torch.testing.assert_close(ridge(xs, ys, 1e-9), least_squares(xs, ys), atol=1e-5, rtol=0)
    assert not torch.allclose(ridge(xs, ys, 1.0), least_squares(xs, ys), atol=1e-2)


def test_averaging_is_one_gradient_step_of_size_one():
    prompts = LinearTasks(3, 7, 8, seed=2).sample()
    xs, ys = prompts.xs, prompts.ys
    torch.testing.assert_close(averaging(xs, ys), gradient_step(xs, ys, 1.0))
    torch.testing.assert_close(gradient_step(xs, ys, 0.3), 0.3 * averaging(xs, ys))
    # by hand, prediction 2: ŵ = (y_1 x_1 + y_2 x_2) / 2
    w = (ys[:, 0, None] * xs[:, 0] + ys[:, 1, None] * xs[:, 1]) / 2
    torch.testing.assert_close(averaging(xs, ys)[:, 2], (w * xs[:, 2]).sum(dim=-1))


def test_nearest_neighbours_by_hand():
    xs = torch.tensor([[[0.0], [10.0], [1.0], [11.0], [0.4]]])
    ys = torch.tensor([[0.0, 100.0, 1.0, 111.0, 7.0]])
    # 0: no example; 1: only x=0; 2: both earlier; 3: 10 and 1 are nearest to 11; 4: 0 and 1
    expected = torch.tensor([[0.0, 0.0, 50.0, 50.5, 0.5]])
    torch.testing.assert_close(nearest_neighbours(xs, ys, k=2), expected)


def test_predicting_zero_scores_one_per_point():
    """Garg et al.'s normalisation: E[(w·x)²] / d = 1 for the zero predictor."""
    prompts = LinearTasks(4, 5, 4000, seed=3).sample()
    error = squared_error_by_points(torch.zeros_like(prompts.ys), prompts)
    assert error.shape == (5,)
    torch.testing.assert_close(error, torch.ones(5), atol=0.1, rtol=0)


def pool_posterior_by_bayes(xs, ys, pool, noise, b: int, i: int) -> float:
    """Prediction i of prompt b by Bayes' rule written out: p(w_m | data) = likelihood_m /
    Σ likelihoods (uniform prior), ŵ = Σ_m p(w_m | data) w_m, in float64 scalars."""
    likelihoods = []
    for w in pool.double():
        residuals = ys[b, :i].double() - xs[b, :i].double() @ w
        likelihoods.append(math.exp(-(residuals**2).sum().item() / (2 * noise**2)))
    total = sum(likelihoods)
    w_hat = sum(p / total * w for p, w in zip(likelihoods, pool.double(), strict=True))
    return float(w_hat @ xs[b, i].double())


def test_pool_posterior_is_bayes_rule_and_finds_the_task():
    tasks = LinearTasks(3, 8, 32, noise=0.7, pool=5, seed=4)
    prompts = tasks.sample()
    predictions = pool_posterior(prompts.xs, prompts.ys, tasks.task_pool, 0.7)
    for b, i in ((0, 0), (0, 1), (3, 4), (7, 7)):
        assert predictions[b, i].item() == pytest.approx(
            pool_posterior_by_bayes(prompts.xs, prompts.ys, tasks.task_pool, 0.7, b, i),
            abs=1e-4,
        )
    # with little noise and a few examples the posterior sits on the prompt's own task
    quiet = LinearTasks(3, 8, 64, noise=0.05, pool=5, seed=4).sample()
    noiseless = torch.einsum("bnd,bd->bn", quiet.xs, quiet.w)
    error = pool_posterior(quiet.xs, quiet.ys, tasks.task_pool, 0.05) - noiseless
    assert error[:, 4:].abs().max() < 1e-3
    # ... and a task outside the pool is not found: the estimator only knows the pool
    fresh = LinearTasks(3, 8, 64, noise=0.05, seed=9).sample()
    error = pool_posterior(fresh.xs, fresh.ys, tasks.task_pool, 0.05) - fresh.ys
    assert error[:, 4:].abs().mean() > 0.5


def test_squared_errors_average_to_the_curve():
    prompts = LinearTasks(4, 6, 50, seed=5).sample()
    predictions = averaging(prompts.xs, prompts.ys)
    errors = squared_errors(predictions, prompts)
    assert errors.shape == (50, 6)
    torch.testing.assert_close(errors.mean(dim=0), squared_error_by_points(predictions, prompts))
    torch.testing.assert_close(errors[2, 3], (predictions[2, 3] - prompts.ys[2, 3]) ** 2 / 4)


# --- the task stream -------------------------------------------------------------------------


def test_the_seed_fixes_the_prompts():
    first, second = LinearTasks(3, 5, 4, seed=7), LinearTasks(3, 5, 4, seed=7)
    for _ in range(2):
        a, b = first.sample(), second.sample()
        for x, y in ((a.xs, b.xs), (a.ys, b.ys), (a.w, b.w)):
            assert torch.equal(x, y)
    assert not torch.equal(LinearTasks(3, 5, 4, seed=8).sample().w, a.w)


def test_the_stream_resumes_where_it_was():
    tasks = LinearTasks(3, 5, 4, seed=7)
    tasks.sample()
    state = tasks.state_dict()
    expected = tasks.sample()
    tasks.load_state_dict(state)
    assert torch.equal(tasks.sample().xs, expected.xs)


def test_a_pool_of_m_tasks_gives_m_distinct_ws():
    tasks = LinearTasks(3, 5, 16, pool=4, seed=0)
    ws = torch.cat([tasks.sample().w for _ in range(10)])
    distinct = torch.unique(ws, dim=0)
    assert len(distinct) == 4
    assert torch.equal(torch.unique(tasks.task_pool, dim=0), distinct)
    assert len(torch.unique(LinearTasks(3, 5, 16, seed=0).sample().w, dim=0)) == 16
    # a given pool: new prompts of the same tasks
    again = LinearTasks(3, 5, 64, pool=tasks.task_pool, seed=1).sample()
    assert torch.equal(torch.unique(again.w, dim=0), distinct)
    assert not torch.equal(again.xs[:16], tasks.sample().xs)


def test_noisy_outputs():
    prompts = LinearTasks(3, 50, 200, noise=0.5, seed=0).sample()
    residual = prompts.ys - torch.einsum("bnd,bd->bn", prompts.xs, prompts.w)
    assert abs(residual.std().item() - 0.5) < 0.02


def test_tokens_interleave_x_and_y():
    xs, ys = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]]), torch.tensor([[5.0, 6.0]])
    expected = torch.tensor([[[1.0, 2, 0], [0, 0, 5], [3, 4, 0], [0, 0, 6]]])
    torch.testing.assert_close(tokens(xs, ys), expected)


# --- training with the shared loop -----------------------------------------------------------


def test_positions_start_small():
    # GPT-2's std 0.02, not nn.Embedding's N(0, 1), which stalls training (regression.py)
    std = InContextRegressor(3, 6, d_model=64).position.weight.std().item()
    assert 0.01 < std < 0.03


def test_the_regressor_learns_under_fit():
    """Held-out error before and after 200 steps, and against predicting y = 0 (E[y²] = d):
    below that, the model must be using the examples in its prompt."""
    held_out = LinearTasks(2, 5, 1000, seed=99).sample()
    torch.manual_seed(0)
    model = InContextRegressor(2, 5, d_model=32, layers=2, heads=2)
    with torch.no_grad():
        before = model.loss(model(held_out), held_out).item()
    history = fit(model, LinearTasks(2, 5, 64, seed=0), steps=200, progress=False,
                  optimizer=torch.optim.Adam(model.parameters(), lr=3e-3))  # fmt: skip
    with torch.no_grad():
        after = model.loss(model(held_out), held_out).item()
    assert after < before
    assert after < (held_out.ys**2).mean().item()
    assert all(math.isnan(a) for a in history.accuracy)  # no classes: fit logs nan


def test_the_classifier_trains_and_evaluates_with_the_shared_loop():
    """Plumbing on Conv4 and 28×28 images: fit logs an accuracy, few_shot scores episodes."""
    model = small_classifier()
    sampler = EpisodeSampler(blob_images(), way=3, shot=2, queries=2, seed=0)
    history = fit(model, sampler, steps=4, progress=False, log_every=2)
    assert len(history.loss) == 2 and all(0 <= a <= 1 for a in history.accuracy)
    accuracy = few_shot(model, sampler, episodes=3, progress=False)
    assert accuracy.n == 3 and 0 <= accuracy.mean <= 1


def test_the_classifier_learns_under_fit():
    """On feature vectors (class centre + noise; nn.Identity as the encoder), so the run is
    short: the loss falls from its start to below log(way), the loss of a uniform guess."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(30, 1, 8, generator=generator)
    features = features + 0.3 * torch.randn(30, 8, 8, generator=generator)
    torch.manual_seed(0)
    model = InContextClassifier(nn.Identity(), feature_dim=8, way=3, d_model=32, heads=2)
    sampler = EpisodeSampler(features, way=3, shot=2, queries=3, seed=0)
    history = fit(model, sampler, steps=150, progress=False, log_every=30,
                  optimizer=torch.optim.Adam(model.parameters(), lr=3e-3))  # fmt: skip
    assert history.loss[-1] < history.loss[0]
    assert history.loss[-1] < math.log(3)


# --- clear errors ----------------------------------------------------------------------------


def test_bad_prompts_are_refused():
    xs, ys = torch.zeros(2, 4, 3), torch.zeros(2, 4)
    with pytest.raises(ValueError, match="xs has shape"):
        tokens(xs[0], ys[0])
    with pytest.raises(ValueError, match="ys has shape"):
        tokens(xs, ys[:, :3])
    model = small_regressor(dim=3, points=3)
    with pytest.raises(ValueError, match="points=3"):
        model(Prompts(xs, ys, torch.zeros(2, 3)))
    with pytest.raises(ValueError, match="dim=3"):
        model(Prompts(torch.zeros(2, 2, 2), torch.zeros(2, 2), torch.zeros(2, 2)))
    with pytest.raises(ValueError, match="lam"):
        ridge(xs, ys, 0.0)
    with pytest.raises(ValueError, match="pool"):
        LinearTasks(3, 4, 2, pool=0)
    with pytest.raises(ValueError, match="pool has shape"):
        LinearTasks(3, 4, 2, pool=torch.zeros(5, 2))
    with pytest.raises(ValueError, match="pool has shape"):
        pool_posterior(xs, ys, torch.zeros(5, 2), 0.5)
    with pytest.raises(ValueError, match="noise"):
        pool_posterior(xs, ys, torch.zeros(5, 3), 0.0)
    with pytest.raises(ValueError, match="predictions has shape"):
        squared_errors(torch.zeros(2, 3), Prompts(xs, ys, torch.zeros(2, 3)))


def test_bad_masks_and_sizes_are_refused():
    transformer = Transformer(d_model=8, layers=1, heads=2)
    x = torch.zeros(1, 3, 8)
    with pytest.raises(ValueError, match="mask is"):
        transformer(x, causal_mask(4))
    with pytest.raises(ValueError, match="mask is"):
        transformer(x, causal_mask(3).float())
    with pytest.raises(ValueError, match="no True entry"):
        transformer(x, torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="d_model=8"):
        transformer(torch.zeros(1, 3, 7), causal_mask(3))
    with pytest.raises(ValueError, match="heads"):
        SelfAttention(10, 3)


def test_a_way_mismatch_is_refused():
    model = small_classifier(way=3)
    episode = EpisodeSampler(blob_images(), way=4, shot=1, queries=1, seed=0).sample()
    with pytest.raises(ValueError, match="way=4 but the model way=3"):
        model(episode)
