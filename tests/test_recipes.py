"""Every book budget of metalearn_course.recipes is what its notebook runs (issue 24).

A recipe's book budget and its notebook's parameters cell state the same settings twice, once
for `metalearn-course reproduce` and once for a reader of the chapter. `NOTEBOOK_FIELDS` says
which notebook parameter is which recipe field; the test reads the cell tagged "parameters"
(literal assignments only) and fails as soon as the two disagree, so a change to one without the
other cannot go unnoticed.
"""

from __future__ import annotations

import ast
import json
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
