"""The learning algorithms an in-context regressor is compared with, each run on the prompt.

Every baseline has the transformer's convention: f(xs [B, n, d], ys [B, n]) -> predictions
[B, n]. Positions are 0-based, as in the tensors: prediction i is made from the i examples
before it, (xs[:, :i], ys[:, :i]), and its own input xs[:, i]; prediction 0 sees no example and
is 0 (the prior mean of y). Written as a loop over i, each step fitting ŵ to the first i
examples, because that is how the algorithms are defined; the batch is handled at once.

    least_squares   ŵ = X⁺ y, the minimum-norm solution when i < d (Garg et al. 2022).
                    Noiseless, i >= d: ŵ = w exactly, the best any learner can do.
    ridge(λ)        ŵ = (XᵀX + λI)⁻¹ Xᵀ y. With the prior w ~ N(0, I) and noise variance σ²
                    the posterior of w is Gaussian with this mean for λ = σ², so ridge(σ²) is
                    the Bayes-optimal predictor for the squared error (Akyürek et al. 2022).
    averaging       ŵ = (1/i) Σ_j y_j x_j: E[y x] = w when x ~ N(0, I) (Garg et al.'s baseline).
    gradient_step   one step of gradient descent from w = 0 on (1/2i) Σ_j (w·x_j - y_j)²:
                    ŵ = lr · (1/i) Σ_j y_j x_j, averaging for lr = 1. Von Oswald et al. 2023
                    build a linear self-attention layer that computes exactly this step.
    nearest_neighbours(k)   the mean y of the k earlier x's closest to x (fewer while i < k).
    pool_posterior  when w is drawn uniformly from a finite pool {w_1, ..., w_M} and the noise is
                    N(0, σ²): the posterior over the pool, p(w_m | data) ∝ exp(-Σ_j (y_j -
                    w_m·x_j)² / 2σ²), and ŵ its mean, the Bayes-optimal predictor for that task
                    distribution (Raventós et al. 2023's "dMMSE"). Ridge is the same rule for
                    the Gaussian prior.

References: Garg et al. 2022, arXiv:2208.01066; Akyürek et al. 2022, arXiv:2211.15661; von
Oswald et al. 2023, arXiv:2212.07677; Raventós et al. 2023, arXiv:2306.15063.

`squared_error_by_points` is the curve of Garg et al.'s figures: the error at each number of
in-context examples, averaged over prompts and divided by d (a predictor that always says 0
scores E[(w·x)²]/d = 1 at every point, which makes dimensions comparable); `squared_errors` is
the same before the average, one value per prompt and position, for confidence intervals and
paired comparisons.
"""

from __future__ import annotations

import torch

from metalearn_course.incontext.regression import Prompts, check_prompt


def _predict(w: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """ŵ [B, d] applied to x [B, d] -> [B]."""
    return (w * x).sum(dim=-1)


def least_squares(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Ordinary least squares on the first i examples; the minimum-norm fit while i < d."""
    check_prompt(xs, ys)
    predictions = torch.zeros_like(ys)
    for i in range(1, xs.shape[1]):
        # The pseudo-inverse X⁺ [B, d, i]: the least-squares solution, and among the many exact
        # fits when i < d the one of smallest norm (no direction is invented without data).
        w = (torch.linalg.pinv(xs[:, :i]) @ ys[:, :i, None]).squeeze(-1)
        predictions[:, i] = _predict(w, xs[:, i])
    return predictions


def ridge(xs: torch.Tensor, ys: torch.Tensor, lam: float) -> torch.Tensor:
    """Ridge regression with penalty λ = `lam` on the first i examples (the posterior mean when
    w ~ N(0, I) and the noise variance is lam)."""
    check_prompt(xs, ys)
    if lam <= 0:
        raise ValueError(f"lam={lam}; ridge needs lam > 0 (for lam -> 0 use least_squares)")
    predictions = torch.zeros_like(ys)
    eye = torch.eye(xs.shape[-1], dtype=xs.dtype, device=xs.device)
    for i in range(1, xs.shape[1]):
        x, y = xs[:, :i], ys[:, :i, None]
        xt = x.transpose(1, 2)
        # The normal equations as written. For i < d, XᵀX is singular and a tiny λ makes the
        # system ill-conditioned: in float32 take λ >= 1e-3 or use float64 (tested).
        w = torch.linalg.solve(xt @ x + lam * eye, xt @ y).squeeze(-1)
        predictions[:, i] = _predict(w, xs[:, i])
    return predictions


def averaging(xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """ŵ = the average of y_j x_j over the first i examples (prediction 0 is 0)."""
    check_prompt(xs, ys)
    # Running sums Σ_{j<=i} y_j x_j, shifted by one so that row i sums the first i examples.
    sums = torch.cumsum(ys[..., None] * xs, dim=1)
    sums = torch.cat([torch.zeros_like(sums[:, :1]), sums[:, :-1]], dim=1)
    counts = torch.arange(xs.shape[1], device=xs.device).clamp(min=1)[None, :, None]
    return (sums / counts * xs).sum(dim=-1)


def gradient_step(xs: torch.Tensor, ys: torch.Tensor, lr: float) -> torch.Tensor:
    """One gradient-descent step of size `lr` from w = 0 on the first i examples' loss
    (1/2i) Σ_j (w·x_j - y_j)²."""
    check_prompt(xs, ys)
    predictions = torch.zeros_like(ys)
    w0 = torch.zeros_like(xs[:, 0])  # [B, d]
    for i in range(1, xs.shape[1]):
        x, y = xs[:, :i], ys[:, :i]
        residual = (x @ w0[..., None]).squeeze(-1) - y  # w0·x_j - y_j, [B, i]
        gradient = (residual[..., None] * x).sum(dim=1) / i  # (1/i) Σ_j residual_j x_j
        predictions[:, i] = _predict(w0 - lr * gradient, xs[:, i])
    return predictions


def nearest_neighbours(xs: torch.Tensor, ys: torch.Tensor, k: int = 3) -> torch.Tensor:
    """The mean y of the k nearest earlier inputs (Euclidean); all of them while i < k."""
    check_prompt(xs, ys)
    if k < 1:
        raise ValueError(f"k={k}; use k >= 1 neighbours")
    predictions = torch.zeros_like(ys)
    for i in range(1, xs.shape[1]):
        distances = torch.cdist(xs[:, i : i + 1], xs[:, :i]).squeeze(1)  # [B, i]
        nearest = distances.topk(min(k, i), dim=-1, largest=False).indices
        predictions[:, i] = ys[:, :i].gather(1, nearest).mean(dim=-1)
    return predictions


def pool_posterior(
    xs: torch.Tensor, ys: torch.Tensor, pool: torch.Tensor, noise: float
) -> torch.Tensor:
    """The posterior mean of w over a finite `pool` [M, d] of equally likely tasks, given the
    first i examples with Gaussian noise of standard deviation `noise` (prediction 0: the pool's
    mean)."""
    check_prompt(xs, ys)
    if pool.ndim != 2 or pool.shape[-1] != xs.shape[-1]:
        raise ValueError(
            f"pool has shape {tuple(pool.shape)}; expected [tasks, dim={xs.shape[-1]}], e.g."
            " LinearTasks(..., pool=M).task_pool"
        )
    if noise <= 0:
        raise ValueError(f"noise={noise}; the posterior needs noise > 0 (the σ of the labels)")
    pool = pool.to(xs)
    predictions = torch.zeros_like(ys)
    for i in range(xs.shape[1]):
        residuals = ys[:, :i, None] - xs[:, :i] @ pool.T  # y_j - w_m·x_j, [B, i, M]
        log_likelihood = -(residuals**2).sum(dim=1) / (2 * noise**2)  # [B, M]
        # softmax = the likelihoods normalised, computed stably (a uniform prior cancels out)
        w = torch.softmax(log_likelihood, dim=-1) @ pool  # posterior mean, [B, d]
        predictions[:, i] = _predict(w, xs[:, i])
    return predictions


def squared_errors(predictions: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """[B, n]: (prediction_i - y_i)² / d for every prompt and position (Garg et al.'s
    normalisation by d); its mean over prompts is `squared_error_by_points`."""
    if tuple(predictions.shape) != tuple(prompts.ys.shape):
        raise ValueError(
            f"predictions has shape {tuple(predictions.shape)} but ys {tuple(prompts.ys.shape)};"
            " give one prediction per position, [batch, points]"
        )
    return (predictions - prompts.ys) ** 2 / prompts.xs.shape[-1]


def squared_error_by_points(predictions: torch.Tensor, prompts: Prompts) -> torch.Tensor:
    """[n]: entry i is the mean over prompts of (prediction_i - y_i)² / d, the error after i
    in-context examples (Garg et al.'s normalisation by d)."""
    return squared_errors(predictions, prompts).mean(dim=0)
