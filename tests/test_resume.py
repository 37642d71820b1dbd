"""Resumable training: a run killed mid-way and resumed ends with the same weights as a run that
was never interrupted (issue 9), and bad state files give clear errors, never a silent restart."""

from __future__ import annotations

import dataclasses
import io
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from metalearn_course.checkpoints import read_checkpoint
from metalearn_course.data.episodes import EpisodeSampler
from metalearn_course.gradient import MAML, conv4_classifier, meta_batches
from metalearn_course.train import fit

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks (tests/conftest.py)

STEPS, SAVE_EVERY = 12, 4

# The run the tests interrupt: tiny second-order MAML, meta-batches, Adam and a schedule, so the
# optimizer's moments, the schedule's position and the sampler's position must all be restored.
RUN = f"""
import time
import torch
from metalearn_course.data.episodes import EpisodeSampler
from metalearn_course.engine import fast
from metalearn_course.gradient import MAML, conv4_classifier
from metalearn_course.gradient.functional import MetaBatches
from metalearn_course.train import fit

class Interrupted(Exception):
    pass

class InterruptedBatches(MetaBatches):
    # a stream that fails after `limit` meta-batches, like a crash between two saves
    limit = None
    def __next__(self):
        self.limit -= 1
        if self.limit < 0:
            raise Interrupted
        return super().__next__()

def run(state=None, resume=False, steps={STEPS}, save_every={SAVE_EVERY}, slow=0.0,
        interrupt_after=None):
    torch.manual_seed(0)
    images = torch.randint(0, 256, (12, 6, 28, 28), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    model = fast(MAML(conv4_classifier(way=3, hidden=4), inner_steps=1, inner_lr=0.1))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batches = InterruptedBatches(EpisodeSampler(images, 3, 1, 2, seed=5), 2)
    batches.limit = interrupt_after if interrupt_after is not None else 10**9

    def schedule(step):
        time.sleep(slow)  # slow=0.2: room for a test to kill the process between two steps
        return 0.9**step

    fit(model, batches, steps, optimizer=optimizer, lr_schedule=schedule,
        state=state, save_every=save_every, resume=resume, progress=False)
    return model
"""


def run(**kwargs) -> torch.nn.Module:
    namespace: dict = {}
    exec(RUN, namespace)
    return namespace["run"](**kwargs)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sampler_resumes_exactly_within_and_across_blocks():
    images = torch.randint(0, 256, (30, 20, 8, 8), dtype=torch.uint8)
    reference = list(EpisodeSampler(images, 5, 1, 3, seed=3).take(900))
    for given in (0, 1, 7, 255, 256, 257, 600):
        sampler = EpisodeSampler(images, 5, 1, 3, seed=3)
        for _ in range(given):
            sampler.sample()
        buffer = io.BytesIO()
        torch.save(sampler.state_dict(), buffer)  # what a state file holds
        buffer.seek(0)
        resumed = EpisodeSampler(images, 5, 1, 3, seed=3)
        resumed.load_state_dict(torch.load(buffer, weights_only=True))
        for expected, got in zip(reference[given : given + 300], resumed.take(300), strict=True):
            assert torch.equal(expected.support_x, got.support_x)
            assert torch.equal(expected.query_y, got.query_y)
            assert torch.equal(expected.classes, got.classes)


def test_sampler_state_of_another_seed_is_refused():
    images = torch.rand(10, 5, 4, 4)
    state = EpisodeSampler(images, 2, 1, 1, seed=0).state_dict()
    with pytest.raises(ValueError, match=r"seed=0.*seed=1"):
        EpisodeSampler(images, 2, 1, 1, seed=1).load_state_dict(state)


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path):
    reference = run()
    state = tmp_path / "state.pt"
    namespace: dict = {}
    exec(RUN, namespace)
    with pytest.raises(namespace["Interrupted"]):  # after step 10: steps 9-10 are lost
        namespace["run"](state=state, interrupt_after=10)
    assert read_checkpoint(state)["step"] == 8
    resumed = run(state=state, resume=True)
    assert read_checkpoint(state)["step"] == STEPS
    assert same_weights(resumed, reference)


def test_killed_process_resumes_to_the_same_weights(tmp_path):
    """SIGKILL, as a cluster's scheduler or an out-of-memory killer would: no handler runs."""
    state = tmp_path / "state.pt"
    script = tmp_path / "train.py"
    script.write_text(RUN + f"\nrun(state={str(state)!r}, slow=0.2)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, str(script)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not state.exists():  # the first state is written after SAVE_EVERY steps
            assert process.poll() is None, "the training process ended before saving a state"
            assert time.monotonic() < deadline, "no state file after 120 s"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    saved = read_checkpoint(state)["step"]
    assert 0 < saved < STEPS, saved  # killed mid-way
    resumed = run(state=state, resume=True)
    assert same_weights(resumed, run())
    assert not list(tmp_path.glob(".state.pt.*.tmp")), "a half-written state file was left"


def test_truncated_or_corrupt_state_is_a_clear_error_not_a_restart(tmp_path):
    state = tmp_path / "state.pt"
    run(state=state, steps=SAVE_EVERY)
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        run(state=state, resume=True, steps=SAVE_EVERY)
    state.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        run(state=state, resume=True, steps=SAVE_EVERY)


def test_state_files_are_not_overwritten_or_mixed_up(tmp_path):
    state = tmp_path / "state.pt"
    run(state=state, steps=SAVE_EVERY)
    with pytest.raises(FileExistsError, match="resume=True"):
        run(state=state)
    with pytest.raises(ValueError, match=r"other settings \(differing: steps\)"):
        run(state=state, resume=True)
    with pytest.raises(ValueError, match="state=<file>"):
        run(resume=True)
    with pytest.raises(ValueError, match="save_every=0"):
        run(state=tmp_path / "other.pt", save_every=0)


def test_resume_without_a_state_file_starts_at_step_zero(tmp_path):
    assert same_weights(run(state=tmp_path / "new.pt", resume=True), run())


def test_state_needs_a_sampler_with_a_position(tmp_path):
    model = MAML(conv4_classifier(way=3, hidden=4), 1, 0.1)
    images = torch.rand(6, 4, 28, 28)
    batches = (b for b in meta_batches(EpisodeSampler(images, 3, 1, 1), 2))
    with pytest.raises(ValueError, match="state_dict"):
        fit(model, batches, 2, state=tmp_path / "s.pt", progress=False)


def test_sequence_sampler_resumes_exactly():
    from metalearn_course.memory import SequenceSampler

    images = torch.randint(0, 255, (12, 20, 28, 28), dtype=torch.uint8)
    reference = SequenceSampler(images, way=3, instances=4, batch_size=5, seed=7)
    for _ in range(3):
        reference.sample()
    saved = reference.state_dict()
    expected = [reference.sample() for _ in range(4)]
    resumed = SequenceSampler(images, way=3, instances=4, batch_size=5, seed=7)
    resumed.load_state_dict(saved)
    for want, got in zip(expected, [resumed.sample() for _ in range(4)], strict=True):
        assert torch.equal(want.x, got.x) and torch.equal(want.y, got.y)


def test_rl2_interrupted_and_resumed_equals_uninterrupted(tmp_path, monkeypatch):
    from metalearn_course.rl import RL2Config, rl2

    config = RL2Config(arms=3, horizon=8, hidden=8, tasks_per_update=8, updates=6, seed=3)
    reference, _ = rl2.train_rl2(config)
    state = tmp_path / "rl2.pt"
    real = rl2.training_tasks
    calls = []

    def stop_at_the_fifth_update(*args):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # updates 4 and 5 are lost: the last state is of update 3
        return real(*args)

    monkeypatch.setattr(rl2, "training_tasks", stop_at_the_fifth_update)
    with pytest.raises(KeyboardInterrupt):
        rl2.train_rl2(config, state=state, save_every=3)
    assert read_checkpoint(state)["update"] == 3
    monkeypatch.setattr(rl2, "training_tasks", real)
    with pytest.raises(FileExistsError, match="resume=True"):
        rl2.train_rl2(config, state=state)
    with pytest.raises(ValueError, match="other settings"):
        rl2.train_rl2(dataclasses.replace(config, lr=1e-3), state=state, resume=True)
    resumed, history = rl2.train_rl2(config, state=state, save_every=3, resume=True)
    assert len(history.reward) == 6 and read_checkpoint(state)["update"] == 6
    want, got = reference.state_dict(), resumed.state_dict()
    assert all(torch.equal(want[name], got[name]) for name in want)
