"""The library's architecture is kept by import-linter (contracts in pyproject.toml, run by
`make lint`): the contracts hold on the repository, and a forbidden import breaks them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter not installed")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    # cwd first on sys.path: the copy of the package under `root` is the one analysed
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def copy_of_the_library(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "metalearn_course", tmp_path / "metalearn_course",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    "module, forbidden, contract",
    [
        # a method reaching up into the training loop (layers)
        ("metric/protonet.py", "from metalearn_course import train", "Layers"),
        # the data layer reaching up to a method (layers)
        ("data/episodes.py", "import metalearn_course.gradient", "Layers"),
        # one core family importing another (independence)
        ("rl/bandits.py", "import metalearn_course.metric", "self-contained"),
        # the lesson reaching for the speed layer (forbidden)
        ("gradient/maml.py", "import metalearn_course.engine", "never imports the engine"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path, module, forbidden, contract):
    root = copy_of_the_library(tmp_path)
    path = root / "metalearn_course" / module
    path.write_text(path.read_text() + f"\n{forbidden}  # noqa\n")
    result = lint_imports(root)
    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken and module.split("/")[-1].removesuffix(".py") in broken


def public_definitions() -> dict[str, list[str]]:
    """Every public function and class the library defines, name -> the modules defining it."""
    import importlib
    import inspect
    import pkgutil

    import metalearn_course

    found: dict[str, list[str]] = {}
    for info in pkgutil.walk_packages(metalearn_course.__path__, "metalearn_course."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if obj.__module__ == info.name:  # defined here, not imported
                found.setdefault(name, []).append(info.name)
    return found


def test_one_name_per_idea():
    """No two public functions or classes of the library share a name (with different
    meanings): a reader who meets `gradient` or `Classifier` knows which one it is."""
    duplicates = {n: m for n, m in public_definitions().items() if len(m) > 1}
    assert not duplicates, duplicates
