"""The `reproduce` command (issue 9): every recipe is complete and cites its table, a quick run
writes its results and checkpoint, refuses to overwrite them, resumes, and runs under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from metalearn_course import reproduce
from metalearn_course.cli import main as cli
from metalearn_course.train import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")


OTHERS = [r for r in reproduce.RECIPES.values() if r.method in ("mann", "rl2")]
FEW_SHOT = [r for r in reproduce.RECIPES.values() if r not in OTHERS]


@pytest.mark.parametrize("recipe", FEW_SHOT, ids=lambda r: f"{r.method}-{r.setting}")
def test_recipe_is_complete(recipe):
    assert recipe.method in reproduce.METHODS
    assert "quick" in recipe.budgets and recipe.budgets.keys() <= set(reproduce.BUDGETS)
    assert recipe.budgets.keys() & {"paper", "book"}
    assert "arXiv:" in recipe.source and "Table" in recipe.source
    assert 0 < recipe.published <= 100
    assert recipe.setting == f"omniglot-{recipe.way}w{recipe.shot}s"
    for name, budget in recipe.budgets.items():
        assert budget.steps >= 1 and budget.lr > 0, name
        assert budget.test_episodes >= (20 if name == "quick" else 600), name
        reproduce.schedule_factor(budget, 0)  # a known schedule
        model = reproduce.METHODS[recipe.method](recipe, budget)
        assert sum(p.numel() for p in model.parameters()) > 0


def test_every_method_of_the_book_with_a_published_table_has_a_recipe():
    methods = {m for m, _ in reproduce.RECIPES}
    assert methods == {
        *("protonet", "matching", "relation", "siamese"),
        *("maml", "fomaml", "reptile", "metasgd", "anil"),
        *("mann", "rl2"),
    }
    assert {r.setting for r in OTHERS if r.method == "rl2"} == {
        f"bandits-k{k}n{n}" for k in (5, 10) for n in (10, 100, 500)
    }


@pytest.mark.parametrize("recipe", OTHERS, ids=lambda r: f"{r.method}-{r.setting}")
def test_mann_and_rl2_recipes_are_complete(recipe):
    assert "quick" in recipe.budgets and recipe.budgets.keys() & {"paper", "book"}
    assert "arXiv:" in recipe.source and "Table 1" in recipe.source
    for name, budget in recipe.budgets.items():
        if recipe.method == "mann":
            assert recipe.published == 82.8 and recipe.way == 5
            assert budget.test_batches * 100 >= (100 if name == "quick" else 1000), name
            model = reproduce.METHODS["mann"](recipe, budget)
            assert model.slots == budget.slots and model.heads == budget.heads
        else:
            k, n = budget.config.arms, budget.config.horizon
            assert recipe.setting == f"bandits-k{k}n{n}", name
            assert n / 2 < recipe.published <= n  # between random play and the best arm
            assert budget.eval_tasks >= (100 if name == "quick" else 1000), name
    if recipe.method == "rl2" and "book" in recipe.budgets:  # the notebooks' settings
        book = recipe.budgets["book"].config
        trials = 128 if recipe.setting == "bandits-k5n100" else 64
        assert (book.updates, book.tasks_per_update, book.hidden) == (280, trials, 64)


def test_list_names_every_recipe(capsys):
    cli(["reproduce", "--list"])
    listing = capsys.readouterr().out
    for method, setting in reproduce.RECIPES:
        assert any(method in line and setting in line for line in listing.splitlines())


def test_schedules():
    budget = reproduce.Budget(steps=100, lr=1.0, schedule="halve2000")
    assert reproduce.schedule_factor(budget, 1999) == 1.0
    assert reproduce.schedule_factor(budget, 4000) == 0.25
    cosine = reproduce.Budget(steps=100, lr=1.0, schedule="cosine")
    assert reproduce.schedule_factor(cosine, 0) == pytest.approx(0.2)  # warm-up over 5 steps
    assert reproduce.schedule_factor(cosine, 99) < 0.01
    linear = reproduce.Budget(steps=100, lr=1.0, schedule="linear")  # Reptile's ε
    assert reproduce.schedule_factor(linear, 0) == 1.0
    assert reproduce.schedule_factor(linear, 75) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="schedule='exponential'"):
        reproduce.schedule_factor(reproduce.Budget(1, 1.0, schedule="exponential"), 0)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["relationnet"], "not reproducible yet"),
        (["maml", "--setting", "omniglot-3w1s"], "no setting 'omniglot-3w1s'"),
        (["maml", "--setting", "omniglot-20w1s", "--budget", "book"], "no 'book' budget"),
    ],
)
def test_bad_requests_are_clear_errors(argv, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        cli(["reproduce", *argv, "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_missing_cuda_names_the_flag(tmp_path):
    with pytest.raises(SystemExit, match=r"--device cuda: .*no CUDA GPU.*'cpu'"):
        cli(["reproduce", "maml", "--budget", "quick", "--device", "cuda", "--out", str(tmp_path)])


def args(out, **overrides):
    defaults = dict(
        list=False,
        method="maml",
        setting="omniglot-5w1s",
        budget="quick",
        device="cpu",
        out=out,
        resume=False,
        seed=0,
    )
    return SimpleNamespace(**{**defaults, **overrides})


def test_quick_run_writes_results_refuses_overwrite_and_resumes(tmp_path, capsys):
    out = tmp_path / "maml"
    reproduce.main(args(out))
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "maml" and results["budget"] == "quick"
    assert results["n"] == 20 and 0 <= results["score"] <= 1 and results["metric"] == "accuracy"
    assert results["published"] == 98.7 and "arXiv:1703.03400" in results["source"]
    assert results["versions"]["torch"] == torch.__version__
    assert results["config"]["steps"] == 3 and results["device"] == "cpu"
    assert read_checkpoint(out / "model.pt")["budget"] == "quick"
    assert read_checkpoint(out / "state.pt")["step"] == 3
    assert "over 20 test episodes" in capsys.readouterr().out

    with pytest.raises(SystemExit, match="--resume"):  # never overwrites a finished run
        reproduce.main(args(out))
    reproduce.main(args(out, resume=True))  # finished: nothing to train, the same evaluation
    again = json.loads((out / "results.json").read_text())
    assert again["score"] == results["score"] and again["ci95"] == results["ci95"]


@pytest.mark.parametrize("method", ["siamese", "matching", "protonet", "relation"])
def test_metric_quick_runs(method, tmp_path):
    out = tmp_path / method
    reproduce.main(args(out, method=method, setting="omniglot-20w1s"))
    results = json.loads((out / "results.json").read_text())
    assert results["setting"] == "omniglot-20w1s" and results["method"] == method
    assert (
        results["config"]["train_way"]
        == reproduce.RECIPES[method, "omniglot-20w1s"].budgets["book"].train_way
    )
    assert 0 <= results["score"] <= 1


def test_torchrun_splits_the_meta_batch(tmp_path):
    """Two gloo processes, each with one of the two tasks of the quick meta-batch, train the
    same model as one process (the DDP equivalence itself: tests/test_distributed.py)."""
    single, double = tmp_path / "single", tmp_path / "double"
    reproduce.main(args(single))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "metalearn_course.cli", "reproduce", "maml", "--budget", "quick"]
    subprocess.run([*command, "--device", "cpu", "--out", str(double)], env=env, check=True)
    one = json.loads((single / "results.json").read_text())
    two = json.loads((double / "results.json").read_text())
    assert two["processes"] == 2 and one["processes"] == 1
    assert two["score"] == pytest.approx(one["score"], abs=0.01)
    a = read_checkpoint(single / "model.pt")["state_dict"]
    b = read_checkpoint(double / "model.pt")["state_dict"]
    # Close, not equal: Adam's first steps are about lr·sign(g), so a gradient component at
    # rounding-noise level (float sums in another order) can flip. Conv biases left out: batch
    # norm cancels them, their whole gradient is such noise. Exact equivalence with SGD:
    # tests/test_distributed.py.
    for name in a:
        if not name.endswith(".0.bias") and a[name].is_floating_point():
            assert (b[name] - a[name]).norm() <= 1e-2 * a[name].norm(), name


def test_out_of_memory_names_the_flags(tmp_path, monkeypatch):
    import metalearn_course.train as train

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train, "fit", exhausted)
    with pytest.raises(SystemExit, match=r"out of memory.*--device cpu"):
        reproduce.main(args(tmp_path / "oom"))
    assert not (tmp_path / "oom" / "results.json").exists()


@pytest.mark.parametrize(
    "method, setting",
    [("reptile", "omniglot-5w1s"), ("metasgd", "omniglot-5w1s"), ("anil", "omniglot-20w1s")],
)
def test_later_gradient_quick_runs(method, setting, tmp_path):
    out = tmp_path / method
    reproduce.main(args(out, method=method, setting=setting))
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == method and results["n"] == 20
    assert 0 <= results["score"] <= 1 and "Table" in results["source"]


def test_mann_quick_run_scores_every_presentation(tmp_path, capsys):
    out = tmp_path / "mann"
    reproduce.main(args(out, method="mann", setting=None))  # the method's own setting
    results = json.loads((out / "results.json").read_text())
    assert results["setting"] == "omniglot-5w-sequences" and results["n"] == 100
    assert results["metric"] == "accuracy at the 2nd presentation"
    curve = results["by_presentation"]
    assert list(curve) == ["1", "2", "3", "5", "10"] and curve["2"][0] == results["score"]
    assert read_checkpoint(out / "state.pt")["step"] == 3
    assert "published: 82.8" in capsys.readouterr().out


def test_rl2_quick_run_writes_results_and_resumes(tmp_path, capsys):
    out = tmp_path / "rl2"
    reproduce.main(args(out, method="rl2", setting="bandits-k10n10"))
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "total reward per trial" and results["n"] == 100
    assert 0 <= results["score"] <= 10 and results["published"] == 6.7
    assert results["config"]["config"]["arms"] == 10
    assert read_checkpoint(out / "state.pt")["update"] == 3
    assert "over 100 test tasks" in capsys.readouterr().out
    reproduce.main(args(out, method="rl2", setting="bandits-k10n10", resume=True))
    assert json.loads((out / "results.json").read_text())["score"] == results["score"]


def test_outer_optimizers():
    """Reptile's step is SGD at rate ε on θ - φ̄; Meta-SGD's α gets its own Adam rate."""
    reptile = reproduce.RECIPES["reptile", "omniglot-5w1s"]
    plan = reptile.budgets["paper"]
    optimizer = reproduce.outer_optimizer(reproduce.METHODS["reptile"](reptile, plan), plan)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 1.0
    assert reproduce.schedule_factor(plan, plan.steps - 1) == pytest.approx(1 / plan.steps)

    metasgd = reproduce.RECIPES["metasgd", "omniglot-5w1s"]
    plan = metasgd.budgets["book"]
    model = reproduce.METHODS["metasgd"](metasgd, plan)
    optimizer = reproduce.outer_optimizer(model, plan)
    theta, alpha = optimizer.param_groups
    assert (theta["lr"], alpha["lr"]) == (plan.lr, plan.alpha_lr) == (3e-3, 0.01)
    assert len(theta["params"]) + len(alpha["params"]) == len(list(model.parameters()))
    assert {id(p) for p in alpha["params"]} == {id(p) for p in model.alpha.parameters()}
