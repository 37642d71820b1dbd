"""Every book budget of metalearn_course.recipes is what its notebook runs (issue 24).

A recipe's book budget and its notebook's parameters cell state the same settings twice, once
for `metalearn-course reproduce` and once for a reader of the chapter. `NOTEBOOK_FIELDS` says
which notebook parameter is which recipe field; the test reads the cell tagged "parameters"
(literal assignments only) and fails as soon as the two disagree, so a change to one without the
other cannot go unnoticed. Likewise a notebook's `if BUDGET == "full":` branch, applied to its
parameters cell, must give the recipe's paper budget, but for the listed DEPARTURES.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from metalearn_course.recipes import RECIPES, Bandits, Recipe

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class OneOf:
    """The recipe's value is one of the notebook's: a candidate the notebook chooses among on
    the validation classes, or one setting of the table the notebook runs."""

    path: str


@dataclass(frozen=True)
class AtMost:
    """The recipe's value is at most the notebook's (which chooses 1 .. that on validation)."""

    path: str


@dataclass(frozen=True)
class ForWay:
    """Equal, for the recipes of one test way only."""

    way: int
    path: str


# notebook -> {parameter: the recipe's field, as a path from the Recipe; a plain string: equal}
METRIC = {
    "TRAIN_WAY": "book.train_way",
    "TRAIN_SHOT": "book.train_shot",
    "TRAIN_QUERIES": "book.train_queries",
    "STEPS": "book.steps",
    "LR": "book.lr",
    "EPISODES": "book.test_episodes",
}
TEST = {"QUERIES": "book.test_queries", "EPISODES": "book.test_episodes"}
NOTEBOOK_FIELDS: dict[str, dict[str, str | OneOf | AtMost | ForWay]] = {
    "book/08_incontext/icl_regression.ipynb": {
        "DIM": "task.dim",
        "POINTS": "task.points",
        "NOISE": "task.noise",
        "STEPS": "book.steps",
        "BATCH": "book.batch",
        "D_MODEL": "book.d_model",
        "LAYERS": "book.layers",
        "HEADS": "book.heads",
        "LR": "book.lr",
        "TEST_PROMPTS": "book.test_prompts",
    },
    "book/02_metric/siamese.ipynb": {**METRIC, "QUERIES": "book.test_queries"},
    "book/02_metric/matching.ipynb": {**METRIC, "QUERIES": "book.test_queries"},
    "book/02_metric/protonet.ipynb": {**METRIC, "QUERIES": "book.test_queries"},
    "book/02_metric/relation.ipynb": {
        **METRIC,
        "QUERIES": ForWay(5, "book.test_queries"),
        "QUERIES_20WAY": ForWay(20, "book.test_queries"),
    },
    "book/03_gradient/maml_omniglot.ipynb": {
        "HIDDEN": "book.hidden",
        "INNER_LR": "book.inner_lr",
        "INNER_STEPS": "book.inner_steps",
        "META_BATCH": "book.meta_batch",
        "LR": "book.lr",
        "STEPS": "book.steps",
        "TRAIN_QUERIES": "book.train_queries",
        "MAX_TEST_STEPS": AtMost("book.eval_inner_steps"),
        **TEST,
    },
    "book/03_gradient/first_order_omniglot.ipynb": {
        "HIDDEN": "book.hidden",
        "INNER_LR": "book.inner_lr",
        "INNER_STEPS": "book.inner_steps",
        "META_BATCH": "book.meta_batch",
        "LR": "book.lr",
        "FOMAML_STEPS": "book.steps",
        "TRAIN_QUERIES": "book.train_queries",
        "FOMAML_TEST_STEPS": OneOf("book.eval_inner_steps"),
        **TEST,
    },
    # Meta-SGD's half; ANIL's book run is 5-way and has no recipe (its paper is 20-way only)
    "book/03_gradient/metasgd_anil_omniglot.ipynb": {
        "HIDDEN": "book.hidden",
        "META_BATCH": "book.meta_batch",
        "LR": "book.lr",
        "ALPHA_LR": "book.alpha_lr",
        "TRAIN_QUERIES": "book.train_queries",
        "ALPHA_INIT": "book.inner_lr",
        "METASGD_STEPS": "book.steps",
        **TEST,
    },
    "book/03_gradient/reptile_omniglot.ipynb": {
        "HIDDEN": "book.hidden",
        "REPTILE_STEPS": "book.steps",
        "REPTILE_META_BATCH": "book.meta_batch",
        "REPTILE_SHOTS": "book.train_shot",
        "REPTILE_INNER_STEPS": "book.inner_steps",
        "REPTILE_INNER_BATCH": "book.inner_batch",
        "REPTILE_INNER_LR": "book.inner_lr",
        "REPTILE_EPSILON": "book.lr",
        "REPTILE_TEST_STEPS": OneOf("book.eval_inner_steps"),
        "EVAL_INNER_BATCH": "book.eval_inner_batch",
        "TRAIN_QUERIES": "book.train_queries",
        **TEST,
    },
    "book/04_memory/mann_omniglot.ipynb": {
        "WAY": "task.way",
        "INSTANCES": "book.instances",
        "BATCH": "book.batch",
        "MANN_STEPS": "book.steps",
        "MANN_LR": "book.lr",
        "SLOTS": "book.slots",
        "HEADS": "book.heads",
        "WRITE": "book.write",
        "KEY_STRENGTH": "book.key_strength",
        "EVAL_BATCHES": "book.test_batches",
    },
    "book/05_rl/rl2_bandits.ipynb": {
        "ARMS": "task.arms",
        "HORIZON": "task.horizon",
        "UPDATES": "book.config.updates",
        "TASKS_PER_UPDATE": "book.config.tasks_per_update",
        "EVAL_TASKS": "book.eval_tasks",
    },
    # the table's other settings (its k = 5, n = 100 column is rl2_bandits' recipe)
    "book/05_rl/bandit_table.ipynb": {
        "ARMS": OneOf("task.arms"),
        "HORIZONS": OneOf("task.horizon"),
        "UPDATES": "book.config.updates",
        "TASKS_PER_UPDATE": "book.config.tasks_per_update",
        "EVAL_TASKS": "book.eval_tasks",
    },
}

BOOK_RECIPES = [recipe for recipe in RECIPES.values() if recipe.book is not None]


def parameters(notebook: str) -> dict[str, Any]:
    """The values of the notebook's cell tagged "parameters" (literal assignments only)."""
    cells = json.loads((ROOT / notebook).read_text())["cells"]
    [cell] = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    values = {}
    for statement in ast.parse("".join(cell["source"])).body:
        assert isinstance(statement, ast.Assign), f"{notebook}: {ast.unparse(statement)}"
        [target] = statement.targets
        assert isinstance(target, ast.Name), f"{notebook}: {ast.unparse(statement)}"
        values[target.id] = ast.literal_eval(statement.value)  # ValueError: not a literal
    return values


def field(recipe: Recipe, path: str) -> Any:
    value: Any = recipe
    for name in path.split("."):
        value = getattr(value, name)
    return value


@pytest.mark.parametrize("recipe", BOOK_RECIPES, ids=lambda r: f"{r.method}-{r.setting}")
def test_book_budget_is_what_the_notebook_runs(recipe):
    assert recipe.notebook in NOTEBOOK_FIELDS, f"say which of {recipe.notebook}'s values is which"
    values = parameters(recipe.notebook)
    checked = 0
    for name, expected in NOTEBOOK_FIELDS[recipe.notebook].items():
        assert name in values, f"{recipe.notebook} has no parameter {name}"
        if isinstance(expected, ForWay) and expected.way != recipe.way:
            continue
        path = expected if isinstance(expected, str) else expected.path
        actual, stated = field(recipe, path), values[name]
        message = f"{recipe.notebook}: {name} = {stated!r}, but the recipe's {path} = {actual!r}"
        match expected:
            case str() | ForWay():
                assert actual == stated, message
            case OneOf():
                assert actual in stated, message
            case AtMost():
                assert 1 <= actual <= stated, message
        checked += 1
    assert checked >= 5


def test_every_book_notebook_is_checked():
    assert {recipe.notebook for recipe in BOOK_RECIPES} == set(NOTEBOOK_FIELDS)
    for notebook in NOTEBOOK_FIELDS:
        assert (ROOT / notebook).exists(), notebook


def test_bandit_table_settings_have_book_recipes():
    values = parameters("book/05_rl/bandit_table.ipynb")
    for arms in values["ARMS"]:
        for horizon in values["HORIZONS"]:
            recipe = RECIPES["rl2", Bandits(arms=arms, horizon=horizon).name]
            assert recipe.book is not None, recipe.setting


RL2 = [recipe for recipe in RECIPES.values() if recipe.method == "rl2"]


@pytest.mark.parametrize("recipe", RL2, ids=lambda r: r.setting)
def test_rl2_configs_play_the_recipes_bandits(recipe):
    for name, budget in recipe.budgets.items():
        assert (budget.config.arms, budget.config.horizon) == (
            recipe.task.arms,
            recipe.task.horizon,
        ), name


# ---------------------------------------------------------------------------------------------
# The "full" budget: a notebook's `if BUDGET == "full":` branch sets the paper's schedule over
# its parameters cell. Applied to that cell, it must give the recipe's paper budget, field by
# field of NOTEBOOK_FIELDS (read with "paper." for "book."), but for the departures below.

FULL_BRANCH = re.compile(r"""BUDGET\s*==\s*["']full["']""")
BANDIT_TABLE = "book/05_rl/bandit_table.ipynb"
FULL_NOTEBOOKS = [
    "book/02_metric/siamese.ipynb",
    "book/02_metric/matching.ipynb",
    "book/02_metric/protonet.ipynb",
    "book/02_metric/relation.ipynb",
    "book/03_gradient/maml_omniglot.ipynb",
    "book/03_gradient/first_order_omniglot.ipynb",
    "book/03_gradient/reptile_omniglot.ipynb",
    BANDIT_TABLE,
]
ONE_MODEL = "one model, trained on 1-shot episodes, for every test shot (the paper: the test shot)"
# (notebook, parameter) -> why the notebook's full budget keeps a value that is not the paper's
DEPARTURES: dict[tuple[str, str], str] = {
    ("book/02_metric/siamese.ipynb", "TRAIN_SHOT"): ONE_MODEL,
    ("book/02_metric/matching.ipynb", "TRAIN_SHOT"): ONE_MODEL,
    ("book/02_metric/protonet.ipynb", "TRAIN_SHOT"): ONE_MODEL,
    # the recipe's paper budget is MAML's; the notebook keeps FOMAML's inner loop ("Meta-training
    # at a laptop budget": the first-order direction is poor at MAML's one step of 0.4)
    ("book/03_gradient/first_order_omniglot.ipynb", "INNER_STEPS"): "FOMAML's 5 inner steps",
    ("book/03_gradient/first_order_omniglot.ipynb", "INNER_LR"): "FOMAML's inner rate of 0.1",
    # the table's full budget adds n = 500 to the book's RL² runs; it is not Duan et al.'s schedule
    (BANDIT_TABLE, "UPDATES"): "the book's 280 PPO updates (the paper budget: 1000)",
    (BANDIT_TABLE, "TASKS_PER_UPDATE"): "rl2_bandits' 128 trials (the paper: 250,000 pulls)",
}


def as_paper(expected: str | OneOf | AtMost | ForWay) -> str | OneOf | AtMost | ForWay:
    if isinstance(expected, str):
        return expected.replace("book.", "paper.", 1)
    return dataclasses.replace(expected, path=expected.path.replace("book.", "paper.", 1))


def paper_field(recipe: Recipe, path: str) -> Any:
    value = field(recipe, path)
    if value is None and path in ("paper.train_way", "paper.train_shot"):
        return field(recipe, path.removeprefix("paper.train_"))  # None: the test way or shot
    return value


def code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def assigned(statement: ast.stmt) -> list[str]:
    """The names an assignment sets: one name, or a tuple of names."""
    if not isinstance(statement, ast.Assign) or len(statement.targets) != 1:
        return []
    [target] = statement.targets
    targets = target.elts if isinstance(target, ast.Tuple) else [target]
    return [t.id for t in targets if isinstance(t, ast.Name)]


def full_budget(notebook: str) -> tuple[dict[str, Any], set[str]]:
    """The parameters under BUDGET = "full", and the names its branch sets: the one top-level
    `if BUDGET == "full":` that assigns parameters, applied to the parameters cell's values."""
    values = parameters(notebook)
    branches = [
        statement.body
        for source in code_cells(ROOT / notebook)
        if FULL_BRANCH.search(source)  # (other cells may hold IPython syntax)
        for statement in ast.parse(source).body
        if isinstance(statement, ast.If) and ast.unparse(statement.test) == "BUDGET == 'full'"
    ]
    [branch] = [b for b in branches if any(set(assigned(s)) & values.keys() for s in b)]
    names: set[str] = set()
    for statement in branch:
        targets, source = assigned(statement), f"{notebook}: {ast.unparse(statement)}"
        assert isinstance(statement, ast.Assign) and targets, source
        assert set(targets) <= values.keys(), f"{source}: set only parameters here"
        # literals, or parameters as in `(*HORIZONS, 500)`: no builtins, no other names
        expression = compile(ast.Expression(statement.value), notebook, "eval")
        value = eval(expression, {"__builtins__": {}}, dict(values))
        values.update(zip(targets, value if len(targets) > 1 else [value], strict=True))
        names.update(targets)
    return values, names


def full_recipes(notebook: str) -> list[Recipe]:
    """The recipes whose paper budget the notebook's full budget stands for: those whose book
    budget it runs; the bandit table's adds n = 500, so all of RL²'s."""
    if notebook == BANDIT_TABLE:
        return RL2
    return [r for r in RECIPES.values() if r.notebook == notebook and r.paper is not None]


@pytest.mark.parametrize("notebook", FULL_NOTEBOOKS)
def test_full_budget_is_the_recipes_paper_budget(notebook: str) -> None:
    values, names = full_budget(notebook)
    fields = {name: as_paper(expected) for name, expected in NOTEBOOK_FIELDS[notebook].items()}
    assert names <= set(fields), f"{notebook}: say which recipe field {names - set(fields)} is"
    recipes = full_recipes(notebook)
    assert recipes, f"{notebook} has a full budget but no recipe with a paper budget"
    departed: set[str] = set()
    for recipe in recipes:
        for name, expected in fields.items():
            if isinstance(expected, ForWay) and expected.way != recipe.way:
                continue
            path = expected if isinstance(expected, str) else expected.path
            actual, stated = paper_field(recipe, path), values[name]
            match expected:
                case str() | ForWay():
                    agrees = actual == stated
                case OneOf():
                    agrees = actual in stated
                case AtMost():
                    agrees = 1 <= actual <= stated
            if not agrees and (notebook, name) in DEPARTURES:
                departed.add(name)
                continue
            assert agrees, (
                f'{notebook}: {name} = {stated!r} under BUDGET = "full", but'
                f" {recipe.method} {recipe.setting}'s {path} = {actual!r}"
            )
    listed = {name for nb, name in DEPARTURES if nb == notebook}
    assert listed == departed, f"{notebook}: {listed - departed} agree with the paper now"


def test_every_full_budget_is_checked() -> None:
    found = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "book").rglob("*.ipynb")
        if ".ipynb_checkpoints" not in path.parts
        and any(FULL_BRANCH.search(source) for source in code_cells(path))
    }
    assert found == set(FULL_NOTEBOOKS), f"list in FULL_NOTEBOOKS: {found ^ set(FULL_NOTEBOOKS)}"
