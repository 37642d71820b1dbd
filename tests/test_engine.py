"""The engine (metalearn_course.engine) against the plain core (metalearn_course.gradient).

The contract: ``fast(method)`` changes how the work is done, never what is computed. For every
method that uses the engine (MAML, FOMAML, MAML with running statistics, learned inner rates,
Meta-SGD, ANIL, Reptile) and every way to apply it (the loop with plain-autograd inner
gradients, vmap over the tasks, with and without the folded first block), the outputs, the
meta-gradients, the running statistics and the evaluation equal the core's to float64 rounding
on the tiny classifier of tests/helpers.py. Plus the pieces on their own (the inner-gradient
switch, folding, the vmap-safe batch norm) and the rules of the game: the methods never rewrite
the model they are given, fast() keeps the state_dict, and wrong inputs are refused.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from helpers import WAY, blob_images, random_tasks
from helpers import tiny_classifier as tiny
from torch import nn

from metalearn_course.data.episodes import Episode, EpisodeSampler
from metalearn_course.engine import (
    FoldedBlock,
    VmapTaskBatchNorm,
    fast,
    fast_gradient,
    fastpath,
    fold_batch_norm,
    vmap_over_tasks,
)
from metalearn_course.gradient import (
    ANIL,
    MAML,
    BodyHead,
    MetaSGD,
    Reptile,
    TaskBatchNorm,
    conv4_classifier,
    use_task_batch_norm,
)
from metalearn_course.gradient.functional import (
    inner_gradient,
    loop_over_tasks,
    update_running_stats,
)
from metalearn_course.nets import Conv4

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks (tests/conftest.py)

KINDS = [
    "maml",
    "fomaml",
    "running-stats",
    "metasgd",
    "anil",
    "reptile",
    "reptile-adam",
    "reptile-running-stats",
]
ENGINES = {
    "fast": {},
    "vmap": {"vmap": True},
    "unfolded": {"fold": False},
    "vmap-unfolded": {"vmap": True, "fold": False},
}


def make(kind: str) -> nn.Module:
    """A plain core method of the given kind on tiny() (seed 0: the same weights every call)."""
    if kind == "maml":  # second order, two steps, learned per-step rates
        return MAML(tiny(), 2, [0.4, 0.2], learn_inner_lr=True)
    if kind == "fomaml":
        return MAML(tiny(), 2, 0.4, first_order=True)
    if kind == "running-stats":
        return MAML(tiny(transductive=False), 2, 0.4)
    if kind == "metasgd":
        return MetaSGD(tiny(), 2, 0.3)
    if kind == "anil":
        return ANIL(tiny(), 2, 0.4)
    if kind == "reptile":
        return Reptile(tiny(), 3, 0.1, inner_optimizer="sgd")
    if kind == "reptile-adam":  # the authors' inner optimizer
        return Reptile(tiny(), 3, 0.01, eval_inner_steps=5)
    assert kind == "reptile-running-stats"
    return Reptile(tiny(transductive=False), 3, 0.1, inner_optimizer="sgd")


def first_task(e: Episode) -> Episode:
    return Episode(e.support_x[0], e.support_y[0], e.query_x[0], e.query_y[0], e.classes[0])


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def relative_error(actual, expected) -> float:
    actual, expected = flat(actual), flat(expected)
    return ((actual - expected).norm() / expected.norm()).item()


def cancelled(name: str) -> bool:
    """A convolution's bias (or Meta-SGD's rate for it), which the batch norm after it cancels:
    its true meta-gradient is exactly 0, what either side computes is rounding noise."""
    return name.endswith((".0.bias", "/0/bias"))


def train_and_evaluate(method: nn.Module, e: Episode) -> dict:
    """What fit and few_shot see: a training forward, the method's loss and its backward (the
    meta-gradient; Reptile's θ - φ̄), the state after it (running statistics included), then
    evaluation on the meta-batch and on a single task."""
    output = method(e)
    method.loss(output, e).backward()
    grads = {n: p.grad for n, p in method.named_parameters()}
    state = {k: v.clone() for k, v in method.state_dict().items()}
    method.eval()
    with torch.no_grad():
        evaluated, single = method(e), method(first_task(e))
    return {"outputs": [output, evaluated, single], "grads": grads, "state": state}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_engine_gives_the_core_numbers(kind, engine):
    e = random_tasks(tasks=4)
    core = train_and_evaluate(make(kind), e)
    method = fast(make(kind), **ENGINES[engine])
    folded = ENGINES[engine].get("fold", True)
    assert isinstance(method.model.body.encoder[0], FoldedBlock) == folded
    result = train_and_evaluate(method, e)

    for actual, expected in zip(result["outputs"], core["outputs"], strict=True):
        assert actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-13)
    assert result["state"].keys() == core["state"].keys()
    for key, value in result["state"].items():  # weights, rates and running statistics
        torch.testing.assert_close(value, core["state"][key], rtol=1e-12, atol=1e-14, msg=key)
    assert result["grads"].keys() == core["grads"].keys()
    for name, expected in core["grads"].items():
        actual = result["grads"][name]
        if cancelled(name):
            # noise on both sides (Adam in Reptile's inner loop divides it by its own square
            # root: up to ~1e-8 per step there); folding computes the exact 0
            assert actual.abs().max() < 1e-8 and expected.abs().max() < 1e-8, name
        else:
            assert relative_error([actual], [expected]) < 1e-10, name
    if folded:  # the folded conv bias: cancelled exactly, as in the algebra
        for name, g in result["grads"].items():
            if name in ("model.body.encoder.0.0.bias", "alpha.body/encoder/0/0/bias"):
                assert torch.equal(g, torch.zeros_like(g)), name
    if "running-stats" in kind:  # the statistics did move, so the comparison above means it
        norm = method.model.body.encoder[0][1]
        assert norm.num_batches_tracked == 4 and norm.running_mean.abs().sum() > 0


def test_the_engine_comparison_has_power():
    """The comparison above tells different computations apart: the same MAML with its two
    inner rates swapped fails it by far more than its tolerances."""
    e = random_tasks(tasks=4)
    core = train_and_evaluate(make("maml"), e)
    other = MAML(tiny(), 2, [0.2, 0.4], learn_inner_lr=True)
    result = train_and_evaluate(fast(other), e)
    assert relative_error(result["outputs"], core["outputs"]) > 1e-3
    grads = [core["grads"][n] for n in core["grads"] if not cancelled(n)]
    changed = [result["grads"][n] for n in core["grads"] if not cancelled(n)]
    assert relative_error(changed, grads) > 1e-3


@pytest.mark.parametrize("engine", ENGINES)
def test_fast_changes_how_not_what(engine):
    """fast() works in place on the method and its network: the same object, the same
    Parameters and buffers under the same names; what changes is the two hooks, the first
    block's class (folding) and the batch norms' class (vmap)."""
    options = ENGINES[engine]
    method = make("maml")
    model, params = method.model, dict(method.named_parameters())
    buffers = dict(method.named_buffers())
    assert method.gradient is inner_gradient and method.map_tasks is loop_over_tasks
    assert fast(method, **options) is method and method.model is model
    assert method.gradient is fast_gradient
    vmap = options.get("vmap", False)
    assert method.map_tasks is (vmap_over_tasks if vmap else loop_over_tasks)
    assert dict(method.named_parameters()).keys() == params.keys()
    assert all(p is params[n] for n, p in method.named_parameters())
    assert all(b is buffers[n] for n, b in method.named_buffers())
    norms = [m for m in model.modules() if isinstance(m, TaskBatchNorm)]
    assert len(norms) == 2
    assert all(type(m) is (VmapTaskBatchNorm if vmap else TaskBatchNorm) for m in norms)
    encoder = model.body.encoder
    assert isinstance(encoder[0], FoldedBlock) == options.get("fold", True)  # 1 channel: d = 9
    assert not isinstance(encoder[1], FoldedBlock)  # d = 4 · 9 > MAX_PATCH


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["maml", "running-stats", "metasgd", "reptile"])
def test_state_dicts_move_between_the_core_and_the_engine(kind, engine):
    """Checkpoints of a fast method load into the plain one and back, strictly."""
    e = random_tasks(tasks=2, seed=3)
    trained = fast(make(kind), **ENGINES[engine])
    trained(e)  # running statistics (if any) move away from their initial values
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.01 * torch.randn_like(p))  # weights no fresh method has
    plain = make(kind)
    assert plain.state_dict().keys() == trained.state_dict().keys()
    plain.load_state_dict(trained.state_dict())
    for (key, value), loaded in zip(
        trained.state_dict().items(), plain.state_dict().values(), strict=True
    ):
        assert torch.equal(loaded, value), key
    again = fast(make(kind), **ENGINES[engine])
    again.load_state_dict(plain.state_dict())
    for method in (plain, trained, again):
        method.eval()
    with torch.no_grad():
        expected = plain(e)
        torch.testing.assert_close(trained(e), expected, rtol=1e-12, atol=1e-13)
        torch.testing.assert_close(again(e), expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize(
    "kind", ["maml", "fomaml", "running-stats", "metasgd", "anil", "reptile", "reptile-adam"]
)
def test_plain_autograd_inner_gradient_equals_torch_func_grad(kind, monkeypatch):
    """Outside a torch.func transform fast_gradient is torch.autograd.grad (faster); it must
    give torch.func.grad's numbers to the last bit, meta-gradient and evaluation alike."""
    e = random_tasks(tasks=2)
    results = []
    for inside in (False, True):  # True: as if traced by a transform, i.e. torch.func.grad
        monkeypatch.setattr(fastpath, "_inside_transform", lambda inside=inside: inside)
        calls = []
        monkeypatch.setattr(
            fastpath, "grad", lambda fn, calls=calls: calls.append(1) or torch.func.grad(fn)
        )
        method = fast(make(kind))
        output = method(e)
        method.loss(output, e).backward()
        with torch.no_grad():
            evaluated = method.eval()(first_task(e))
        assert bool(calls) == inside  # the switch took the branch it was meant to take
        results.append([output, evaluated, *(p.grad for p in method.parameters())])
    for plain, func in zip(*results, strict=True):
        assert torch.equal(plain, func)


def test_fast_gradient_takes_the_inner_gradient_as_torch_func_grad_does():
    """The function itself, on the cases the methods rely on: a differentiable result (second
    order), a constant one from detached parameters (first order) and one under no_grad."""
    model = tiny()
    task = first_task(random_tasks(tasks=1))
    x, y = task.support_x, task.support_y

    def loss(params):
        return F.cross_entropy(torch.func.functional_call(model, params, (x,)), y)

    params = dict(model.named_parameters())
    expected = inner_gradient(loss, params)
    got = fast_gradient(loss, params)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-14, atol=1e-16)
    assert all(g.requires_grad for g in got.values())  # MAML's second-order term
    # first order (as adapt asks for it): a constant, the same numbers
    detached = {k: v.detach() for k, v in params.items()}
    constant = fast_gradient(loss, detached, create_graph=False)
    assert not any(g.requires_grad for g in constant.values())
    for name in expected:
        torch.testing.assert_close(constant[name], expected[name], rtol=1e-14, atol=1e-16)
    with torch.no_grad():  # evaluation adapts without recording
        quiet = fast_gradient(loss, params)
    assert not any(g.requires_grad for g in quiet.values())
    for name in expected:
        torch.testing.assert_close(quiet[name], expected[name], rtol=1e-14, atol=1e-16)


def test_vmap_needs_the_vmap_batch_norm():
    """Why VmapTaskBatchNorm exists: under vmap, torch's fused batch norm (the core's
    TaskBatchNorm) gets MAML's second-order meta-gradient wrong (functorch issue #534), the
    engine's plain operations get it right. If this fails on the first assertion, torch has
    fixed the batching rule and VmapTaskBatchNorm could go."""
    e = random_tasks(tasks=4)

    def meta_gradient(method: nn.Module) -> list[torch.Tensor]:
        method.loss(method(e), e).backward()
        return [p.grad for n, p in method.named_parameters() if n.endswith("weight")]

    core = meta_gradient(MAML(tiny(), 2, 0.4))
    naive = MAML(tiny(), 2, 0.4)
    naive.map_tasks = vmap_over_tasks  # vmap, but the batch norms stay torch's kernel
    assert relative_error(meta_gradient(naive), core) > 1e-3
    engine = fast(MAML(tiny(), 2, 0.4), vmap=True, fold=False)
    assert relative_error(meta_gradient(engine), core) < 1e-10


def test_vmap_batch_norm_is_task_batch_norm_outside_vmap():
    model = use_task_batch_norm(nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3))).double()
    with torch.no_grad():
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-1, 1)
    x = torch.randn(4, 5, 2, 6, 6, dtype=torch.float64)
    expected = torch.stack([model(task) for task in x])
    model[1].__class__ = VmapTaskBatchNorm
    torch.testing.assert_close(torch.stack([model(task) for task in x]), expected)
    batched = torch.func.vmap(model)(x)  # per task: its own batch statistics
    torch.testing.assert_close(batched, expected, rtol=1e-12, atol=1e-13)


def test_folded_block_is_the_same_function_in_every_mode():
    """conv → TaskBatchNorm → ReLU as one folded convolution: the same outputs and input
    gradients in training and in both eval protocols, the same running statistics recorded."""
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(2, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU())
    plain = use_task_batch_norm(nn.Sequential(block.double()), transductive=False)
    with torch.no_grad():
        plain[0][1].weight.uniform_(0.5, 1.5)
        plain[0][1].bias.uniform_(-1, 1)
    folded = fold_batch_norm(copy.deepcopy(plain))
    assert type(folded[0]) is FoldedBlock and type(plain[0]) is nn.Sequential
    assert folded.state_dict().keys() == plain.state_dict().keys()
    x = torch.randn(6, 2, 7, 7, dtype=torch.float64, requires_grad=True)

    def value_and_input_gradient(net):
        out = net(x)
        (gradient,) = torch.autograd.grad((out * out.detach()).sum(), x)
        return out, gradient

    # running statistics, recorded the way the methods record them (outside any transform)
    for net in (plain, folded):
        update_running_stats(net, dict(net.named_parameters()), x.detach(), batched=False)
    for key, value in folded.state_dict().items():
        torch.testing.assert_close(value, plain.state_dict()[key], rtol=1e-13, atol=1e-15)
    assert plain[0][1].num_batches_tracked == 1
    for training in (True, False):
        for transductive in (True, False):
            for net in (plain, folded):
                net.train(training)
                net[0][1].transductive = transductive
            expected = value_and_input_gradient(plain)
            for actual, want in zip(value_and_input_gradient(folded), expected, strict=True):
                torch.testing.assert_close(actual, want, rtol=1e-12, atol=1e-13)


def test_folding_needs_a_small_patch_and_a_task_batch_norm():
    wide = nn.Sequential(nn.Conv2d(8, 4, 3, padding=1), nn.BatchNorm2d(4))  # d = 72
    model = nn.Sequential(wide, nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)))
    assert fold_batch_norm(model) is model
    assert not any(isinstance(m, FoldedBlock) for m in model.modules())  # torch's batch norm
    use_task_batch_norm(model)
    fold_batch_norm(model)
    assert type(model[0]) is nn.Sequential and type(model[1]) is FoldedBlock


@pytest.mark.parametrize("engine", ENGINES)
def test_engine_in_float32_on_omniglot_sized_images(engine):
    """The book's setting: float32, 28×28 images. Folding computes its statistics in float64,
    so it differs from torch's float32 batch norm by float32 rounding only."""
    e = EpisodeSampler(blob_images(), WAY, 1, 2, seed=0).sample_batch(4)

    def maml() -> MAML:
        torch.manual_seed(0)
        return MAML(conv4_classifier(WAY, hidden=8, blocks=2), 1, 0.4)

    results = []
    for method in (maml(), fast(maml(), **ENGINES[engine])):
        output = method(e)
        method.loss(output, e).backward()
        results.append((output, [p.grad for n, p in method.named_parameters() if not cancelled(n)]))
    (output, grads), (fast_output, fast_grads) = results
    assert output.dtype == torch.float32
    assert relative_error([fast_output], [output]) < 1e-5
    assert relative_error(fast_grads, grads) < 1e-5


@pytest.mark.parametrize("method", [MAML, MetaSGD, ANIL, Reptile])
def test_methods_refuse_torch_batch_norm_and_name_the_fix(method):
    model = BodyHead(Conv4(1, 4, 2), nn.Linear(4 * 2 * 2, WAY))  # torch's nn.BatchNorm2d
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    with pytest.raises(ValueError, match=r"use_task_batch_norm\(model\)"):
        method(model)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # left as it was
    converted = method(use_task_batch_norm(model))
    assert converted.model is model


@pytest.mark.parametrize("method", [MAML, MetaSGD, ANIL, Reptile])
def test_methods_use_the_model_as_given(method):
    """No copy, no conversion, no folding: the same modules of the same classes, the same
    Parameters; only engine.fast changes a network, and only when asked to."""
    model = tiny()
    modules = [(name, m, type(m)) for name, m in model.named_modules()]
    params = list(model.named_parameters())
    built = method(model)
    assert built.model is model
    assert [(name, m, type(m)) for name, m in model.named_modules()] == modules
    after = list(model.named_parameters())
    assert [n for n, _ in after] == [n for n, _ in params]
    assert all(p is q for (_, p), (_, q) in zip(after, params, strict=True))


def test_transductive_lives_on_the_network():
    assert MAML(tiny()).transductive and Reptile(tiny()).transductive
    assert not MAML(tiny(transductive=False)).transductive
    assert not Reptile(tiny(transductive=False)).transductive
    method = MAML(tiny())
    use_task_batch_norm(method.model, transductive=False)  # the layers decide
    assert not method.transductive
    assert not fast(MAML(tiny(transductive=False)), vmap=True).transductive
    with pytest.raises(AttributeError):
        method.transductive = True  # read-only: set it on the TaskBatchNorm layers


def test_fast_refuses_what_is_not_a_gradient_based_method():
    with pytest.raises(TypeError, match="Linear"):
        fast(nn.Linear(2, 2))

    class Wrapper(nn.Module):  # a .model, but no hooks to replace
        def __init__(self) -> None:
            super().__init__()
            self.model = tiny()

    with pytest.raises(TypeError, match="Wrapper"):
        fast(Wrapper())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("engine", ENGINES)
def test_engine_on_a_gpu_gives_the_core_numbers(engine):
    e = random_tasks(tasks=4).to("cuda")
    results = []
    for method in (make("maml").cuda(), fast(make("maml").cuda(), **ENGINES[engine])):
        output = method(e)
        method.loss(output, e).backward()
        grads = [p.grad for n, p in method.named_parameters() if not cancelled(n)]
        results.append((output, grads))
    (output, grads), (fast_output, fast_grads) = results
    assert fast_output.device.type == "cuda"
    assert relative_error([fast_output], [output]) < 1e-10
    assert relative_error(fast_grads, grads) < 1e-10
