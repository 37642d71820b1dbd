"""Memory-based learners: the MANN's read and LRUA equations on hand-worked numbers, the one-step
label offset of the sequences (no leakage), the hypernetwork's generated head, and that every
model's loss falls on a tiny task.

Synthetic data only: sequences of small float feature vectors (class centre + noise) and, for
the hypernetwork, the blob images of test_metric.py. Networks are tiny to keep the file fast.
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metalearn_course.data.episodes import EpisodeSampler
from metalearn_course.memory import (
    MANN,
    BlackBoxLSTM,
    HyperNet,
    SequenceBatch,
    SequenceSampler,
    accuracy_by_instance,
    instance_accuracy,
    instance_numbers,
    make_sequences,
    previous_label_inputs,
)
from metalearn_course.memory.mann import (
    cosine_read_weights,
    least_used,
    lrua_write_weights,
    usage_update,
    write_memory,
)
from metalearn_course.nets import Conv4
from metalearn_course.train import fit

DIM = 12  # feature size of the synthetic sequences


def features(n_classes: int = 30, n_per_class: int = 8, noise: float = 0.3) -> torch.Tensor:
    """float [n_classes, n_per_class, DIM]: a random centre per class plus Gaussian noise."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(n_classes, 1, DIM, generator=generator)
    return centres + noise * torch.randn(n_classes, n_per_class, DIM, generator=generator)


def blob_images(n_classes: int = 12, n_per_class: int = 20) -> torch.Tensor:
    """uint8 [n_classes, n_per_class, 28, 28]: noise plus a class-specific 7×7 blob."""
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 60, (n_classes, n_per_class, 28, 28), generator=generator)
    for c in range(n_classes):
        row, col = divmod(c % 12, 4)
        images[c, :, 7 * row : 7 * row + 7, 7 * col : 7 * col + 7] += 180
    return images.to(torch.uint8)


def sequence_models(way: int) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    small = dict(encoder=nn.Identity(), feature_dim=DIM, hidden=24)
    return {
        "lstm": BlackBoxLSTM(way, **small),
        "mann-key": MANN(way, slots=10, width=6, heads=2, **small),
        "mann-add": MANN(way, slots=10, width=6, heads=1, write="add", **small),
        "mann-sharp": MANN(way, slots=10, width=6, heads=2, key_strength=True, **small),
        "mann-bind": MANN(way, slots=10, width=6, heads=2, write="bind", **small),
    }


# --- sequences ----------------------------------------------------------------------------------


def test_previous_label_inputs_hold_the_label_of_the_step_before():
    labels = torch.tensor([[2, 0, 1, 1], [1, 1, 0, 2]])
    inputs = previous_label_inputs(labels, way=3)
    assert inputs.shape == (2, 4, 3)
    assert torch.equal(inputs[:, 0], torch.zeros(2, 3))  # nothing has been shown at step 0
    assert torch.equal(inputs[:, 1:], F.one_hot(labels[:, :-1], 3).float())
    # the current label is never in the current input: changing y_t changes step t+1 only
    changed = labels.clone()
    changed[:, 2] = (changed[:, 2] + 1) % 3
    differs = (previous_label_inputs(changed, 3) != inputs).any(dim=-1)
    assert differs.tolist() == [[False, False, False, True]] * 2


def test_instance_numbers_count_presentations():
    labels = torch.tensor([[0, 1, 0, 0, 1, 2]])
    assert instance_numbers(labels, 3).tolist() == [[1, 1, 2, 3, 2, 1]]


def test_sequence_sampler_shuffles_n_classes_times_k_instances():
    sampler = SequenceSampler(features(), way=4, instances=5, batch_size=3, seed=7)
    batch = sampler.sample()
    assert batch.x.shape == (3, 20, DIM) and batch.y.shape == (3, 20)
    assert batch.way == 4 and batch.query_y is batch.y
    for b in range(3):
        assert torch.bincount(batch.y[b], minlength=4).tolist() == [5, 5, 5, 5]
        assert sorted(batch.instance[b].tolist()) == sorted(list(range(1, 6)) * 4)
    assert not torch.equal(batch.y[0], batch.y[0].sort().values)  # shuffled, not class-major
    # the same episodes as EpisodeSampler with that seed, only reordered
    episodes = EpisodeSampler(features(), 4, 5, 0, seed=7).sample_batch(3)
    assert torch.equal(batch.classes, episodes.classes)
    again = SequenceSampler(features(), way=4, instances=5, batch_size=3, seed=7).sample()
    assert torch.equal(again.x, batch.x) and torch.equal(again.y, batch.y)


def test_make_sequences_keeps_each_image_with_its_label():
    episodes = EpisodeSampler(features(), 3, 2, 0, seed=1).sample_batch(2)
    order = torch.tensor([[5, 0, 3, 1, 4, 2], [0, 1, 2, 3, 4, 5]])
    batch = make_sequences(episodes, order)
    assert torch.equal(batch.x[0, 0], episodes.support_x[0, 5])
    assert torch.equal(batch.y[0], episodes.support_y[0, order[0]])
    with pytest.raises(ValueError, match="permutation"):
        make_sequences(episodes, torch.zeros(2, 6, dtype=torch.long))


@pytest.mark.parametrize("name", ["lstm", "mann-key", "mann-add", "mann-sharp", "mann-bind"])
def test_no_label_leakage_outputs_depend_only_on_earlier_labels(name):
    """Changing the label of step t changes no output up to step t, and does change step t+1."""
    model = sequence_models(way=3)[name].double().eval()
    batch = SequenceSampler(features(), 3, 4, batch_size=2, seed=0).sample()
    batch = SequenceBatch(batch.x.double(), batch.y, batch.instance, batch.classes)
    t = 5
    other = batch.y.clone()
    other[:, t] = (other[:, t] + 1) % 3
    changed = SequenceBatch(batch.x, other, batch.instance, batch.classes)
    with torch.no_grad():
        before, after = model(batch), model(changed)
    torch.testing.assert_close(after[:, : t + 1], before[:, : t + 1], rtol=0, atol=1e-12)
    assert (after[:, t + 1] - before[:, t + 1]).abs().max() > 1e-6  # the label is used, later


def test_accuracy_by_instance_on_a_hand_example():
    y = torch.tensor([[0, 1, 0, 1]])
    batch = SequenceBatch(torch.zeros(1, 4, 2), y, instance_numbers(y, 2), torch.tensor([[3, 4]]))
    logits = F.one_hot(torch.tensor([[1, 1, 0, 0]]), 2).float()  # right at steps 1 and 2
    table = accuracy_by_instance(logits, batch, presentations=(1, 2, 3))
    assert table[0, :2].tolist() == [0.5, 0.5] and table[0, 2].isnan()


# --- MANN: read and LRUA equations ------------------------------------------------------------


def test_read_weights_sum_to_one():
    generator = torch.Generator().manual_seed(0)
    keys = torch.randn(3, 2, 5, generator=generator)
    memory = torch.randn(3, 7, 5, generator=generator)
    memory[0] = 0.0  # an empty memory reads uniformly, without nan
    weights = cosine_read_weights(keys, memory)
    assert weights.shape == (3, 2, 7) and (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2))
    torch.testing.assert_close(weights[0], torch.full((2, 7), 1 / 7))
    # the weights are a softmax of cosine similarities
    cosine = F.cosine_similarity(keys[1][:, None], memory[1][None], dim=-1)
    torch.testing.assert_close(weights[1], cosine.softmax(-1))

    model = sequence_models(way=3)["mann-key"]
    trace = model.run(SequenceSampler(features(), 3, 4, batch_size=2).sample())
    assert trace.read_weights.shape == (2, 12, 2, 10)
    torch.testing.assert_close(trace.read_weights.sum(-1), torch.ones(2, 12, 2))


def test_lrua_usage_update_matches_its_definition_by_hand():
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.3]])  # w^u_{t-1}
    lu = least_used(usage, n=2)  # the 2 smallest usages: slots 1 and 3
    assert lu.tolist() == [[0.0, 1.0, 0.0, 1.0]]
    previous_read = torch.tensor([[[0.7, 0.1, 0.1, 0.1]]])  # w^r_{t-1}, one head
    gate = torch.tensor([[0.25]])  # σ(α)
    write = lrua_write_weights(previous_read, lu, gate)
    # 0.25 · [0.7, 0.1, 0.1, 0.1] + 0.75 · [0, 1, 0, 1]
    torch.testing.assert_close(write, torch.tensor([[[0.175, 0.775, 0.025, 0.775]]]))
    read = torch.tensor([[[0.1, 0.2, 0.3, 0.4]]])  # w^r_t
    new = usage_update(usage, read, write, gamma=0.95)
    # 0.95 · [0.5, 0.1, 0.9, 0.3] + [0.1, 0.2, 0.3, 0.4] + [0.175, 0.775, 0.025, 0.775]
    torch.testing.assert_close(new, torch.tensor([[0.75, 1.07, 1.18, 1.46]]))


def test_least_used_breaks_ties_by_slot_and_marks_exactly_n():
    assert least_used(torch.zeros(1, 5), n=2).tolist() == [[1.0, 1.0, 0.0, 0.0, 0.0]]
    with pytest.raises(ValueError, match="n=6"):
        least_used(torch.zeros(1, 5), n=6)


def test_write_zeroes_the_least_used_slot_then_adds():
    memory = torch.arange(8.0).view(1, 4, 2)
    usage = torch.tensor([[0.5, 0.1, 0.9, 0.3]])  # slot 1 is least used: zeroed first
    weights = torch.tensor([[[0.0, 1.0, 0.0, 0.5]]])
    key = torch.tensor([[[10.0, 20.0]]])
    new = write_memory(memory, weights, key, usage)
    expected = torch.tensor([[[0.0, 1.0], [10.0, 20.0], [4.0, 5.0], [11.0, 17.0]]])
    torch.testing.assert_close(new, expected)
    assert memory[0, 1].tolist() == [2.0, 3.0]  # the input is not modified


def test_bind_writes_the_previous_add_vector_with_the_label_just_given():
    """write="bind": step t writes v_t = [a_{t-1}, onehot(y_{t-1})] under the LRUA weights."""
    model = sequence_models(way=3)["mann-bind"].double()
    assert model.row_width == 6 + 3
    batch = SequenceSampler(features(), 3, 4, batch_size=2, seed=0).sample()
    x, y = batch.x.double()[:, :2], batch.y[:, :2]
    with torch.no_grad():
        trace = model.run(SequenceBatch(x, y, batch.instance[:, :2], batch.classes))
        # a_1, by hand: the controller's first step starts from h = c = 0 and r = 0, and its
        # label input is 0 (nothing given yet)
        gates = model.input_gates(torch.cat([x[:, 0], torch.zeros(2, 3, dtype=x.dtype)], -1))
        i, _, g, o = gates.chunk(4, dim=-1)
        h = torch.sigmoid(o) * torch.tanh(torch.sigmoid(i) * torch.tanh(g))
        add = torch.tanh(model.interface(h)[:, -2 * 6 :]).view(2, 2, 6)  # one per head
    assert trace.memory.shape == (2, 10, 9)
    # step 1 writes v_1 = [a_0 = 0, no label] = 0. Step 2 zeroes a slot (which holds 0) and
    # writes v_2 = [a_1, onehot(y_1)], head h under its weights w^w_2,h: the memory is their sum
    label = F.one_hot(y[:, 0], 3).double()[:, None].expand(2, 2, 3)
    vectors = torch.cat([add, label], dim=-1)  # [B, heads, 9]
    expected = trace.write_weights[:, 1].transpose(1, 2) @ vectors
    torch.testing.assert_close(trace.memory, expected)


# --- hypernetwork --------------------------------------------------------------------------------


@pytest.mark.parametrize(("way", "shot"), [(5, 1), (3, 2)])
def test_hypernet_output_shape_matches_the_head_it_parameterizes(way, shot):
    torch.manual_seed(0)
    model = HyperNet(Conv4(hidden=8), feature_dim=8).eval()
    episode = EpisodeSampler(blob_images(), way, shot, 3, seed=0).sample()
    with torch.no_grad():
        logits = model(episode)
        support = model.features(episode.support_x)
        head = model.head_parameters(support, episode.support_y, way)
        linear = nn.Linear(8, way)  # the base network's head
        assert {k: v.shape for k, v in head.items()} == {
            k: v.shape for k, v in linear.state_dict().items()
        }
        queries = model.features(episode.query_x)
        torch.testing.assert_close(functional_call(linear, head, (queries,)), logits)
    assert logits.shape == (way * 3, way)


def test_untrained_generator_gives_the_cosine_prototype_classifier():
    torch.manual_seed(0)
    model = HyperNet(nn.Identity(), feature_dim=DIM)
    episode = EpisodeSampler(features(), 4, 3, 2, seed=0).sample()
    with torch.no_grad():
        support = F.normalize(episode.support_x, dim=-1)
        centres = F.one_hot(episode.support_y, 4).T.float() @ support / 3
        cosine = F.cosine_similarity(episode.query_x[:, None], centres[None], dim=-1)
        torch.testing.assert_close(model(episode), 10.0 * cosine)


# --- learning and input checks ------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lstm", "mann-key", "mann-add", "mann-bind"])
def test_sequence_models_loss_falls_with_fit(name):
    model = sequence_models(way=3)[name]
    sampler = SequenceSampler(features(), way=3, instances=4, batch_size=16, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    history = fit(model, sampler, 60, optimizer=optimizer, progress=False, log_every=10)
    assert history.loss[-1] < 0.95 * history.loss[0], history.loss  # log 3 = 1.099 at chance
    assert history.accuracy[-1] > 0.4  # chance is 1/3
    accuracy = instance_accuracy(model, SequenceSampler(features(), 3, 4, 8, seed=1), 2, (1, 4))
    assert list(accuracy) == [1, 4] and accuracy[4].n == 16  # one score per episode


def test_hypernet_loss_falls_on_a_tiny_task():
    torch.manual_seed(0)
    model = HyperNet(Conv4(hidden=8), feature_dim=8)
    sampler = EpisodeSampler(blob_images(), 5, 1, 3, seed=0)
    history = fit(model, sampler, 30, progress=False, log_every=10)
    assert history.loss[-1] < 0.5 * history.loss[0], history.loss


def test_bad_input_names_the_argument():
    batch = SequenceSampler(features(), 3, 2, batch_size=1).sample()
    with pytest.raises(ValueError, match="feature_dim=5"):
        BlackBoxLSTM(3, nn.Identity(), feature_dim=5)(batch)
    with pytest.raises(ValueError, match="way=3"):
        MANN(4, nn.Identity(), feature_dim=DIM)(batch)
    with pytest.raises(ValueError, match="write="):
        MANN(write="erase")
    with pytest.raises(ValueError, match="heads=0"):
        MANN(heads=0)
    with pytest.raises(ValueError, match="y has shape"):
        BlackBoxLSTM(3, nn.Identity(), feature_dim=DIM)(
            SequenceBatch(batch.x[0], batch.y[0], batch.instance[0], batch.classes)
        )
    with pytest.raises(ValueError, match="batch_size=0"):
        SequenceSampler(features(), 3, 2, batch_size=0)
    with pytest.raises(ValueError, match="feature_dim=8"):
        HyperNet(nn.Identity(), feature_dim=8, generator=HyperNet(feature_dim=4).generator)
