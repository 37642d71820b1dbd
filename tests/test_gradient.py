"""Optimization-based meta-learners (metalearn_course.gradient): exact meta-gradients, batch norm,
Reptile's closed form, Meta-SGD, ANIL, training runs, input checks. All of it on the plain core
(a loop over tasks, torch.func.grad); tests/test_engine.py checks engine.fast against it.

The meta-gradients are checked in float64 on a tiny classifier (2 conv blocks of 4 channels on
8×8 images) against two independent references: central finite differences of the meta-loss,
and the inner loop unrolled with plain torch.autograd (create_graph=True, torch's own batch
norm, a Python loop over tasks, no torch.func). Errors are relative over all parameters at
once: a convolution bias followed by batch norm has a true gradient of exactly zero, so its own
relative error would only compare rounding noise.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import WAY, blob_images, random_tasks
from helpers import tiny_classifier as tiny
from torch import nn
from torch.func import functional_call

from metalearn_course.data.episodes import Episode, EpisodeBatch, EpisodeSampler
from metalearn_course.data.sinusoid import SinusoidTasks
from metalearn_course.evaluate import few_shot
from metalearn_course.gradient import (
    ANIL,
    MAML,
    MetaSGD,
    Reptile,
    TaskBatchNorm,
    adapt,
    conv4_classifier,
    inner_train,
    maml_loss,
    meta_batches,
    reptile_step,
    use_task_batch_norm,
)
from metalearn_course.gradient.functional import update_running_stats
from metalearn_course.nets import MLP
from metalearn_course.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks (tests/conftest.py)


def first_task(e: Episode) -> Episode:
    return Episode(e.support_x[0], e.support_y[0], e.query_x[0], e.query_y[0], e.classes[0])


def data(e: Episode) -> tuple[torch.Tensor, ...]:
    return e.support_x, e.support_y, e.query_x, e.query_y


def reference_forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """tiny() written out with torch.nn.functional: torch's own batch norm, batch statistics."""
    *blocks, weight, bias = params
    for i in range(0, len(blocks), 4):
        conv_weight, conv_bias, gamma, beta = blocks[i : i + 4]
        x = F.conv2d(x, conv_weight, conv_bias, padding=1)
        x = F.batch_norm(x, None, None, gamma, beta, training=True)
        x = F.max_pool2d(F.relu(x), 2)
    return F.linear(x.flatten(1), weight, bias)


def mlp_forward(params: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    *hidden, weight, bias = params
    for i in range(0, len(hidden), 2):
        x = F.relu(F.linear(x, hidden[i], hidden[i + 1]))
    return F.linear(x, weight, bias)


def reference_meta_loss(
    forward, params, tasks, loss_fn, steps, rate, first_order=False, adapted=None
) -> torch.Tensor:
    """MAML's meta-loss with the inner loop unrolled by torch.autograd.grad, task by task.

    rate(step, i): the learning rate of parameter i at that step. adapted: indices of the
    parameters the inner loop changes (default all). first_order: inner gradients without a
    graph, i.e. constants for the outer backward: FOMAML.
    """
    adapted = range(len(params)) if adapted is None else adapted
    losses = []
    for support_x, support_y, query_x, query_y in zip(*tasks, strict=True):
        phi = list(params)
        for step in range(steps):
            inner = loss_fn(forward(phi, support_x), support_y)
            inputs = [phi[i] for i in adapted]
            grads = torch.autograd.grad(inner, inputs, create_graph=not first_order)
            for i, g in zip(adapted, grads, strict=True):
                phi[i] = phi[i] - rate(step, i) * g
        losses.append(loss_fn(forward(phi, query_x), query_y))
    return torch.stack(losses).mean()


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def relative_error(actual, expected) -> float:
    actual, expected = flat(actual), flat(expected)
    return ((actual - expected).norm() / expected.norm()).item()


def meta_gradient(method: nn.Module, episode: Episode, leaves) -> list[torch.Tensor]:
    """The gradient fit would apply: one forward, the method's loss, backward."""
    method.zero_grad(set_to_none=True)
    method.loss(method(episode), episode).backward()
    return [leaf.grad for leaf in leaves]


def finite_differences(loss_at, leaves, directions, h: float = 1e-5) -> torch.Tensor:
    """Central differences (L(θ + h v) - L(θ - h v)) / 2h along each direction v."""
    saved = [leaf.detach().clone() for leaf in leaves]
    estimates = []
    with torch.no_grad():
        for direction in directions:
            values = []
            for sign in (1, -1):
                for leaf, start, v in zip(leaves, saved, direction, strict=True):
                    leaf.copy_(start + sign * h * v)
                values.append(loss_at())
            estimates.append((values[0] - values[1]) / (2 * h))
        for leaf, start in zip(leaves, saved, strict=True):
            leaf.copy_(start)
    return torch.tensor(estimates, dtype=torch.float64)


def random_directions(leaves, n: int = 4, seed: int = 1) -> list[list[torch.Tensor]]:
    """Random directions of unit norm over all leaves. Unit norm matters: the meta-loss has
    kinks (ReLU, max-pool switching its argmax), and a long direction would cross one within
    ±h, where a finite difference means nothing."""
    generator = torch.Generator().manual_seed(seed)
    directions = []
    for _ in range(n):
        v = [torch.randn(leaf.shape, generator=generator, dtype=leaf.dtype) for leaf in leaves]
        norm = flat(v).norm()
        directions.append([part / norm for part in v])
    return directions


def along(gradient, directions) -> torch.Tensor:
    return torch.stack([flat(gradient) @ flat(direction) for direction in directions])


@pytest.mark.parametrize("steps", [1, 2])
def test_second_order_meta_gradient_is_exact_with_batch_norm(steps):
    method = MAML(tiny(), steps, [0.4, 0.3][:steps], learn_inner_lr=True)
    e = random_tasks()
    leaves = [*method.model.parameters(), method.inner_lr]
    gradient = meta_gradient(method, e, leaves)

    def rate(step, i):
        return method.inner_lr[step]

    params = list(method.model.parameters())
    reference = reference_meta_loss(
        reference_forward, params, data(e), F.cross_entropy, steps, rate
    )
    assert relative_error(gradient, torch.autograd.grad(reference, leaves)) < 1e-9

    directions = random_directions(leaves)
    estimate = finite_differences(lambda: method.loss(method(e), e).item(), leaves, directions)
    exact = along(gradient, directions)
    assert ((estimate - exact).norm() / exact.norm()).item() < 1e-4
    # The check has power: the first-order gradient is far from the finite differences.
    first_order = reference_meta_loss(
        reference_forward, params, data(e), F.cross_entropy, steps, rate, first_order=True
    )
    fomaml = along(torch.autograd.grad(first_order, leaves), directions)
    assert ((estimate - fomaml).norm() / exact.norm()).item() > 1e-2


def test_maml_loss_function_on_the_sinusoid_mlp():
    torch.manual_seed(0)
    model = MLP([1, 40, 40, 1]).double()
    batch = SinusoidTasks(seed=0).sample(n_tasks=4, shots=5, queries=5)
    tasks = tuple(
        t.double() for t in (batch.support_x, batch.support_y, batch.query_x, batch.query_y)
    )
    params = dict(model.named_parameters())
    leaves = list(params.values())

    def meta_loss(**options):
        return maml_loss(model, params, *tasks, F.mse_loss, 2, 0.05, **options)

    gradient = torch.autograd.grad(meta_loss(), leaves)
    reference = reference_meta_loss(mlp_forward, leaves, tasks, F.mse_loss, 2, lambda j, i: 0.05)
    assert relative_error(gradient, torch.autograd.grad(reference, leaves)) < 1e-9
    loop = torch.autograd.grad(meta_loss(batched=False), leaves)
    assert relative_error(gradient, loop) < 1e-12

    directions = random_directions(leaves)
    estimate = finite_differences(lambda: meta_loss().item(), leaves, directions)
    exact = along(gradient, directions)
    assert ((estimate - exact).norm() / exact.norm()).item() < 1e-4

    first_order = torch.autograd.grad(meta_loss(first_order=True), leaves)
    reference = reference_meta_loss(
        mlp_forward, leaves, tasks, F.mse_loss, 2, lambda j, i: 0.05, first_order=True
    )
    assert relative_error(first_order, torch.autograd.grad(reference, leaves)) < 1e-9


def test_first_order_maml_drops_the_hessian_term():
    method = MAML(tiny(), inner_steps=2, inner_lr=0.4, first_order=True)
    e = random_tasks()
    params = list(method.model.parameters())
    gradient = meta_gradient(method, e, params)

    def reference(first_order: bool) -> list[torch.Tensor]:
        loss = reference_meta_loss(
            reference_forward, params, data(e), F.cross_entropy, 2, lambda j, i: 0.4, first_order
        )
        return torch.autograd.grad(loss, params)

    assert relative_error(gradient, reference(first_order=True)) < 1e-9
    assert relative_error(gradient, reference(first_order=False)) > 1e-2


def test_task_batch_norm_matches_torch_batch_norm():
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3)).double()
    with torch.no_grad():
        reference[1].weight.uniform_(0.5, 1.5)
        reference[1].bias.uniform_(-1, 1)
    model = copy.deepcopy(reference)
    weight = model[1].weight
    use_task_batch_norm(model, transductive=False)
    assert isinstance(model[1], TaskBatchNorm) and model[1].weight is weight  # same Parameter
    x = torch.randn(5, 2, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(model(x), reference(x))  # training: batch statistics
    update_running_stats(model, dict(model.named_parameters()), x, batched=False)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(model[1], name), getattr(reference[1], name))
    model.eval()
    reference.eval()
    torch.testing.assert_close(model(x[:2]), reference(x[:2]))  # eval: running statistics
    with pytest.raises(ValueError, match="use_task_batch_norm"):
        adapt(reference, dict(reference.named_parameters()), x, x, F.mse_loss, 1, 0.1)


def test_batch_norm_is_transductive_by_default():
    method = MAML(tiny())
    e = first_task(random_tasks())
    train_logits = method(e)
    method.eval()
    with torch.no_grad():
        eval_logits = method(e)
        # The first query's logits depend on which other queries share its batch.
        alone = method(Episode(e.support_x, e.support_y, e.query_x[:2], e.query_y[:2], e.classes))
    assert method.transductive
    torch.testing.assert_close(eval_logits, train_logits.detach())
    assert not torch.allclose(alone, eval_logits[:2])
    norm = method.model.body.encoder[0][1]
    assert torch.equal(norm.running_mean, torch.zeros(4, dtype=torch.float64))  # never used


def test_running_statistics_variant_is_not_transductive():
    method = MAML(tiny(transductive=False))
    assert not method.transductive  # read from the network's TaskBatchNorm layers
    method(random_tasks())  # training: batch statistics, and the running averages move
    norm = method.model.body.encoder[0][1]
    assert norm.num_batches_tracked == 3 and norm.running_mean.abs().sum() > 0
    method.eval()
    e = first_task(random_tasks(seed=1))
    with torch.no_grad():
        logits = method(e)
        alone = method(Episode(e.support_x, e.support_y, e.query_x[:2], e.query_y[:2], e.classes))
    torch.testing.assert_close(alone, logits[:2])  # a query's prediction is its own


class Quadratic(nn.Module):
    """Predicts θ for every input, so that loss_fn below is L(θ) = ½ (θ - c)ᵀ A (θ - c)."""

    def __init__(self, theta: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.theta.expand(x.shape[0], -1)


@pytest.mark.parametrize("batched", [True, False])
def test_reptile_step_matches_the_closed_form_on_a_quadratic(batched):
    generator = torch.Generator().manual_seed(0)
    d, tasks, k, alpha, epsilon = 4, 3, 5, 0.1, 0.3
    m = torch.randn(d, d, generator=generator, dtype=torch.float64)
    a = m @ m.T / d + torch.eye(d, dtype=torch.float64)  # symmetric positive definite
    theta = torch.randn(d, generator=generator, dtype=torch.float64)
    centres = torch.randn(tasks, 1, d, generator=generator, dtype=torch.float64)

    def loss_fn(prediction: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        diff = prediction - centre
        return 0.5 * ((diff @ a) * diff).sum(-1).mean()

    model = Quadratic(theta)
    x = torch.zeros(tasks, 1, 1, dtype=torch.float64)
    reptile_step(model, x, centres, loss_fn, k, alpha, epsilon, batched=batched)
    # k SGD steps: φ - c ← (I - αA)(φ - c), so φ̃_i = c_i + (I - αA)^k (θ - c_i).
    contraction = torch.linalg.matrix_power(torch.eye(d, dtype=torch.float64) - alpha * a, k)
    adapted = centres[:, 0] + (theta - centres[:, 0]) @ contraction.T
    expected = theta + epsilon * (adapted.mean(0) - theta)
    torch.testing.assert_close(model.theta.detach(), expected, rtol=1e-12, atol=1e-12)


def test_inner_adam_is_torch_adam_without_momentum():
    torch.manual_seed(0)
    model = MLP([1, 8, 1]).double()
    x = torch.randn(10, 1, dtype=torch.float64)
    y = torch.sin(x)
    params = dict(model.named_parameters())
    ours = inner_train(model, params, x, y, F.mse_loss, 4, 0.01, optimizer="adam")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.0, 0.999))
    for _ in range(4):
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()
    for name, p in model.named_parameters():
        torch.testing.assert_close(ours[name], p.detach(), rtol=1e-10, atol=1e-12)


def test_reptile_module_trains_with_fit_by_the_reptile_step():
    e = random_tasks()
    method = Reptile(tiny(), inner_steps=3, inner_lr=0.1, inner_optimizer="sgd")
    model = tiny()
    reptile_step(model, e.support_x, e.support_y, F.cross_entropy, 3, 0.1, outer_lr=0.5)
    with torch.no_grad():  # the loss and accuracy fit logs: the adapted network's on the queries
        output = method(e)
        expected_loss = method.loss(output, e).item()
    hits = (output.argmax(dim=-1) == e.query_y).sum().item()  # over all tasks' queries
    optimizer = torch.optim.SGD(method.parameters(), lr=0.5)
    history = fit(method, [e], steps=1, optimizer=optimizer, log_every=1, progress=False)
    assert history.loss[0] == pytest.approx(expected_loss, rel=1e-12)
    assert history.accuracy[0] == pytest.approx(hits / e.query_y.numel(), abs=1e-6)
    for (name, p), q in zip(method.model.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)


def test_metasgd_with_equal_rates_is_maml_and_learns_its_rates():
    e = random_tasks()
    maml, metasgd = MAML(tiny(), 2, 0.3), MetaSGD(tiny(), 2, 0.3)
    params = list(metasgd.model.parameters())
    alphas = list(metasgd.alpha.values())  # in the order of the parameters
    maml_gradient = meta_gradient(maml, e, list(maml.model.parameters()))
    gradient = meta_gradient(metasgd, e, params + alphas)
    torch.testing.assert_close(metasgd(e), maml(e))
    assert relative_error(gradient[: len(params)], maml_gradient) < 1e-12
    # α's own meta-gradient, against the unrolled reference with α as leaves.
    reference = reference_meta_loss(
        reference_forward, params, data(e), F.cross_entropy, 2, lambda j, i: alphas[i]
    )
    assert relative_error(gradient, torch.autograd.grad(reference, params + alphas)) < 1e-9
    alpha_gradient = flat(gradient[len(params) :])
    assert torch.isfinite(alpha_gradient).all() and alpha_gradient.norm() > 0
    assert metasgd.alpha["head/weight"].shape == metasgd.model.head.weight.shape


def test_anil_adapts_only_the_head():
    method = ANIL(tiny(), inner_steps=2, inner_lr=0.4)
    e = random_tasks()
    task = first_task(e)
    params = dict(method.model.named_parameters())
    adapted = method.adapt(task.support_x, task.support_y)
    for name, value in adapted.items():
        if name.startswith("body."):
            assert value is params[name]  # the very same tensor: the body is not adapted
        else:
            assert not torch.allclose(value, params[name])
    # The same as the generic inner loop given only the head's parameters.
    head = {k: v for k, v in params.items() if k.startswith("head.")}
    generic = adapt(method.model, head, task.support_x, task.support_y, F.cross_entropy, 2, 0.4)
    for name, value in generic.items():
        torch.testing.assert_close(adapted[name], value, rtol=1e-12, atol=1e-14)

    leaves = list(params.values())
    gradient = meta_gradient(method, e, leaves)
    head_indices = [len(leaves) - 2, len(leaves) - 1]
    reference = reference_meta_loss(
        reference_forward,
        leaves,
        data(e),
        F.cross_entropy,
        2,
        lambda j, i: 0.4,
        adapted=head_indices,
    )
    assert relative_error(gradient, torch.autograd.grad(reference, leaves)) < 1e-9
    assert gradient[0].norm() > 0  # the body is meta-trained in the outer loop


def test_evaluation_adapts_under_no_grad_with_its_own_number_of_steps():
    method = MAML(tiny(), inner_steps=1, inner_lr=0.4, eval_inner_steps=3).eval()
    e = first_task(random_tasks())
    with torch.no_grad():
        logits = method(e)
    assert not logits.requires_grad
    params = dict(method.model.named_parameters())
    adapted = adapt(method.model, params, e.support_x, e.support_y, F.cross_entropy, 3, 0.4)
    expected = functional_call(method.model, adapted, (e.query_x,))
    torch.testing.assert_close(logits, expected.detach())


def test_maml_and_reptile_learn_sinusoids():
    held_out = SinusoidTasks(seed=99).sample(n_tasks=50, shots=10, queries=10)

    def adapted_query_mse(model: nn.Module) -> float:
        tasks = (held_out.support_x, held_out.support_y, held_out.query_x, held_out.query_y)
        params = dict(model.named_parameters())
        return maml_loss(model, params, *tasks, F.mse_loss, 1, 0.01).item()

    torch.manual_seed(0)
    maml, reptile = MLP([1, 40, 40, 1]), MLP([1, 40, 40, 1])
    reptile.load_state_dict(maml.state_dict())
    start = adapted_query_mse(maml)
    optimizer = torch.optim.Adam(maml.parameters(), lr=3e-3)
    tasks = SinusoidTasks(seed=0)
    for _ in range(100):
        b = tasks.sample(n_tasks=10, shots=10, queries=10)
        params = dict(maml.named_parameters())
        loss = maml_loss(
            maml, params, b.support_x, b.support_y, b.query_x, b.query_y, F.mse_loss, 1, 0.01
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        b = tasks.sample(n_tasks=10, shots=10, queries=0)
        reptile_step(reptile, b.support_x, b.support_y, F.mse_loss, 5, 0.02, outer_lr=0.1)
    assert adapted_query_mse(maml) < 0.8 * start
    assert adapted_query_mse(reptile) < 0.9 * start


@pytest.mark.parametrize("name", ["maml", "fomaml", "metasgd", "anil", "reptile"])
def test_fit_trains_every_method_on_meta_batches(name):
    torch.manual_seed(0)
    model = conv4_classifier(WAY, hidden=4, blocks=2)  # float32, 28×28
    optimizer = None
    if name == "reptile":
        method = Reptile(model, inner_steps=3, inner_lr=0.01)
        optimizer = torch.optim.SGD(method.parameters(), lr=0.5)
    else:
        kind = {"maml": MAML, "fomaml": MAML, "metasgd": MetaSGD, "anil": ANIL}[name]
        method = kind(model, inner_lr=0.4, **({"first_order": True} if name == "fomaml" else {}))
    batches = meta_batches(EpisodeSampler(blob_images(), WAY, 1, 2, seed=0), tasks=4)
    history = fit(method, batches, steps=30, optimizer=optimizer, log_every=10, progress=False)
    assert history.step == [10, 20, 30] and history.loss[-1] < history.loss[0]
    # fit scores the [B, N*Q, N] outputs over all 4 · 3 · 2 queries of a step (nan if it could
    # not): a window's accuracy counts hits out of 10 · 24 queries, and it rises with training.
    assert all(abs(a * 240 - round(a * 240)) < 1e-4 for a in history.accuracy), history.accuracy
    assert history.accuracy[-1] > history.accuracy[0]
    test = EpisodeSampler(blob_images(), WAY, 1, 2, seed=7)
    assert few_shot(method, test, episodes=20, progress=False).mean > 0.6  # chance: 1/3


def test_fit_scores_meta_batch_outputs():
    class Oracle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(1.0))

        def forward(self, episode: Episode) -> torch.Tensor:
            return self.scale * F.one_hot(episode.query_y, episode.way).float()

        def loss(self, output: torch.Tensor, episode: Episode) -> torch.Tensor:
            return F.cross_entropy(output.flatten(0, 1), episode.query_y.flatten())

    batches = meta_batches(EpisodeSampler(blob_images(), WAY, 1, 2), tasks=5)
    assert next(batches).query_y.shape == (5, WAY * 2)
    history = fit(Oracle(), batches, steps=2, log_every=1, progress=False)
    assert history.accuracy == [1.0, 1.0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_runs_where_the_parameters_are():
    method = MAML(tiny()).cuda()
    e = random_tasks().to("cuda")
    output = method(e)
    method.loss(output, e).backward()
    assert output.device.type == "cuda" and method.inner_lr.device.type == "cuda"


def test_bad_arguments():
    model = tiny()
    params = dict(model.named_parameters())
    e = random_tasks()
    task = first_task(e)
    sx, sy = task.support_x, task.support_y
    with pytest.raises(ValueError, match="inner_steps=0"):
        adapt(model, params, sx, sy, F.cross_entropy, 0, 0.4)
    with pytest.raises(ValueError, match=r"inner_lr=-0\.1"):
        adapt(model, params, sx, sy, F.cross_entropy, 1, -0.1)
    with pytest.raises(ValueError, match="inner_lr has shape"):
        adapt(model, params, sx, sy, F.cross_entropy, 2, torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="no rate for"):
        adapt(model, params, sx, sy, F.cross_entropy, 1, {"head.weight": torch.tensor(0.1)})
    with pytest.raises(ValueError, match="tasks"):
        maml_loss(
            model,
            params,
            e.support_x,
            e.support_y[:2],
            e.query_x,
            e.query_y,
            F.cross_entropy,
            1,
            0.4,
        )
    with pytest.raises(ValueError, match="inner_steps=0"):
        MAML(tiny(), inner_steps=0)
    with pytest.raises(ValueError, match="eval_inner_steps=0"):
        MAML(tiny(), eval_inner_steps=0)
    with pytest.raises(ValueError, match="inner_lr"):
        MAML(tiny(), inner_lr=-1.0)
    with pytest.raises(ValueError, match="inner_lr"):
        MAML(tiny(), inner_steps=2, inner_lr=[0.1])
    with pytest.raises(ValueError, match="learn_inner_lr"):
        MetaSGD(tiny(), learn_inner_lr=True)
    with pytest.raises(ValueError, match="body"):
        ANIL(MLP([1, 4, 1]))
    with pytest.raises(ValueError, match="inner_optimizer"):
        Reptile(tiny(), inner_optimizer="rmsprop")
    with pytest.raises(ValueError, match="inner_steps=0"):
        Reptile(tiny(), inner_steps=0)
    with pytest.raises(ValueError, match="outer_lr"):
        reptile_step(model, e.support_x, e.support_y, F.cross_entropy, 1, 0.1, outer_lr=0.0)
    with pytest.raises(ValueError, match="tasks=0"):
        meta_batches(EpisodeSampler(blob_images(), WAY, 1, 2), tasks=0)
    with pytest.raises(ValueError, match="too small"):
        conv4_classifier(WAY, blocks=5, image_size=28)

    method = MAML(tiny())
    with pytest.raises(ValueError, match="query_x images"):
        method(Episode(sx, sy, task.query_x[..., :4], task.query_y, task.classes))
    with pytest.raises(ValueError, match="support_x has 6 rows but support_y has 5"):
        method(Episode(sx, sy[:5], task.query_x, task.query_y, task.classes))
    with pytest.raises(ValueError, match="same leading number of episodes"):
        method(EpisodeBatch(e.support_x, e.support_y[:2], e.query_x, e.query_y[:2], e.classes))
    with pytest.raises(ValueError, match="stack_episodes"):  # stacked tensors in an Episode
        method(Episode(e.support_x, e.support_y, e.query_x, e.query_y, e.classes))
    with pytest.raises(ValueError, match="labels outside"):
        bad = e.query_y.clone()
        bad[1, 0] = WAY
        method(EpisodeBatch(e.support_x, e.support_y, e.query_x, bad, e.classes))
