"""Every method keeps its tensors on the device it is given (issue 10, the GPU path).

A notebook's ``DEVICE = "cuda"`` moves the model and the episodes there; any tensor a method
creates without ``device=`` (labels, masks, prototypes, memories, hidden states) would land on
the CPU and fail on a GPU. Without a GPU the same mistake is caught the other way round: the
method and its episodes stay on the CPU, with real values (so every input check runs as it
does in the notebooks), while ``with torch.device("meta")`` makes PyTorch's "meta" device the
default. A tensor made without ``device=`` then lands on "meta", and an operation mixing it with
the method's CPU tensors raises exactly as one mixing CPU and CUDA tensors does. The library
does not know: nothing in it treats the meta device specially. Training-mode forward, loss and
backward, then an eval-mode forward (the adaptation of the gradient-based methods runs inside
it), all under the meta default.
"""

from __future__ import annotations

import pytest
import torch

from metalearn_course.data import EpisodeSampler
from metalearn_course.engine import fast
from metalearn_course.gradient import ANIL, MAML, MetaSGD, Reptile, conv4_classifier
from metalearn_course.memory import MANN, BlackBoxLSTM, HyperNet
from metalearn_course.memory.black_box import SequenceSampler
from metalearn_course.metric import MatchingNet, ProtoNet, RelationNet, SiameseNet
from metalearn_course.nets import Conv4
from metalearn_course.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks (tests/conftest.py)

DEVICE = torch.device("cpu")  # where the method and its episodes are
DEFAULT = torch.device("meta")  # where a tensor made without device= lands
IMAGES = torch.randint(0, 256, (12, 20, 28, 28), dtype=torch.uint8)

EPISODIC = {
    "protonet": lambda: ProtoNet(Conv4(hidden=8)),
    "matching": lambda: MatchingNet(Conv4(hidden=8), learn_scale=True),
    "relation": lambda: RelationNet(map_size=5, class_map="mean"),
    "siamese": lambda: SiameseNet(Conv4(hidden=8, pooled=2), 8 * 7 * 7),
    "maml": lambda: MAML(conv4_classifier(5, hidden=8), 2, 0.4),
    "maml-fast": lambda: fast(MAML(conv4_classifier(5, hidden=8), 2, 0.4)),
    "maml-vmap": lambda: fast(MAML(conv4_classifier(5, hidden=8), 1, 0.4), vmap=True),
    "fomaml": lambda: MAML(conv4_classifier(5, hidden=8), 1, 0.4, first_order=True),
    "metasgd": lambda: fast(MetaSGD(conv4_classifier(5, hidden=8), 1, 0.4)),
    "anil": lambda: fast(ANIL(conv4_classifier(5, hidden=8), 2, 0.4)),
    "reptile": lambda: Reptile(conv4_classifier(5, hidden=8), 2, 1e-3),
    "reptile-fast": lambda: fast(Reptile(conv4_classifier(5, hidden=8), 2, 1e-3), vmap=True),
    "hypernet": lambda: HyperNet(Conv4(hidden=8), feature_dim=8),
}
BATCHED = {"maml", "maml-fast", "maml-vmap", "fomaml", "metasgd", "anil", "reptile", "reptile-fast"}


def train_then_eval(method: torch.nn.Module, batch) -> None:
    """One fit step (forward, the method's own loss, backward, optimizer step), then an
    eval-mode forward, with "meta" as the default device."""
    assert all(t.device == DEVICE for t in [*method.parameters(), *method.buffers()])
    with DEFAULT:
        assert torch.empty(1).device == DEFAULT
        history = fit(method, [batch], steps=1, progress=False)
        method.eval()
        output = method(batch)
    assert len(history.loss) == 1 and output.device == DEVICE
    assert all(p.grad is None or p.grad.device == DEVICE for p in method.parameters())
    assert all(t.device == DEVICE for t in [*method.parameters(), *method.buffers()])


@pytest.mark.parametrize("name", EPISODIC)
def test_episodic_methods_stay_on_the_device(name):
    torch.manual_seed(0)
    method = EPISODIC[name]()
    sampler = EpisodeSampler(IMAGES, way=5, shot=1, queries=2, seed=0)
    episode = sampler.sample_batch(2) if name in BATCHED else sampler.sample()
    train_then_eval(method, episode)


@pytest.mark.parametrize("name", ["lstm", "mann"])
def test_sequence_learners_stay_on_the_device(name):
    torch.manual_seed(0)
    method = BlackBoxLSTM(way=5, hidden=16) if name == "lstm" else MANN(5, hidden=16)
    batch = SequenceSampler(IMAGES, way=5, instances=2, batch_size=2, seed=0).sample()
    train_then_eval(method, batch)


def test_a_tensor_made_without_device_is_caught():
    """The test can fail: a tensor made without device= lands on meta, and mixing it with the
    method's tensors raises as mixing CPU and CUDA tensors would."""
    prototypes = torch.zeros(5, 8, device=DEVICE)
    with DEFAULT:
        labels = torch.arange(5)  # the mistake: no device=
        assert labels.device == DEFAULT
        with pytest.raises(RuntimeError, match="device"):
            prototypes.index_add(0, labels, torch.ones(5, 8, device=DEVICE))
        with pytest.raises(RuntimeError, match="device"):
            prototypes + torch.tensor(1.0)  # even a 0-dim tensor (CUDA would let it pass)
