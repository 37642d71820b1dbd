"""The ``metalearn-course`` command.

``metalearn-course data`` fetches, verifies and caches Omniglot once (see
``metalearn_course.data.omniglot`` for where from, and the environment variables).

``metalearn-course reproduce METHOD --setting S --budget paper|book|quick`` trains and
evaluates one method at a paper's or the book's budget (``--list`` shows the recipes; see
``metalearn_course.reproduce``).

``metalearn-course refresh [NOTEBOOK ...]`` re-executes notebooks in place so that their stored
outputs (what the book publishes and what nbval compares against) come from the current code.
Without arguments it refreshes every notebook listed in ``_toc.yml`` and every lesson notebook
in ``lessons/source/``. Run it from the repository root, in the project's virtualenv
(``make refresh``). Each refreshed notebook records the machine it ran on (``machine()``) in
``metadata.metalearn.executed_on``: float results depend on the CPU's vector instructions, so the
test suite compares stored numbers digit for digit only on the same kind of machine.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

# what a carriage return overwrites: the start of a line up to a "\r" the line goes on after
OVERWRITTEN = re.compile(r"^.*\r(?=[^\n])", flags=re.MULTILINE)
ANSI_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


def toc_files(root: Path) -> list[str]:
    """Every page of ``_toc.yml``, as a path without suffix relative to ``root``."""
    import yaml  # installed with jupyter-book; only the authoring commands need it

    def files(node) -> list[str]:
        if isinstance(node, dict):
            own = [node[k] for k in ("root", "file") if k in node]
            return own + [f for v in node.values() for f in files(v)]
        if isinstance(node, list):
            return [f for item in node for f in files(item)]
        return []

    return files(yaml.safe_load((root / "_toc.yml").read_text()))


def toc_notebooks(root: Path) -> list[Path]:
    """Notebooks published by the book (``_toc.yml``) plus the lesson notebooks: the
    instructor's versions in ``lessons/source/``, not the copies nbgrader makes next to them."""
    notebooks = [root / f"{f}.ipynb" for f in toc_files(root) if (root / f"{f}.ipynb").exists()]
    source = root / "lessons" / "source"
    lessons = sorted(source.rglob("*.ipynb")) if source.exists() else []
    return notebooks + [nb for nb in lessons if ".ipynb_checkpoints" not in nb.parts]


def machine() -> dict[str, str]:
    """What stored float outputs depend on besides the code and the seeds.

    Training is deterministic on one machine, but the CPU kernels of ATen, oneDNN and MKL are
    chosen by the instruction set (AVX2, AVX-512, ...) and differ in rounding, so a run on
    another CPU takes a slightly different trajectory: same accuracy within its interval, other
    last digits. The thread count splits reductions differently, and torch itself may change
    kernels between versions.
    """
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    return {
        "cpu": cpu,
        "isa": torch.backends.cpu.get_cpu_capability(),
        "threads": str(torch.get_num_threads()),
        "torch": torch.__version__,
    }


def final_lines(outputs: list[dict]) -> list[dict]:
    """A cell's stream outputs as a terminal leaves them: each progress bar its final line.

    A kernel sends every refresh of a progress bar ("\\r 12%|...", "\\r 13%|...") as a message of
    its own, and nbclient stores each as an output: hundreds per training cell. Here all the
    outputs of one stream (stdout, stderr) are joined at the place of its first, and on each
    line the text up to a carriage return that the line goes on after is dropped: what a
    terminal or JupyterLab shows, and exactly the form nbval compares (its coalesce_streams),
    so a refreshed notebook still passes nbval. Other outputs pass unchanged, in order.
    """
    kept: list[dict] = []
    streams: dict[str, dict] = {}
    for output in outputs:
        if output.get("output_type") != "stream":
            kept.append(output)
        elif output["name"] in streams:
            streams[output["name"]]["text"] += output["text"]
        else:
            streams[output["name"]] = output
            kept.append(output)
    for output in streams.values():
        output["text"] = OVERWRITTEN.sub("", output["text"])
    return kept


def refresh(paths: list[Path], timeout: int = 1800) -> None:
    """Execute each notebook top to bottom and write its outputs back in place.

    A notebook that fails (an error, or in strict mode a claim of its comparison) is left as it
    was; its run up to the failing cell is written to ``<tmp>/metalearn-refresh/<name>.ipynb``
    for the author to read, and the other notebooks are still refreshed. The command then fails,
    naming every notebook that did.
    """
    import tempfile

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    for path in paths:  # all of them before the first (long) run: a typo fails at once
        if not path.exists():
            raise SystemExit(f"refresh: no such notebook: {path}")
    failed = []
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        # record_timing=False: no timestamps in cell metadata, so a refresh that changes no
        # output leaves the file byte-identical (clean diffs for reviewers).
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute()
        except CellExecutionError as error:
            run = Path(tempfile.gettempdir()) / "metalearn-refresh" / path.name
            run.parent.mkdir(exist_ok=True)
            nbformat.write(nb, run)
            plain = ANSI_COLOUR.sub("", str(error))  # the kernel colours its tracebacks
            lines = [line for line in plain.splitlines() if line.strip()]
            reason = lines[-1] if lines else type(error).__name__
            print(f"FAILED {path}: {reason}\n  (left unchanged; its run: {run})", flush=True)
            failed.append(str(path))
            continue
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs = final_lines(cell.outputs)
        nb.metadata.setdefault("metalearn", {})["executed_on"] = machine()
        nbformat.write(nb, path)
        print(f"refreshed {path} in {time.perf_counter() - start:.1f} s", flush=True)
    if failed:
        raise SystemExit(
            f"refresh: {len(failed)} of {len(paths)} notebooks failed and were left unchanged:"
            f" {', '.join(failed)} (their runs are printed above)"
        )


def main(argv: list[str] | None = None) -> None:
    from . import reproduce  # torch and the methods: imported when the command line runs

    parser = argparse.ArgumentParser(prog="metalearn-course", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p_refresh = commands.add_parser(
        "refresh",
        help="re-execute notebooks in place (all of _toc.yml and lessons/source/ by default)",
    )
    p_refresh.add_argument("notebooks", nargs="*", type=Path)
    p_refresh.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    commands.add_parser("data", help="download (or copy), verify and cache Omniglot")
    p_reproduce = commands.add_parser(
        "reproduce",
        help="train and evaluate a method at the paper's, the book's or a quick budget",
        description="Train and evaluate one method in one setting with the book's code; see"
        " the recipes in metalearn_course/recipes.py. Under torchrun the meta-batch is split"
        " across processes.",
    )
    reproduce.add_arguments(p_reproduce)
    args = parser.parse_args(argv)  # a usage error exits here, with status 2
    from .data.download import ChecksumError, DownloadError, UnsafeArchiveError
    from .data.omniglot import OmniglotNotAvailable, OmniglotVerificationError

    # Expected failures end as "metalearn-course COMMAND: message" on stderr, with exit
    # status 1 and no traceback: the library's errors about the data (missing, damaged, not the
    # known release, a download that broke off), whose messages name the fix, a data folder
    # that is a file, and the commands' own SystemExit messages. Any other exception is a bug
    # and keeps its traceback.
    expected = (
        OmniglotNotAvailable,
        OmniglotVerificationError,
        DownloadError,
        ChecksumError,
        UnsafeArchiveError,
        NotADirectoryError,  # METALEARN_DATA (or root=) names a file
    )
    prefix = f"metalearn-course {args.command}: "
    try:
        if args.command == "reproduce":
            reproduce.command(args)

        if args.command == "data":
            from .data import load_omniglot

            for split in ("vinyals-trainval", "vinyals-test", "lake-background", "lake-evaluation"):
                print(load_omniglot(split))

        if args.command == "refresh":
            root = Path.cwd()
            if not args.notebooks and not (root / "_toc.yml").exists():
                raise SystemExit("refresh: run from the repository root (no _toc.yml here)")
            # The same environment as `make test`, so refreshed outputs are what nbval will see.
            os.environ.setdefault("OMP_NUM_THREADS", "2")
            # Stored outputs are the book's: every claim of a notebook's comparison must hold.
            os.environ.setdefault("METALEARN_STRICT", "1")
            refresh(args.notebooks or toc_notebooks(root), timeout=args.timeout)
    except expected as error:
        raise SystemExit(f"{prefix}{error}") from error
    except SystemExit as stop:  # e.g. "reproduce: ..." from reproduce.command: the same prefix
        if not isinstance(stop.code, str):
            raise
        raise SystemExit(prefix + stop.code.removeprefix(f"{args.command}: ")) from stop


if __name__ == "__main__":
    main(sys.argv[1:])
