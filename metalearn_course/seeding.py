"""One call that makes a notebook's randomness repeatable.

A run draws random numbers from three generators (Python's `random`, numpy's global one and
torch's), so all three are seeded. Seeding is not enough on its own: some PyTorch kernels are
nondeterministic (e.g. atomics in CUDA scatter/index_add, cuDNN picking the fastest
convolution algorithm by timing it), and the number of CPU threads changes how floating-point
sums are split, hence their last bits. See the PyTorch notes on reproducibility:
https://pytorch.org/docs/stable/notes/randomness.html

Even with all of this, results may differ across PyTorch versions and hardware; the aim is the
same numbers when the same notebook is rerun on the same setup.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True, threads: int | None = None) -> None:
    """Seed Python, numpy and torch, and optionally make PyTorch deterministic.

    seed: an integer in [0, 2**32 - 1] (numpy's limit).
    deterministic: if True, ask PyTorch for deterministic kernels
        (`torch.use_deterministic_algorithms(True, warn_only=True)`: an operation with no
        deterministic version warns instead of failing, so notebooks keep running), turn off
        cuDNN's benchmark mode (it times algorithms and may pick a different one each run) and
        set CUBLAS_WORKSPACE_CONFIG=:4096:8 if unset (cuBLAS needs it for deterministic
        matrix products; it only takes effect if set before the first CUDA call). If False,
        these are switched back to PyTorch's defaults.
    threads: if given, fix `torch.set_num_threads(threads)`, so results do not depend on the
        machine's core count. Notebooks pass a fixed value.
    """
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed={seed}; use an integer in [0, 2**32 - 1]")
    if threads is not None and threads < 1:
        raise ValueError(f"threads={threads}; use threads >= 1 (or None to keep the default)")

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 (the legacy global one: old code still uses it)
    torch.manual_seed(seed)  # seeds the CPU generator and every CUDA (and MPS) device
    torch.cuda.manual_seed_all(seed)  # already done by manual_seed; explicit for the reader

    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic

    if threads is not None:
        torch.set_num_threads(threads)
