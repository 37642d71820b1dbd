"""First-order meta-learning, beyond tests/test_gradient.py: Reptile's inner minibatches, Reptile
with one inner step as SGD on the joint loss (Nichol et al. 2018, arXiv:1803.02999), and the
smaller backward graph of first-order MAML."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import WAY
from helpers import random_tasks as helper_tasks
from helpers import tiny_classifier as tiny
from torch.func import functional_call

from metalearn_course.data.episodes import Episode
from metalearn_course.gradient import MAML, Reptile, inner_train, reptile_step
from metalearn_course.nets import MLP
from metalearn_course.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks (tests/conftest.py)


def random_tasks(tasks: int = 3, shot: int = 4, queries: int = 2, seed: int = 0) -> Episode:
    """helpers.random_tasks with 4 shots."""
    return helper_tasks(tasks, shot, queries, seed)


def test_inner_batch_steps_through_strided_minibatches():
    torch.manual_seed(0)
    model = MLP([1, 8, 1]).double()
    x = torch.randn(12, 1, dtype=torch.float64)
    y = torch.sin(x)
    params = dict(model.named_parameters())
    ours = inner_train(model, params, x, y, F.mse_loss, 5, 0.05, inner_batch=4)
    expected = {k: v.detach() for k, v in params.items()}
    for t in range(5):  # 3 minibatches: rows j, j+3, j+6, j+9 at step t, j = t mod 3
        rows = slice(t % 3, None, 3)
        expected = {k: v.requires_grad_() for k, v in expected.items()}
        loss = F.mse_loss(functional_call(model, expected, (x[rows],)), y[rows])
        grads = torch.autograd.grad(loss, list(expected.values()))
        expected = {
            k: (v - 0.05 * g).detach() for (k, v), g in zip(expected.items(), grads, strict=True)
        }
    for name in params:
        torch.testing.assert_close(ours[name], expected[name], rtol=1e-12, atol=1e-12)
    full = inner_train(model, params, x, y, F.mse_loss, 5, 0.05)
    same = inner_train(model, params, x, y, F.mse_loss, 5, 0.05, inner_batch=12)
    for name in params:
        torch.testing.assert_close(same[name], full[name], rtol=0, atol=0)


def test_inner_batch_minibatches_are_class_balanced():
    # class-major labels, 4 shots of 3 classes, minibatches of 6: 2 of each class
    y = torch.arange(WAY).repeat_interleave(4)
    for j in range(2):
        assert torch.bincount(y[j::2], minlength=WAY).tolist() == [2, 2, 2]


@pytest.mark.parametrize("inner_batch", [0, 5, 13, -3])
def test_inner_batch_must_divide_the_training_set(inner_batch):
    model = MLP([1, 4, 1]).double()
    x = torch.randn(12, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="inner_batch"):
        inner_train(
            model, dict(model.named_parameters()), x, x, F.mse_loss, 2, 0.1, "sgd", inner_batch
        )


def test_reptile_module_with_inner_batch_trains_like_reptile_step():
    e = random_tasks()
    # SGD inside: Adam would turn the round-off in the (zero) gradients of the conv biases that
    # batch norm cancels into steps of full size
    method = Reptile(tiny(), 4, 0.05, inner_optimizer="sgd", inner_batch=6)
    model = tiny()
    reptile_step(model, e.support_x, e.support_y, F.cross_entropy, 4, 0.05, 0.7, "sgd", True, 6)
    optimizer = torch.optim.SGD(method.parameters(), lr=0.7)
    fit(method, [e], steps=1, optimizer=optimizer, log_every=1, progress=False)
    for (name, p), q in zip(method.model.named_parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)


def test_reptile_evaluates_with_eval_inner_batch():
    e = random_tasks(tasks=1)
    task = Episode(e.support_x[0], e.support_y[0], e.query_x[0], e.query_y[0], e.classes[0])
    full = Reptile(tiny(), 3, 0.01, inner_batch=6).eval()  # inner_batch: training only
    minibatches = Reptile(tiny(), 3, 0.01, inner_batch=6, eval_inner_batch=6).eval()
    with torch.no_grad():
        torch.testing.assert_close(full(task), Reptile(tiny(), 3, 0.01).eval()(task))
        x, y, params = task.support_x, task.support_y, dict(minibatches.model.named_parameters())
        adapted = inner_train(minibatches.model, params, x, y, F.cross_entropy, 3, 0.01, "adam", 6)
        expected = functional_call(minibatches.model, adapted, (task.query_x,))
        torch.testing.assert_close(minibatches(task), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match="eval_inner_batch"):
        Reptile(tiny(), eval_inner_batch=0)


def test_reptile_with_one_inner_step_is_sgd_on_the_joint_loss():
    # k = 1: θ + ε(mean_i φ_i - θ) = θ - εα ∇ mean_i L_i(θ), joint training (Nichol et al.)
    e = random_tasks()
    alpha, epsilon = 0.1, 0.5
    model, joint = tiny(), tiny()
    reptile_step(model, e.support_x, e.support_y, F.cross_entropy, 1, alpha, epsilon)
    losses = [F.cross_entropy(joint(x), y) for x, y in zip(e.support_x, e.support_y, strict=True)]
    torch.stack(losses).mean().backward()
    with torch.no_grad():
        for p, q in zip(model.parameters(), joint.parameters(), strict=True):
            torch.testing.assert_close(p, q - epsilon * alpha * q.grad, rtol=1e-10, atol=1e-12)


def backward_graph_nodes(loss: torch.Tensor) -> int:
    seen, stack = set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(fn for fn, _ in node.next_functions)
    return len(seen)


def test_first_order_maml_has_the_smaller_backward_graph():
    e = random_tasks()
    nodes = {}
    for first_order in (False, True):
        method = MAML(tiny(), 2, 0.4, first_order=first_order)
        nodes[first_order] = backward_graph_nodes(method.loss(method(e), e))
    assert nodes[True] < nodes[False] / 2, nodes
