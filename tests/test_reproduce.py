"""The `reproduce` command (issue 9): every recipe is complete and cites its table, a quick run
writes its results and checkpoint, scores the weights it saved on the shared test episodes,
refuses to overwrite them, resumes, and runs under torchrun. That each book budget is what its
notebook runs: tests/test_recipes.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from metalearn_course import reproduce
from metalearn_course.checkpoints import load_checkpoint, read_checkpoint
from metalearn_course.cli import main as cli
from metalearn_course.data import EpisodeSampler, load_omniglot
from metalearn_course.evaluate import few_shot_accuracies, mean_ci95
from metalearn_course.recipes import (
    BUDGETS,
    RECIPES,
    LinearDecay,
    StepDecay,
    WarmupCosine,
)
from metalearn_course.rl import BanditTasks, RL2Agent, RL2Policy, play

pytestmark = pytest.mark.usefixtures("one_thread")


OTHERS = [r for r in RECIPES.values() if r.method in ("mann", "rl2")]
IN_CONTEXT = [r for r in RECIPES.values() if r.method == "icl-regression"]
FEW_SHOT = [r for r in RECIPES.values() if r not in OTHERS + IN_CONTEXT]


@pytest.mark.parametrize("recipe", FEW_SHOT, ids=lambda r: f"{r.method}-{r.setting}")
def test_recipe_is_complete(recipe):
    assert recipe.method in reproduce.MODELS
    assert "quick" in recipe.budgets and recipe.budgets.keys() <= set(BUDGETS)
    assert recipe.budgets.keys() & {"paper", "book"}
    assert "arXiv:" in recipe.source and "Table" in recipe.source
    assert 0 < recipe.published <= 100
    assert recipe.setting == f"omniglot-{recipe.way}w{recipe.shot}s"
    for name, budget in recipe.budgets.items():
        assert budget.steps >= 1 and budget.lr > 0, name
        assert budget.test_episodes >= (20 if name == "quick" else 600), name
        assert 0 < reproduce.lr_schedule(budget.schedule, budget.steps)(0) <= 1
        model = reproduce.build_model(recipe, budget)
        assert sum(p.numel() for p in model.parameters()) > 0


def test_every_method_of_the_book_with_a_published_table_has_a_recipe():
    methods = {m for m, _ in RECIPES}
    assert methods == {
        *("protonet", "matching", "relation", "siamese"),
        *("maml", "fomaml", "reptile", "metasgd", "anil"),
        *("mann", "rl2"),
        "icl-regression",  # Garg et al. show it in figures: the recipe says so
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
            model = reproduce.build_model(recipe, budget)
            assert model.slots == budget.slots and model.heads == budget.heads
        else:
            k, n = budget.config.arms, budget.config.horizon
            assert recipe.setting == f"bandits-k{k}n{n}", name
            assert n / 2 < recipe.published <= n  # between random play and the best arm
            assert budget.eval_tasks >= (100 if name == "quick" else 1000), name


@pytest.mark.parametrize("recipe", IN_CONTEXT, ids=lambda r: f"{r.method}-{r.setting}")
def test_in_context_recipes_are_complete(recipe):
    assert "quick" in recipe.budgets and recipe.budgets.keys() & {"paper", "book"}
    assert "arXiv:2208.01066" in recipe.source and "no number" in recipe.source
    assert recipe.published is None  # a figure: nothing to quote, and nothing invented
    for name, budget in recipe.budgets.items():
        assert budget.test_prompts >= (20 if name == "quick" else 1000), name
        model = reproduce.build_model(recipe, budget)
        assert model.dim == recipe.task.dim and model.points >= recipe.task.points


def test_in_context_quick_run_scores_the_last_example(tmp_path, capsys):
    out = tmp_path / "icl"
    reproduce.command(args(out, method="icl-regression", setting="linear-d5n10-noise0.5"))
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "squared error / d after 9 examples" and results["n"] == 20
    assert results["published"] is None and "a figure only" in capsys.readouterr().out
    curves = results["by_examples"]
    assert set(curves) == {"transformer", "least squares", "ridge"}
    assert all(len(curve) == 10 for curve in curves.values())
    assert results["score"] == pytest.approx(curves["transformer"][-1])
    # after 9 noisy examples in 5 dimensions ridge is near the noise (σ²/d = 0.05); a model
    # trained for 3 steps is near predicting 0 (about 1): the score is the model's, not ridge's
    assert curves["ridge"][-1] < 0.5 < results["score"]
    assert (out / "model.pt").exists()


def test_list_names_every_recipe(capsys):
    cli(["reproduce", "--list"])
    listing = capsys.readouterr().out
    for method, setting in RECIPES:
        assert any(method in line and setting in line for line in listing.splitlines())


def test_schedules():
    halve = reproduce.lr_schedule(StepDecay(every=2000, factor=0.5), 100)
    assert halve(1999) == 1.0 and halve(2000) == 0.5 and halve(4000) == 0.25
    cosine = reproduce.lr_schedule(WarmupCosine(), 100)
    assert cosine(0) == pytest.approx(0.2)  # warm-up over 5 steps
    assert cosine(4) == pytest.approx(1.0, abs=0.01) and cosine(99) < 0.01
    linear = reproduce.lr_schedule(LinearDecay(), 100)  # Reptile's ε
    assert linear(0) == 1.0 and linear(75) == pytest.approx(0.25)
    with pytest.raises(TypeError, match="schedule='halve2000'"):
        reproduce.lr_schedule("halve2000", 100)  # no schedules spelled as strings


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


def rescored(out, method, setting):
    """The accuracy of the weights a quick run saved, recomputed on the shared test episodes
    (the test classes, seed + 1 = 1, the budget's queries and episodes): what results.json
    must report."""
    recipe = RECIPES[method, setting]
    model = reproduce.build_model(recipe, recipe.quick).to(memory_format=torch.channels_last)
    load_checkpoint(model, out / "model.pt")
    images = load_omniglot("vinyals-test").images
    test = EpisodeSampler(images, recipe.way, recipe.shot, recipe.quick.test_queries, seed=1)
    return mean_ci95(few_shot_accuracies(model, test, recipe.quick.test_episodes, progress=False))


def test_quick_run_writes_results_refuses_overwrite_and_resumes(tmp_path, capsys):
    out = tmp_path / "maml"
    reproduce.command(args(out))
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "maml" and results["budget"] == "quick"
    assert results["n"] == 20 and results["metric"] == "accuracy"
    score = rescored(out, "maml", "omniglot-5w1s")
    assert (results["score"], results["ci95"]) == (score.mean, score.ci95)
    assert results["published"] == 98.7 and "arXiv:1703.03400" in results["source"]
    assert results["versions"]["torch"] == torch.__version__
    assert results["config"]["steps"] == 3 and results["device"] == "cpu"
    assert results["config"]["schedule"] == "WarmupCosine()"
    assert read_checkpoint(out / "model.pt")["budget"] == "quick"
    assert read_checkpoint(out / "state.pt")["step"] == 3
    assert "over 20 test episodes" in capsys.readouterr().out

    with pytest.raises(SystemExit, match="--resume"):  # never overwrites a finished run
        reproduce.command(args(out))
    reproduce.command(args(out, resume=True))  # finished: nothing to train, the same evaluation
    again = json.loads((out / "results.json").read_text())
    assert again["score"] == results["score"] and again["ci95"] == results["ci95"]


@pytest.mark.parametrize("method", ["siamese", "matching", "protonet", "relation"])
def test_metric_quick_runs(method, tmp_path):
    out = tmp_path / method
    reproduce.command(args(out, method=method, setting="omniglot-20w1s"))
    results = json.loads((out / "results.json").read_text())
    assert results["setting"] == "omniglot-20w1s" and results["method"] == method
    assert results["config"]["train_way"] == RECIPES[method, "omniglot-20w1s"].book.train_way
    assert results["score"] == rescored(out, method, "omniglot-20w1s").mean


def test_torchrun_splits_the_meta_batch(tmp_path):
    """Two gloo processes, each with one of the two tasks of the quick meta-batch, train the
    same model as one process (the DDP equivalence itself: tests/test_distributed.py)."""
    single, double = tmp_path / "single", tmp_path / "double"
    reproduce.command(args(single))
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
    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(reproduce, "fit", exhausted)
    with pytest.raises(SystemExit, match=r"out of memory.*--device cpu"):
        reproduce.command(args(tmp_path / "oom"))
    assert not (tmp_path / "oom" / "results.json").exists()


@pytest.mark.parametrize(
    "method, setting",
    [("reptile", "omniglot-5w1s"), ("metasgd", "omniglot-5w1s"), ("anil", "omniglot-20w1s")],
)
def test_later_gradient_quick_runs(method, setting, tmp_path):
    out = tmp_path / method
    reproduce.command(args(out, method=method, setting=setting))
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == method and results["n"] == 20 and "Table" in results["source"]
    assert results["score"] == rescored(out, method, setting).mean


def test_mann_quick_run_scores_every_presentation(tmp_path, capsys):
    out = tmp_path / "mann"
    reproduce.command(args(out, method="mann", setting=None))  # the method's own setting
    results = json.loads((out / "results.json").read_text())
    assert results["setting"] == "omniglot-5w-sequences" and results["n"] == 100
    assert results["metric"] == "accuracy at the 2nd presentation"
    curve = results["by_presentation"]
    assert list(curve) == ["1", "2", "3", "5", "10"] and curve["2"][0] == results["score"]
    assert read_checkpoint(out / "state.pt")["step"] == 3
    assert "published: 82.8" in capsys.readouterr().out


def test_rl2_quick_run_writes_results_and_resumes(tmp_path, capsys):
    out = tmp_path / "rl2"
    reproduce.command(args(out, method="rl2", setting="bandits-k10n10"))
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "total reward per trial" and results["n"] == 100
    assert results["published"] == 6.7
    # the total reward of the saved policy on the evaluation tasks 0 .. 99, seed 0
    quick = RECIPES["rl2", "bandits-k10n10"].quick
    policy = RL2Policy(10, quick.config.hidden)
    load_checkpoint(policy, out / "model.pt")
    tasks = BanditTasks.from_seeds(range(quick.eval_tasks), 10, 10)
    assert results["score"] == mean_ci95(play(RL2Agent(policy), tasks, seed=0).sum(1)).mean
    assert results["config"]["config"]["arms"] == 10
    assert read_checkpoint(out / "state.pt")["update"] == 3
    assert "over 100 test tasks" in capsys.readouterr().out
    reproduce.command(args(out, method="rl2", setting="bandits-k10n10", resume=True))
    assert json.loads((out / "results.json").read_text())["score"] == results["score"]


def test_outer_optimizers():
    """Reptile's step is SGD at rate ε on θ - φ̄; Meta-SGD's α gets its own Adam rate."""
    reptile = RECIPES["reptile", "omniglot-5w1s"]
    plan = reptile.paper
    optimizer = reproduce.outer_optimizer(reproduce.build_model(reptile, plan), plan)
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 1.0
    schedule = reproduce.lr_schedule(plan.schedule, plan.steps)
    assert schedule(plan.steps - 1) == pytest.approx(1 / plan.steps)

    metasgd = RECIPES["metasgd", "omniglot-5w1s"]
    plan = metasgd.book
    model = reproduce.build_model(metasgd, plan)
    optimizer = reproduce.outer_optimizer(model, plan)
    theta, alpha = optimizer.param_groups
    assert (theta["lr"], alpha["lr"]) == (plan.lr, plan.alpha_lr) == (3e-3, 0.01)
    assert len(theta["params"]) + len(alpha["params"]) == len(list(model.parameters()))
    assert {id(p) for p in alpha["params"]} == {id(p) for p in model.alpha.parameters()}

    maml = RECIPES["maml", "omniglot-5w1s"]  # Adam on everything
    model = reproduce.build_model(maml, maml.book)
    [group] = reproduce.outer_optimizer(model, maml.book).param_groups
    assert group["lr"] == 3e-3 and len(group["params"]) == len(list(model.parameters()))


def test_budgets_of_the_wrong_kind_are_refused():
    from metalearn_course.recipes import FewShot, Recipe

    book = RECIPES["protonet", "omniglot-5w1s"].book
    with pytest.raises(TypeError, match="MAMLBudget"):
        Recipe(method="maml", task=FewShot(way=5, shot=1), source="-", published=1.0, paper=book)
    alpha = RECIPES["metasgd", "omniglot-5w1s"].book
    with pytest.raises(ValueError, match="Meta-SGD"):
        Recipe(method="maml", task=FewShot(way=5, shot=1), source="-", published=1.0, paper=alpha)
