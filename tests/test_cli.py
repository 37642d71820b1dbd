"""The ``metalearn-course`` command's expected errors, and ``make lab`` as root.

An expected failure (data missing or damaged, a bad request) prints "metalearn-course COMMAND:
message" on stderr and exits non-zero, without a traceback; a bug keeps its traceback. The
command runs as the user runs it: the console script's module in a fresh process.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from metalearn_course import cli

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*argv: str, data: Path, mirror: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "METALEARN_DATA": str(data), "METALEARN_OMNIGLOT_MIRROR": str(mirror)}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "metalearn_course.cli", *argv],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def assert_clean_failure(result: subprocess.CompletedProcess[str], command: str) -> str:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"metalearn-course {command}: "), result.stderr
    return result.stderr


def test_data_with_a_mirror_folder_that_does_not_exist(tmp_path):
    mirror = tmp_path / "no-such-mirror"
    err = assert_clean_failure(run_cli("data", data=tmp_path / "data", mirror=mirror), "data")
    assert f"METALEARN_OMNIGLOT_MIRROR={mirror} has no images_background.zip" in err
    assert "export METALEARN_OMNIGLOT_MIRROR=/path/to/folder" in err  # the fix


def test_data_with_a_truncated_zip_in_the_mirror(tmp_path):
    whole = io.BytesIO()
    with zipfile.ZipFile(whole, "w") as zf:
        zf.writestr("images_background/Alpha/character01/0001_01.png", os.urandom(2000))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "images_background.zip").write_bytes(whole.getvalue()[:1000])  # cut mid-member
    err = assert_clean_failure(run_cli("data", data=tmp_path / "data", mirror=mirror), "data")
    assert f"{mirror / 'images_background.zip'} is not a readable zip file" in err


def test_data_folder_that_is_a_file(tmp_path):
    (tmp_path / "omniglot").write_text("not a folder")
    err = assert_clean_failure(run_cli("data", data=tmp_path, mirror=tmp_path / "m"), "data")
    assert "is a file; pass a folder as root= or METALEARN_DATA" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["relationnet"], "method 'relationnet' is not reproducible yet; use one of"),
        (["maml", "--setting", "omniglot-3w1s"], "maml has no setting 'omniglot-3w1s'; choose"),
    ],
)
def test_reproduce_bad_requests(argv, message, tmp_path):
    result = run_cli("reproduce", *argv, "--out", str(tmp_path / "run"), data=tmp_path,
                     mirror=tmp_path / "m")  # fmt: skip
    assert message in assert_clean_failure(result, "reproduce")
    assert not (tmp_path / "run").exists()


def test_usage_errors_exit_with_status_2(tmp_path):
    result = run_cli("reproduce", "maml", "--budget", "huge", data=tmp_path, mirror=tmp_path)
    assert result.returncode == 2
    assert "metalearn-course reproduce: error: argument --budget" in result.stderr
    assert "Traceback" not in result.stderr


def test_command_messages_share_the_prefix(tmp_path):
    missing = tmp_path / "missing.ipynb"
    with pytest.raises(SystemExit) as stop:
        cli.main(["refresh", str(missing)])
    assert stop.value.code == f"metalearn-course refresh: no such notebook: {missing}"


def test_refresh_goes_on_after_a_failing_notebook(tmp_path, monkeypatch, capsys):
    """A notebook that fails is left as it was and its run kept for reading; the others are
    still refreshed, and the command fails naming it."""
    import tempfile

    import nbformat

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the failed run goes

    def notebook(name: str, source: str) -> Path:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
        nbformat.write(nb, tmp_path / name)
        return tmp_path / name

    bad = notebook("bad.ipynb", "print('trained'); raise AssertionError('a claim fails')")
    good = notebook("good.ipynb", "print(1 + 1)")
    before = bad.read_text()
    with pytest.raises(SystemExit) as stop:
        cli.refresh([bad, good], timeout=120)
    assert stop.value.code == (
        f"refresh: 1 of 2 notebooks failed and were left unchanged: {bad}"
        " (their runs are printed above)"
    )
    assert bad.read_text() == before
    assert nbformat.read(good, as_version=4).cells[0].outputs[0]["text"] == "2\n"
    run = nbformat.read(tmp_path / "metalearn-refresh" / "bad.ipynb", as_version=4)
    assert run.cells[0].outputs[0]["text"] == "trained\n"  # the run up to the error, kept
    assert "a claim fails" in str(run.cells[0].outputs)
    assert f"FAILED {bad}: AssertionError: a claim fails" in capsys.readouterr().out


def test_a_bug_keeps_its_traceback(monkeypatch):
    import metalearn_course.data as data

    def broken(split):
        raise KeyError("a bug, not a user error")

    monkeypatch.setattr(data, "load_omniglot", broken)
    with pytest.raises(KeyError, match="a bug"):  # not turned into a SystemExit message
        cli.main(["data"])


# make lab: Jupyter refuses to start as root unless given --allow-root; others keep its default.


def make_lab(env: dict[str, str] | None = None) -> str:
    env = {k: v for k, v in (env or os.environ).items() if not k.startswith("MAKE")}
    result = subprocess.run(
        ["make", "-n", "lab"], cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        timeout=60,
    )  # fmt: skip
    # the command that starts JupyterLab (not `jupyter labextension enable`, run before it)
    (line,) = [line for line in result.stdout.splitlines() if re.search(r"jupyter lab(\s|$)", line)]
    return line


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@needs_make
def test_make_lab_allows_root_for_the_current_user():
    assert ("--allow-root" in make_lab()) == (os.getuid() == 0)


@needs_make
@pytest.mark.parametrize("uid, allowed", [("0", True), ("1000", False)])
def test_make_lab_allows_root_only_for_root(uid, allowed, tmp_path):
    fake = tmp_path / "id"  # `id -u` as root or as another user
    fake.write_text(f"#!/bin/sh\necho {uid}\n")
    fake.chmod(0o755)
    line = make_lab({**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}"})
    assert ("--allow-root" in line) == allowed, line
