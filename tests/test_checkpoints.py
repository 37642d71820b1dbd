"""metalearn_course.checkpoints: the one resume rule of every trainer (the whole configuration
must match), and atomic, safe files."""

from __future__ import annotations

import pytest
import torch
from helpers import blob_images
from torch import nn

from metalearn_course.checkpoints import (
    TrainingState,
    load_checkpoint,
    optimizer_settings,
    read_checkpoint,
    save_checkpoint,
)
from metalearn_course.data.episodes import EpisodeSampler
from metalearn_course.metric import ProtoNet
from metalearn_course.nets import Conv4, mode
from metalearn_course.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks (tests/conftest.py)


def test_training_state_refuses_another_configuration(tmp_path):
    path = tmp_path / "state.pt"
    model = nn.Linear(2, 2)
    TrainingState(path, {"steps": 4, "betas": (0.9, 0.999)}, resume=False).save(model, step=2)
    # tuples are saved as lists: the same values compare equal after a round trip
    saved = TrainingState(path, {"steps": 4, "betas": (0.9, 0.999)}, resume=True).load()
    assert saved["step"] == 2
    with pytest.raises(ValueError, match=r"differing: betas, steps"):
        TrainingState(path, {"steps": 5, "betas": (0.5, 0.999)}, resume=True).load()
    with pytest.raises(FileExistsError, match="resume=True"):
        TrainingState(path, {"steps": 4}, resume=False)
    with pytest.raises(ValueError, match="state=<file>"):
        TrainingState(None, {}, resume=True)
    assert TrainingState(tmp_path / "new.pt", {}, resume=True).load() is None  # fresh start


def test_optimizer_settings_are_the_starting_hyperparameters():
    weight = nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.Adam([weight], lr=0.01, betas=(0.5, 0.9))
    before = optimizer_settings(optimizer)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.1 ** (step + 1))
    scheduler.step()  # the current rate moves; the run's setting does not
    assert optimizer_settings(optimizer) == before
    assert before["type"] == "Adam" and before["groups"][0]["lr"] == 0.01
    assert before["groups"][0]["betas"] == (0.5, 0.9) and before["groups"][0]["size"] == 1


def _protonet_run(tmp_path, lr: float, resume: bool) -> None:
    torch.manual_seed(0)
    model = ProtoNet(Conv4(hidden=8))
    sampler = EpisodeSampler(blob_images(), 3, 1, 2, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    fit(model, sampler, 2, optimizer=optimizer, state=tmp_path / "s.pt", resume=resume,
        progress=False)  # fmt: skip


def test_fit_resumes_only_with_the_same_optimizer_settings(tmp_path):
    _protonet_run(tmp_path, lr=0.01, resume=False)
    _protonet_run(tmp_path, lr=0.01, resume=True)  # same settings: continues (here: is done)
    with pytest.raises(ValueError, match=r"differing: optimizer"):
        _protonet_run(tmp_path, lr=0.02, resume=True)


def test_checkpoint_round_trip_and_refusals(tmp_path):
    model = nn.Linear(3, 2)
    path = tmp_path / "deep" / "model.pt"
    save_checkpoint(model, path, step=7, curve=[0.5, 0.25])
    fresh = nn.Linear(3, 2)
    assert load_checkpoint(fresh, path) == {"step": 7, "curve": [0.5, 0.25]}
    assert torch.equal(fresh.weight, model.weight)
    assert not list(path.parent.glob("*.tmp"))  # written through a temporary file, renamed
    with pytest.raises(ValueError, match="state_dict"):
        save_checkpoint(model, path, state_dict=1)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_checkpoint(path)


def test_mode_sets_and_restores_each_submodule():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    net[1].eval()  # frozen batch norm on purpose: must stay so after the block
    with mode(net, training=False):
        assert not any(m.training for m in net.modules())
    assert net.training and net[0].training and not net[1].training
    with mode(net, training=True):
        assert all(m.training for m in net.modules())
    assert not net[1].training
    with mode(None, training=False):  # nothing to switch: a plain function as the method
        pass
