"""Every method keeps its tensors on the device it is given (issue 10, the GPU path).

A notebook's ``DEVICE = "cuda"`` moves the model and the episodes there; any tensor a method
creates without ``device=`` (labels, masks, prototypes, memories, hidden states) would land on
the CPU and fail on a GPU. Without a GPU the same mistake is caught on PyTorch's "meta" device:
tensors with shapes and no values, on which an operation mixing devices raises exactly as it
does between CPU and CUDA. Training-mode forward, loss and backward, then an eval-mode forward
(the adaptation of the gradient-based methods runs inside it), all on "meta".
"""

from __future__ import annotations

import pytest
import torch

from metalearn_course.data import EpisodeSampler
from metalearn_course.gradient import ANIL, MAML, MetaSGD, Reptile, conv4_classifier
from metalearn_course.memory import MANN, BlackBoxLSTM, HyperNet
from metalearn_course.memory.black_box import SequenceSampler
from metalearn_course.metric import MatchingNet, ProtoNet, RelationNet, SiameseNet
from metalearn_course.nets import Conv4
from metalearn_course.train import _loss_function

DEVICE = torch.device("meta")
IMAGES = torch.randint(0, 256, (12, 20, 28, 28), dtype=torch.uint8)

EPISODIC = {
    "protonet": lambda: ProtoNet(Conv4(hidden=8)),
    "matching": lambda: MatchingNet(Conv4(hidden=8), learn_scale=True),
    "relation": lambda: RelationNet(map_size=5, class_map="mean"),
    "siamese": lambda: SiameseNet(Conv4(hidden=8, pooled=2), 8 * 7 * 7),
    "maml": lambda: MAML(conv4_classifier(5, hidden=8), 2, 0.4, batched=False),
    "maml-vmap": lambda: MAML(conv4_classifier(5, hidden=8), 1, 0.4, batched=True),
    "fomaml": lambda: MAML(conv4_classifier(5, hidden=8), 1, 0.4, first_order=True),
    "metasgd": lambda: MetaSGD(conv4_classifier(5, hidden=8), 1, 0.4, batched=False),
    "anil": lambda: ANIL(conv4_classifier(5, hidden=8), 2, 0.4, batched=False),
    "reptile": lambda: Reptile(conv4_classifier(5, hidden=8), 2, 1e-3, batched=False),
    "hypernet": lambda: HyperNet(Conv4(hidden=8), feature_dim=8),
}


def on_meta(module: torch.nn.Module) -> torch.nn.Module:
    module = module.to(DEVICE)
    assert all(t.device == DEVICE for t in [*module.parameters(), *module.buffers()])
    return module


def train_then_eval(method: torch.nn.Module, batch) -> None:
    method.train()
    output = method(batch)
    loss = _loss_function(method, None)(output, batch)
    assert output.device == DEVICE and loss.device == DEVICE
    loss.backward()
    assert all(p.grad is None or p.grad.device == DEVICE for p in method.parameters())
    method.eval()
    assert method(batch).device == DEVICE


@pytest.mark.parametrize("name", EPISODIC)
def test_episodic_methods_stay_on_the_device(name):
    torch.manual_seed(0)
    method = on_meta(EPISODIC[name]())
    sampler = EpisodeSampler(IMAGES, way=5, shot=1, queries=2, seed=0)
    batched = name in {"maml", "maml-vmap", "fomaml", "metasgd", "anil", "reptile"}
    episode = sampler.sample_batch(2) if batched else sampler.sample()
    train_then_eval(method, episode.to(DEVICE))


@pytest.mark.parametrize("name", ["lstm", "mann"])
def test_sequence_learners_stay_on_the_device(name):
    torch.manual_seed(0)
    method = on_meta(BlackBoxLSTM(way=5, hidden=16) if name == "lstm" else MANN(5, hidden=16))
    batch = SequenceSampler(IMAGES, way=5, instances=2, batch_size=2, seed=0).sample()
    train_then_eval(method, batch.to(DEVICE))


def test_a_tensor_made_on_the_wrong_device_is_caught():
    """The test can fail: the mistake it looks for raises on meta as it would on a GPU."""
    labels = torch.arange(5)  # created without device=, on the CPU
    prototypes = torch.zeros(5, 8, device=DEVICE)
    with pytest.raises(RuntimeError, match="device"):
        prototypes.index_add(0, labels, torch.ones(5, 8, device=DEVICE))
