"""Data parallelism (issue 9): a 2-process gloo run, launched with torchrun, takes the same steps
as one process training on the whole meta-batch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from metalearn_course.data.episodes import EpisodeSampler
from metalearn_course.distributed import Process, launch, shard, unwrap, wrap
from metalearn_course.gradient import MAML, conv4_classifier, meta_batches

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks (tests/conftest.py)

# One script for both runs: under torchrun it is one of two processes, alone it is the reference.
RUN = """
import sys
import torch
from metalearn_course.data.episodes import EpisodeSampler
from metalearn_course.distributed import launch, wrap
from metalearn_course.engine import fast
from metalearn_course.gradient import MAML, conv4_classifier, meta_batches
from metalearn_course.train import fit

torch.set_num_threads(1)
process = launch("cpu")
torch.manual_seed(0)
images = torch.randint(0, 256, (12, 6, 28, 28), dtype=torch.uint8,
                       generator=torch.Generator().manual_seed(1))
model = fast(MAML(conv4_classifier(way=3, hidden=4), inner_steps=1, inner_lr=0.1))
method = wrap(model, process)
# SGD, not Adam: batch norm cancels the conv biases, so their exact gradient is 0 and what
# remains is rounding noise, which Adam would scale up to full-size steps in either run.
optimizer = torch.optim.SGD(method.parameters(), lr=0.5, momentum=0.9)
batches = meta_batches(EpisodeSampler(images, 3, 1, 2, seed=5), 4, process.rank, process.world)
fit(method, batches, 3, optimizer=optimizer, progress=False)
if process.main:
    torch.save(model.state_dict(), sys.argv[1])
"""


def test_shards_partition_the_meta_batch():
    images = torch.rand(10, 4, 8, 8)
    batch = EpisodeSampler(images, 3, 1, 2, seed=0).sample_batch(6)
    parts = [shard(batch, r, 3) for r in range(3)]
    assert all(p.support_x.shape[0] == 2 for p in parts)
    assert torch.equal(torch.cat([p.query_x for p in parts]), batch.query_x)
    assert torch.equal(torch.cat([p.classes for p in parts]), batch.classes)
    with pytest.raises(ValueError, match="multiple of 4"):
        shard(batch, 0, 4)
    with pytest.raises(ValueError, match="multiple of 4"):
        meta_batches(EpisodeSampler(images, 3, 1, 2), 6, 0, 4)
    with pytest.raises(ValueError, match="rank=2, world=2"):
        meta_batches(EpisodeSampler(images, 3, 1, 2), 6, 2, 2)


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    process = launch("cpu")
    assert process == Process(0, 1, torch.device("cpu")) and process.main
    model = torch.nn.Linear(2, 2)
    assert wrap(model, process) is model and unwrap(model) is model


def test_two_gloo_processes_equal_one(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, double = tmp_path / "single.pt", tmp_path / "double.pt"
    subprocess.run([sys.executable, str(script), str(single)], env=env, check=True, timeout=300)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    subprocess.run(
        [*launcher, "--nproc_per_node=2", str(script), str(double)],
        env=env,
        check=True,
        timeout=300,
    )
    one, two = torch.load(single, weights_only=True), torch.load(double, weights_only=True)
    assert one.keys() == two.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6, msg=name)
    torch.manual_seed(0)  # the weights before training, to see that training moved them
    start = MAML(conv4_classifier(way=3, hidden=4), 1, 0.1).state_dict()
    for name in (
        "model.body.encoder.0.0.weight",
        "model.body.encoder.3.1.bias",
        "model.head.weight",
    ):
        assert not torch.allclose(one[name], start[name]), name
