"""Facts the Meta-SGD / ANIL Omniglot notebook relies on, checked on tiny float64 networks.

* A convolution's bias followed by batch norm is cancelled by the normalisation: its support
  gradient is zero, so Meta-SGD's rate for it gets no meta-gradient and stays where it started.
* ANIL runs the body once on the support set and once on the queries, whatever the number of
  inner steps (the head steps work on the stored features).
* A negative Meta-SGD rate moves its weight up the support loss (the step is not descent).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import WAY
from helpers import random_tasks as helper_tasks
from helpers import tiny_classifier as tiny

from metalearn_course.data.episodes import Episode
from metalearn_course.gradient import ANIL, MAML, MetaSGD

pytestmark = pytest.mark.usefixtures("one_thread")


def random_tasks(tasks: int = 2, **kwargs) -> Episode:
    return helper_tasks(tasks, **kwargs)


def test_conv_bias_before_batch_norm_gets_no_rate_gradient():
    method = MetaSGD(tiny(), 1, 0.4)
    e = random_tasks()
    method.loss(method(e), e).backward()
    gradients = {key: alpha.grad for key, alpha in method.alpha.items()}
    conv_biases = [k for k in gradients if k.startswith("body/") and k.endswith("/0/bias")]
    assert conv_biases == ["body/encoder/0/0/bias", "body/encoder/1/0/bias"]
    largest = max(g.abs().max().item() for g in gradients.values())
    assert largest > 1e-3
    for key in conv_biases:  # zero up to float64 rounding
        assert gradients[key].abs().max().item() < 1e-12 * largest, key
    # every other rate does get a meta-gradient
    for key, g in gradients.items():
        if key not in conv_biases:
            assert g.abs().max().item() > 1e-8, key


@pytest.mark.parametrize("inner_steps", [1, 5])
def test_anil_runs_the_body_twice_per_task_whatever_the_steps(inner_steps):
    method = ANIL(tiny(), inner_steps, 0.4)
    calls = []
    method.model.body.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    e = random_tasks(tasks=2)
    method(e)
    # per task: the support images once (inner loop), the query images once (scoring)
    assert len(calls) == 2 * 2
    assert [shape[0] for shape in calls] == [WAY * 2, WAY * 3] * 2


def test_maml_body_passes_grow_with_the_inner_steps():
    """The contrast with ANIL: MAML's inner loop runs the whole network once per step."""

    def body_passes(steps: int) -> int:
        method = MAML(tiny(), steps, 0.4)
        calls = []
        method.model.body.register_forward_hook(lambda module, args, out: calls.append(1))
        method(random_tasks(tasks=1))
        return len(calls)

    # one pass per inner step (on the support set), plus one on the queries
    assert {steps: body_passes(steps) for steps in (1, 3)} == {1: 2, 3: 4}


def test_negative_rate_climbs_the_support_loss():
    method = MetaSGD(tiny(), 1, 0.05)
    e = random_tasks(tasks=1)
    x, y = e.support_x[0], e.support_y[0]
    params = dict(method.model.named_parameters())

    def support_loss(p):
        return F.cross_entropy(torch.func.functional_call(method.model, p, (x,)), y).item()

    before = support_loss(params)
    with torch.no_grad():
        for alpha in method.alpha.values():
            alpha.fill_(0.05)
    descended = support_loss(method.adapt(x, y))
    with torch.no_grad():
        for alpha in method.alpha.values():
            alpha.fill_(-0.05)
    ascended = support_loss(method.adapt(x, y))
    assert descended < before < ascended
