"""Checkpoints and resumable training state, shared by every trainer (`train.fit`,
`rl.train_rl2`, the MANN's `fit`, `metalearn-course reproduce`).

Two kinds of file:

* a **checkpoint** (`save_checkpoint` / `load_checkpoint`): a module's weights and a few plain
  values (the step, a validation accuracy, the budget), e.g. the best-validation weights of a run
  or the model `reproduce` writes;
* a **training state** (`TrainingState`): everything a run needs to continue exactly where it
  stopped (weights, optimizer, schedule, the sampler's position, random generators, history),
  written every few steps. A run resumed from it ends with the same weights as a run that was
  never interrupted.

One rule for every resumable run: an existing state file is continued only when asked
(``resume=True``; it is never overwritten by a new run), and only by a run with the same
configuration (the trainer's settings and the optimizer's hyperparameters): a state written by
another configuration is refused with a message, never silently mixed into this one.

Every file is written to a temporary file next to it and renamed over the target (atomic), and
read with ``torch.load(weights_only=True)``: it holds tensors and plain values only, so loading
a file from elsewhere cannot run code.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn


def save_checkpoint(module: nn.Module, path: str | Path, **extra: Any) -> None:
    """Save the module's state_dict and `extra` values (numbers, strings, tensors, lists,
    dicts: what torch.load(weights_only=True) accepts) to `path`, atomically."""
    if "state_dict" in extra:
        raise ValueError("extra has a 'state_dict' key; that name is the weights, use another")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            torch.save({"state_dict": module.state_dict(), **extra}, file)
            file.flush()
            os.fsync(file.fileno())  # on disk before the rename makes it visible
        os.replace(tmp, path)  # atomic: an interrupted save never leaves a half-written file
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw contents of a file written by save_checkpoint, with a clear error for a file that
    is truncated, corrupt or something else."""
    try:
        payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # truncated zip, bad pickle, a forbidden type...
        raise ValueError(
            f"{path} is not a readable checkpoint ({type(error).__name__}: {error});"
            " it may be truncated or corrupt: restore a good copy, or delete it to start over"
        ) from error
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(f"{path} is not a checkpoint written by save_checkpoint")
    return payload


def load_checkpoint(module: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load weights saved by save_checkpoint into `module`; return the extra values."""
    payload = read_checkpoint(path)
    module.load_state_dict(payload["state_dict"])  # copies onto the module's own device
    return {key: value for key, value in payload.items() if key != "state_dict"}


def optimizer_settings(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's type and the hyperparameters of its parameter groups (learning rate at
    the start of the schedule, betas, weight decay...): part of a run's configuration."""
    groups = [
        {
            key: value
            for key, value in group.items()
            if key != "params" and isinstance(value, (bool, int, float, str, tuple, type(None)))
        }
        | {"lr": group.get("initial_lr", group["lr"]), "size": len(group["params"])}
        for group in optimizer.param_groups
    ]
    for group in groups:
        group.pop("initial_lr", None)
    return {"type": type(optimizer).__name__, "groups": groups}


def _plain(config: dict[str, Any]) -> Any:
    """The configuration as plain JSON values (tuples become lists), so that a saved and a
    current configuration compare equal exactly when their values do."""
    return json.loads(json.dumps(config, sort_keys=True))


class TrainingState:
    """The state file of a resumable run (see the module docstring for the rule).

    ``TrainingState(path, config, resume)`` checks the rule at once; ``load()`` returns the
    saved values of a run to continue (None for a fresh start); ``save(module, **values)``
    writes the module's weights, the configuration and `values` atomically. With path=None the
    run is not resumable: nothing is read or written.
    """

    def __init__(self, path: str | Path | None, config: dict[str, Any], resume: bool) -> None:
        if path is None:
            if resume:
                raise ValueError("resume=True needs state=<file> to resume from")
        elif Path(path).exists() and not resume:
            raise FileExistsError(
                f"{path} exists (a previous run's training state); pass resume=True to continue"
                " it, or remove the file to start over"
            )
        self.path = None if path is None else Path(path)
        self.config = _plain(config)

    def load(self) -> dict[str, Any] | None:
        if self.path is None or not self.path.exists():
            return None
        saved = read_checkpoint(self.path)
        if saved.get("config") != self.config:
            theirs = saved.get("config") or {}
            changed = sorted(
                key
                for key in set(theirs) | set(self.config)
                if theirs.get(key) != self.config.get(key)
            )
            raise ValueError(
                f"{self.path} belongs to a run with other settings (differing: "
                f"{', '.join(changed) or 'no configuration saved'}); resume with the same"
                " settings, or remove the file to start over"
            )
        return saved

    def save(self, module: nn.Module, **values: Any) -> None:
        if self.path is not None:
            save_checkpoint(module, self.path, config=self.config, **values)
