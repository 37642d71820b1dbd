"""Choosing where tensors live: a CUDA GPU, an Apple-silicon GPU (MPS) or the CPU.

Notebooks call `pick_device()` once and pass the result around, so the same notebook runs on a
laptop, a GPU server or CI without edits. Asking for a device that is not there fails at once
with a clear message, rather than deep inside the first `.to(device)`.
"""

from __future__ import annotations

import torch

_HINT = "use 'auto' (the best available) or 'cpu'"


def _mps_available() -> bool:
    # torch.backends.mps exists in every recent build; guard anyway for unusual builds.
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """Resolve a device name to an available torch.device.

    "auto": cuda if available, else mps if available, else cpu.
    "cpu", "cuda", "cuda:1", "mps" (or a torch.device): checked to exist, then returned.
    """
    if isinstance(device, str) and device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")

    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device={device!r} is not a device name; {_HINT}") from error

    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but no CUDA GPU is available; {_HINT}")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ValueError(
                f"device={device!r} but only {count} CUDA GPU(s) are visible"
                f" (indices 0..{count - 1}); {_HINT}"
            )
    elif resolved.type == "mps":
        if not _mps_available():
            raise ValueError(f"device={device!r} but MPS (Apple GPU) is not available; {_HINT}")
    elif resolved.type != "cpu":
        raise ValueError(
            f"device={device!r} is not supported here; use 'auto', 'cpu', 'cuda' or 'mps'"
        )
    return resolved
