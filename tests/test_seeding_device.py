"""seed_everything and pick_device. GPU branches run on any machine by monkeypatching torch."""

import os
import random

import numpy as np
import pytest
import torch

from metalearn_course.device import pick_device
from metalearn_course.seeding import seed_everything


@pytest.fixture
def restore_torch_globals():
    """seed_everything changes process-wide switches; put them back for the other tests."""
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    yield
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), np.random.rand(), torch.rand(3)  # noqa: NPY002


def test_same_seed_same_numbers(restore_torch_globals):
    seed_everything(123)
    first = draws()
    seed_everything(123)
    second = draws()
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])
    seed_everything(124)
    assert draws()[0] != first[0]


def test_deterministic_switches(restore_torch_globals, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    seed_everything(0, deterministic=True, threads=1)
    assert torch.are_deterministic_algorithms_enabled()
    assert torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    assert torch.get_num_threads() == 1

    seed_everything(0, deterministic=False)
    assert not torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.deterministic


def test_an_existing_cublas_setting_is_kept(restore_torch_globals, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    seed_everything(0)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [({"seed": -1}, "seed"), ({"seed": 2**32}, "seed"), ({"seed": 0, "threads": 0}, "threads")],
)
def test_bad_seed_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        seed_everything(**kwargs)


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine with the given accelerators."""

    def make(cuda: int = 0, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return make


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(0, False, "cpu"), (0, True, "mps"), (1, True, "cuda"), (2, False, "cuda")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda=cuda, mps=mps)
    assert pick_device() == torch.device(expected)
    assert pick_device("auto") == torch.device(expected)


def test_explicit_devices(machine):
    machine(cuda=2, mps=True)
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("cuda") == torch.device("cuda")
    assert pick_device("cuda:1") == torch.device("cuda", 1)
    assert pick_device(torch.device("mps")) == torch.device("mps")
    with pytest.raises(ValueError, match="only 2 CUDA"):
        pick_device("cuda:2")


def test_missing_accelerators_are_clear_errors(machine):
    machine(cuda=0, mps=False)
    for name in ("cuda", "cuda:0", "mps"):
        with pytest.raises(ValueError, match=r"use 'auto'.* or 'cpu'"):
            pick_device(name)
    with pytest.raises(ValueError, match="not a device name"):
        pick_device("gpu")
    with pytest.raises(ValueError, match="not supported"):
        pick_device("meta")
