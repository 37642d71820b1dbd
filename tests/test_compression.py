"""Model compression: pruning reaches its sparsity and survives save/load, the physically smaller
network computes the same thing, int8 stays close to float, the distillation loss is its
equation, and distillation trains with the shared loop.

Networks are narrow (8-16 channels) and the data synthetic (a bright blob per class on noise, as
in test_metric), so the file runs in seconds on one CPU thread.
"""

import io
import math

import pytest
import torch
from helpers import blob_images
from torch import nn
from torch.nn.utils import prune

from metalearn_course.compression import (
    DistilledProtoNet,
    channel_prune,
    clone,
    convert_qat,
    distillation_loss,
    global_magnitude_prune,
    latency_per_episode,
    layer_sparsity,
    load_pruned,
    make_permanent,
    parameter_count,
    prepare_qat,
    quantize_encoder,
    remove_pruned_channels,
    size_on_disk,
    sparsity,
)
from metalearn_course.data.episodes import EpisodeSampler
from metalearn_course.metric import ProtoNet
from metalearn_course.nets import Conv4
from metalearn_course.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")


def batch(n: int = 32, seed: int = 0) -> torch.Tensor:
    """n blob images as float [n, 1, 28, 28] in [0, 1]."""
    return blob_images(n_per_class=math.ceil(n / 12), seed=seed).flatten(0, 1)[:n, None] / 255


def sampler(seed: int = 0) -> EpisodeSampler:
    return EpisodeSampler(blob_images(n_per_class=10), way=5, shot=1, queries=3, seed=seed)


def conv4(hidden: int = 16, seed: int = 0) -> Conv4:
    """A Conv4 with random batch norm statistics and affine parameters, so that tests also
    exercise the running mean / variance (a fresh one has mean 0, variance 1, γ 1, β 0)."""
    torch.manual_seed(seed)
    net = Conv4(hidden=hidden)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.1, 0.1)
            bn.running_var.uniform_(0.01, 0.05)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.2, 0.2)
    return net.eval()


def convs(net: nn.Module) -> list[nn.Conv2d]:
    return [m for m in net.modules() if isinstance(m, nn.Conv2d)]


# ---------------------------------------------------------------- pruning


def test_global_pruning_reaches_the_requested_sparsity_over_all_layers():
    net = conv4()
    total = sum(c.weight.numel() for c in convs(net))
    global_magnitude_prune(net, 0.5)
    assert abs(sparsity(net) - 0.5) <= 1 / total
    # The zeros are the smallest magnitudes of the whole network: every surviving weight is at
    # least as large as every pruned one.
    kept = torch.cat([c.weight_orig[c.weight_mask == 1].abs() for c in convs(net)])
    pruned = torch.cat([c.weight_orig[c.weight_mask == 0].abs() for c in convs(net)])
    assert kept.min() >= pruned.max()
    # Global: layers are pruned unevenly (the 9-weight-per-filter first layer is not at 50%).
    assert len(set(round(s, 3) for s in layer_sparsity(net).values())) > 1
    # The target counts earlier pruning: 0.5 then 0.8 ends at 0.8, not 0.9.
    global_magnitude_prune(net, 0.8)
    assert abs(sparsity(net) - 0.8) <= 1 / total
    with pytest.raises(ValueError, match="masks only grow"):
        global_magnitude_prune(net, 0.3)
    with pytest.raises(ValueError, match="sparsity"):
        global_magnitude_prune(conv4(), 1.0)


def test_global_pruning_works_on_channels_last_weights_and_matches_torch():
    # The channels_last layout (faster CPU convolutions) made torch's global_unstructured fail
    # in parameters_to_vector (.view(-1) of a non-contiguous weight); the masks must be those
    # of torch's global L1 pruning of the same, contiguous, network.
    net, reference = conv4(), conv4()
    net.to(memory_format=torch.channels_last)
    assert not convs(net)[1].weight.is_contiguous()
    global_magnitude_prune(net, 0.6)
    pairs = [(c, "weight") for c in convs(reference)]
    prune.global_unstructured(pairs, pruning_method=prune.L1Unstructured, amount=0.6)
    for conv, ref in zip(convs(net), convs(reference), strict=True):
        assert torch.equal(conv.weight_mask, ref.weight_mask)
    global_magnitude_prune(net, 0.8)  # a second round keeps the first round's zeros
    assert abs(sparsity(net) - 0.8) <= 1 / sum(c.weight.numel() for c in convs(net))
    for conv, ref in zip(convs(net), convs(reference), strict=True):
        assert torch.all(conv.weight_mask <= ref.weight_mask)


def test_channel_pruning_removes_the_lowest_norm_filters_of_every_layer():
    net, reference = conv4(), conv4()
    channel_prune(net, 0.25)
    for conv, ref in zip(convs(net), convs(reference), strict=True):
        dead = (conv.weight.flatten(1) == 0).all(dim=1)
        assert int(dead.sum()) == 4  # 25% of 16 channels, in every layer
        assert (conv.bias[dead] == 0).all()
        # the same channels as torch's own L2 structured pruning of that layer
        prune.ln_structured(ref, "weight", amount=0.25, n=2, dim=0)
        assert torch.equal(conv.weight_mask, ref.weight_mask)
    for bn in (m for m in net.modules() if isinstance(m, nn.BatchNorm2d)):
        assert int((bn.weight == 0).sum()) == 4 and int((bn.bias == 0).sum()) == 4
    channel_prune(net, 0.5)  # again: the final fraction per layer
    assert all(int((c.weight.flatten(1) == 0).all(1).sum()) == 8 for c in convs(net))
    with pytest.raises(ValueError, match="copy of the unpruned"):
        channel_prune(net, 0.25)


@pytest.mark.parametrize("how", ["global", "channel"])
def test_masks_survive_a_save_load_round_trip(how):
    net = conv4()
    (global_magnitude_prune if how == "global" else channel_prune)(net, 0.6)
    x = batch()
    expected = net(x)
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert any(k.endswith("weight_mask") for k in state)
    with pytest.raises(RuntimeError):  # a plain network has no weight_orig / weight_mask
        Conv4(hidden=16).load_state_dict(state)
    loaded = load_pruned(Conv4(hidden=16), state).eval()
    assert torch.equal(loaded(x), expected)
    assert sparsity(loaded) == sparsity(net)
    # still pruned, not just zero: a training step cannot revive the masked weights
    loaded.train()
    optimizer = torch.optim.SGD(loaded.parameters(), lr=0.1)
    loaded(x).square().mean().backward()
    optimizer.step()
    assert sparsity(loaded) == sparsity(net)


def test_make_permanent_keeps_the_zeros_and_drops_the_masks():
    net = conv4()
    global_magnitude_prune(net, 0.7)
    channel_prune(net, 0.25)
    x = batch()
    before, zeros = net(x), sparsity(net)
    make_permanent(net)
    assert not any(k.endswith(("_orig", "_mask")) for k in net.state_dict())
    assert sparsity(net) == zeros
    assert torch.equal(net(x), before)
    # now a plain network: loads into a fresh Conv4
    Conv4(hidden=16).load_state_dict(net.state_dict())


def test_fine_tuning_with_fit_keeps_pruned_weights_at_zero():
    method = ProtoNet(conv4())
    global_magnitude_prune(method, 0.5)
    fit(method, sampler(), steps=3, progress=False)
    assert sparsity(method) == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("train_mode", [False, True])
def test_the_physically_smaller_network_gives_the_same_outputs(train_mode):
    net = conv4()
    channel_prune(net, 0.5)
    small = remove_pruned_channels(net)
    assert [c.out_channels for c in convs(small)] == [8, 8, 8, 8]
    assert [c.in_channels for c in convs(small)] == [1, 8, 8, 8]
    assert parameter_count(small) < 0.3 * parameter_count(Conv4(hidden=16))
    assert size_on_disk(small) < size_on_disk(make_permanent(clone(net)))
    net.train(train_mode), small.train(train_mode)
    x = batch()
    masked, dense = net(x), small(x)
    alive = convs(net)[-1].weight_mask.flatten(1).any(dim=1)
    assert torch.allclose(dense, masked[:, alive], atol=1e-5)
    assert (masked[:, ~alive] == 0).all()  # pruned embedding dimensions are exactly zero
    # hence identical ProtoNet logits: zero dimensions add nothing to a distance
    episode = sampler().sample()
    assert torch.allclose(ProtoNet(small)(episode), ProtoNet(net)(episode), atol=1e-4)


@pytest.mark.parametrize("train_mode", [False, True])
def test_the_physically_smaller_network_keeps_the_mode_of_the_original(train_mode):
    # Called on an eval-mode encoder (a trained model), the result is used as it comes: its new
    # batch norms must not be in training mode (batch statistics, different outputs).
    net = conv4().train(train_mode)
    channel_prune(net, 0.5)
    small = remove_pruned_channels(net)
    assert all(m.training == train_mode for m in small.modules())
    if not train_mode:
        alive = convs(net)[-1].weight_mask.flatten(1).any(dim=1)
        with torch.no_grad():
            assert torch.allclose(small(batch()), net(batch())[:, alive], atol=1e-5)


def test_remove_pruned_channels_needs_a_conv4():
    with pytest.raises(ValueError, match="Conv4"):
        remove_pruned_channels(ProtoNet(conv4()))


# ---------------------------------------------------------------- quantization


def test_int8_embedding_stays_close_to_float():
    # Tolerance: the x86 engine rounds weights per output channel to 8 bits and activations per
    # tensor to 7 bits (reduce_range), a relative step of about 1/127 of each layer's range;
    # four layers of such rounding leave a few percent of relative error on the embedding
    # (this network: ~4% relative L2 error, stable across seeds); 8% bounds that with margin,
    # and the ProtoNet decisions must agree.
    net = conv4(hidden=32)
    calibration = batch(64, seed=1)  # calibrate on other images than the ones compared
    quantized = quantize_encoder(net, [calibration[:32], calibration[32:]])
    x = batch(48, seed=2)
    with torch.no_grad():
        exact, approx = net(x), quantized(x)
    assert approx.shape == exact.shape and approx.dtype == torch.float32
    assert (approx - exact).norm() / exact.norm() < 0.08
    episode = sampler(seed=3).sample()
    with torch.no_grad():
        float_logits = ProtoNet(net).eval()(episode)
        int8_logits = ProtoNet(quantized).eval()(episode)
    agree = (float_logits.argmax(1) == int8_logits.argmax(1)).float().mean()
    assert agree >= 0.9
    assert net.training is False and convs(net)[0].weight.dtype == torch.float32  # untouched


def test_quantized_encoder_refuses_tensors_off_the_cpu():
    quantized = quantize_encoder(conv4(hidden=8), batch(16))
    with pytest.raises(ValueError, match="CPU only"):
        quantized(torch.zeros(2, 1, 28, 28, device="meta"))
    with pytest.raises(ValueError, match="images"):
        quantized(torch.zeros(2, 28, 28))
    with pytest.raises(ValueError, match="Conv4"):
        quantize_encoder(ProtoNet(conv4(hidden=8)), batch(16))
    with pytest.raises(ValueError, match="backend"):
        quantize_encoder(conv4(hidden=8), batch(16), backend="tpu")


def test_a_pruned_encoder_quantizes_and_calibration_accepts_episodes():
    net = conv4()
    global_magnitude_prune(net, 0.5)
    quantized = quantize_encoder(net, [sampler().sample(), sampler(seed=1).sample()])
    assert quantized(batch()).shape == (32, 16)
    assert hasattr(convs(net)[0], "weight_mask")  # the original keeps its masks


def test_size_on_disk_shrinks_about_fourfold_after_quantization():
    net = conv4(hidden=64)
    ratio = size_on_disk(quantize_encoder(net, batch())) / size_on_disk(net)
    assert ratio < 0.3  # 1 byte per weight instead of 4, plus scales and zero points


def test_quantization_aware_training_trains_with_fit_and_converts():
    torch.manual_seed(0)
    method = ProtoNet(prepare_qat(conv4(hidden=8)))
    fit(method, sampler(), steps=30, progress=False)
    fake = method.encoder.eval()
    quantized = convert_qat(fake)
    x = batch()
    with torch.no_grad():
        simulated, real = fake(x), quantized(x)
    # The int8 network computes what the fake quantization simulated, except that the x86
    # qconfig's fake quantization clips activations at 7 bits (reduce_range) where the int8
    # kernels keep 8: values beyond the observed range saturate only in the simulation. The
    # observers' moving averages settle slowly, so after 30 steps this leaves about 5%.
    assert (real - simulated).norm() / simulated.norm() < 0.1
    with pytest.raises(ValueError, match="prepare_qat"):
        convert_qat(conv4(hidden=8))


# ---------------------------------------------------------------- distillation


def softmax(row: list[float], T: float) -> list[float]:
    e = [math.exp(v / T) for v in row]
    return [v / sum(e) for v in e]


def hand_loss(s, t, y, T, alpha) -> float:
    """The definition, in plain Python: α·T²·KL(p_t ‖ p_s) + (1 − α)·CE(s, y), mean over rows."""
    kl = ce = 0.0
    for s_row, t_row, label in zip(s, t, y, strict=True):
        p_s, p_t = softmax(s_row, T), softmax(t_row, T)
        kl += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
        ce -= math.log(softmax(s_row, 1.0)[label])
    return alpha * T**2 * kl / len(s) + (1 - alpha) * ce / len(s)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_distillation_loss_equals_its_definition(temperature, alpha):
    s = [[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]]
    t = [[1.0, 0.0, 2.0], [-1.0, 4.0, 1.0]]
    y = [0, 1]
    loss = distillation_loss(
        torch.tensor(s, dtype=torch.float64),
        torch.tensor(t, dtype=torch.float64),
        torch.tensor(y),
        temperature,
        alpha,
    )
    assert loss.item() == pytest.approx(hand_loss(s, t, y, temperature, alpha), rel=1e-12)


def test_distillation_loss_is_flat_where_the_student_equals_the_teacher():
    teacher = torch.randn(6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    student = teacher.clone().requires_grad_(True)
    loss = distillation_loss(student, teacher, torch.zeros(6, dtype=torch.long), 4.0, alpha=1.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-12)
    assert student.grad.abs().max() < 1e-12
    # and the teacher receives no gradient: it is a fixed target
    teacher.requires_grad_(True)
    distillation_loss(student * 2, teacher, torch.zeros(6, dtype=torch.long)).backward()
    assert teacher.grad is None


def test_distillation_loss_checks_its_arguments():
    s, y = torch.zeros(3, 4), torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(s, s, y, temperature=0.0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, s, y, alpha=1.5)
    with pytest.raises(ValueError, match="same shape"):
        distillation_loss(s, torch.zeros(3, 5), y)
    with pytest.raises(ValueError, match="labels"):
        distillation_loss(s, s, torch.zeros(4, dtype=torch.long))


def test_distilled_protonet_trains_a_small_student_with_fit():
    torch.manual_seed(0)
    teacher = ProtoNet(Conv4(hidden=16))
    fit(teacher, sampler(seed=1), steps=30, progress=False)
    teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}

    torch.manual_seed(1)
    method = DistilledProtoNet(Conv4(hidden=8), teacher, temperature=4.0, alpha=0.5)
    history = fit(method, sampler(seed=2), steps=40, progress=False, log_every=10)
    assert history.loss[-1] < 0.7 * history.loss[0]
    # the teacher is untouched: no weight or batch-norm statistic changed, still in eval mode
    assert all(torch.equal(v, teacher_state[k]) for k, v in teacher.state_dict().items())
    assert not teacher.training
    # the student has its own, smaller embedding and is evaluated like any ProtoNet
    assert parameter_count(method.student) < parameter_count(teacher) / 3
    episode = sampler(seed=3).sample()
    assert method(episode).shape == (15, 5)


# ---------------------------------------------------------------- measures


def test_parameter_count_size_and_latency():
    net = conv4()  # (its batch-norm shifts β are random, not the initial exact zeros)
    # per block: 3·3·c_in·16 weights + 16 bias + 2·16 batch-norm parameters
    expected = sum(9 * c_in * 16 + 16 + 32 for c_in in (1, 16, 16, 16))
    assert parameter_count(net) == parameter_count(net, nonzero=True) == expected
    global_magnitude_prune(net, 0.5)
    weights = sum(c.weight.numel() for c in convs(net))
    assert parameter_count(net) == expected  # masked weights still count
    assert parameter_count(net, nonzero=True) == expected - round(0.5 * weights)
    # A masked checkpoint is larger (weight_orig + weight_mask); the zeros pay off compressed.
    dense = size_on_disk(Conv4(hidden=16))
    assert size_on_disk(net) > dense
    permanent = make_permanent(net)
    assert size_on_disk(permanent, compressed=True) < 0.8 * size_on_disk(permanent)
    with pytest.raises(ValueError, match="no parameters"):
        parameter_count(quantize_encoder(conv4(hidden=8), batch(16)))

    method, other = ProtoNet(Conv4(hidden=8)).train(), ProtoNet(Conv4(hidden=4)).eval()
    seconds = latency_per_episode({"a": method, "b": other}, sampler().sample(), 2, warmup=1)
    assert list(seconds) == ["a", "b"] and all(s > 0 for s in seconds.values())
    assert method.training and not other.training  # modes restored; times are never asserted
    with pytest.raises(ValueError, match="repeats"):
        latency_per_episode({"a": method}, sampler().sample(), repeats=0)
    with pytest.raises(ValueError, match="methods is empty"):
        latency_per_episode({}, sampler().sample())


def test_latencies_are_measured_in_turns():
    """Round-robin: a change of the machine's load falls on every model alike."""
    calls = []

    class Recorder(nn.Module):
        def __init__(self, name):
            super().__init__()
            self.name = name

        def forward(self, episode):
            calls.append((self.name, self.training))

    latency_per_episode({"a": Recorder("a"), "b": Recorder("b")}, sampler().sample(), 2, 1)
    assert calls == [("a", False), ("b", False)] * 3  # warm-up round, then two timed rounds
