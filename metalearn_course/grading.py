"""Checks and small fixtures for the graded lessons (``lessons/``, autograded with nbgrader).

A test cell of a lesson should tell a student *what* is wrong, not just that something is: a
bare ``assert`` gives "AssertionError" and nothing else. Every check here raises an
AssertionError whose message names the quantity, shows what was expected and what came back
(shapes, dtypes, the first differing entries) and adds the exercise's hint::

    check_close("prototypes", got, expected, atol=1e-5,
                hint="a prototype is the mean of its class's support embeddings")

The fixtures are tiny, seeded and instant, so hidden tests can be exact:
``labelled_images`` makes "images" whose pixels say which class and which drawing they are,
so a test can read back where every image of an episode came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

__all__ = [
    "check_close",
    "check_equal",
    "check_params_close",
    "check_shape",
    "check_true",
    "labelled_images",
    "toy_embeddings",
]

_SHOW = 6  # entries of a tensor shown in a message


def _fail(name: str, problem: str, hint: str) -> AssertionError:
    message = f"{name}: {problem}"
    if hint:
        message += f"\nHint: {hint}"
    return AssertionError(message)


def _as_tensor(name: str, value: Any, hint: str) -> torch.Tensor:
    """A tensor view of a tensor, numpy array, number or (nested) list; fails helpfully."""
    if value is None:
        raise _fail(name, "got None; did the function forget to `return` its result?", hint)
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    try:
        return torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as error:
        raise _fail(name, f"got a {type(value).__name__}, not numbers ({error})", hint) from None


def _preview(t: torch.Tensor) -> str:
    flat = t.flatten()
    values = flat[:_SHOW].tolist()
    shown = ", ".join(f"{v:.6g}" if t.is_floating_point() else str(v) for v in values)
    more = f", ... ({flat.numel()} values)" if flat.numel() > _SHOW else ""
    return f"[{shown}{more}]"


def check_shape(name: str, got: Any, shape: tuple[int, ...], hint: str = "") -> None:
    """Fail unless `got` has exactly `shape`."""
    t = _as_tensor(name, got, hint)
    if tuple(t.shape) != tuple(shape):
        raise _fail(name, f"expected shape {tuple(shape)}, got shape {tuple(t.shape)}", hint)


def check_close(
    name: str,
    got: Any,
    expected: Any,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    hint: str = "",
) -> None:
    """Fail unless `got` equals `expected` within |got - expected| <= atol + rtol * |expected|.

    The message gives the shapes, the number of entries out of tolerance, the worst one (its
    index, both values) and the hint.
    """
    g, e = _as_tensor(name, got, hint), _as_tensor(name, expected, "")
    if tuple(g.shape) != tuple(e.shape):
        problem = f"expected shape {tuple(e.shape)}, got shape {tuple(g.shape)}"
        if g.numel() == e.numel() and g.numel() > 1:
            problem += " (same number of entries: transposed or reshaped?)"
        raise _fail(name, problem, hint)
    if g.is_complex() or e.is_complex():
        raise _fail(name, "complex numbers are not expected here", hint)
    g64, e64 = g.to(torch.float64), e.to(torch.float64)
    # inf where inf is expected is right (e.g. the score of an untried arm); nan never is
    special = ~torch.isfinite(e64)
    wrong = torch.where(special, g64 != e64, ~torch.isfinite(g64))
    if wrong.any():
        raise _fail(
            name,
            f"{int(wrong.sum())} entries are nan or inf where finite numbers are expected (or the"
            f" other way round)\n  got      {_preview(g)}\n  expected {_preview(e)}",
            hint,
        )
    g64, e64 = g64.masked_fill(special, 0.0), e64.masked_fill(special, 0.0)
    error = (g64 - e64).abs()
    bad = error > atol + rtol * e64.abs()
    if bad.any():
        worst = int(torch.argmax(torch.where(bad, error, torch.zeros_like(error))))
        index = tuple(int(i) for i in np.unravel_index(worst, tuple(g.shape))) if g.ndim else ()
        problem = (
            f"{int(bad.sum())} of {g.numel()} entries differ from the expected values"
            f" (atol={atol:g}, rtol={rtol:g}); worst at index {index}:"
            f" got {g64.flatten()[worst].item():.6g}, expected {e64.flatten()[worst].item():.6g}"
            f"\n  got      {_preview(g)}\n  expected {_preview(e)}"
        )
        raise _fail(name, problem, hint)


def check_equal(name: str, got: Any, expected: Any, hint: str = "") -> None:
    """Fail unless `got` equals `expected` exactly (integers, labels, counts, booleans)."""
    g, e = _as_tensor(name, got, hint), _as_tensor(name, expected, "")
    if g.is_floating_point() and not e.is_floating_point():
        rounded = g.round()
        if not torch.equal(rounded, g):
            raise _fail(name, f"expected whole numbers, got {_preview(g)}", hint)
        g = rounded.to(e.dtype)
    if tuple(g.shape) != tuple(e.shape):
        raise _fail(name, f"expected shape {tuple(e.shape)}, got shape {tuple(g.shape)}", hint)
    different = g != e
    if different.any():
        first = int(torch.argmax(different.flatten().to(torch.uint8)))
        index = tuple(int(i) for i in np.unravel_index(first, tuple(g.shape))) if g.ndim else ()
        problem = (
            f"{int(different.sum())} of {g.numel()} entries differ; first at index {index}:"
            f" got {g.flatten()[first].item()}, expected {e.flatten()[first].item()}"
            f"\n  got      {_preview(g)}\n  expected {_preview(e)}"
        )
        raise _fail(name, problem, hint)


def check_params_close(
    name: str,
    got: Mapping[str, torch.Tensor],
    expected: Mapping[str, torch.Tensor],
    atol: float = 1e-6,
    rtol: float = 1e-5,
    hint: str = "",
) -> None:
    """check_close for parameter dictionaries (``dict(model.named_parameters())`` and the like):
    the same names, then every tensor close."""
    if not isinstance(got, Mapping):
        raise _fail(name, f"expected a dict of tensors by name, got {type(got).__name__}", hint)
    if set(got) != set(expected):
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        raise _fail(name, f"names differ: missing {missing}, unexpected {extra}", hint)
    for key in expected:
        check_close(f"{name}[{key!r}]", got[key], expected[key], atol, rtol, hint)


def check_true(name: str, condition: bool, problem: str, hint: str = "") -> None:
    """Fail with `problem` (what is wrong, with the numbers) unless `condition` holds."""
    if not condition:
        raise _fail(name, problem, hint)


def labelled_images(n_classes: int, n_per_class: int) -> torch.Tensor:
    """Float "images" [n_classes, n_per_class, 1, 1, 2] that say where they come from:
    ``images[c, d, 0, 0] == [c, d]`` (class c, drawing d). An episode sampled from them can be
    checked exactly: ``x[..., 0]`` is each image's class, ``x[..., 1]`` its drawing."""
    if n_classes < 1 or n_per_class < 1:
        raise ValueError(f"n_classes={n_classes}, n_per_class={n_per_class}; use both >= 1")
    c = torch.arange(n_classes, dtype=torch.float32)[:, None].expand(n_classes, n_per_class)
    d = torch.arange(n_per_class, dtype=torch.float32)[None, :].expand(n_classes, n_per_class)
    return torch.stack([c, d], dim=-1)[:, :, None, None, :].contiguous()


def toy_embeddings(
    way: int, shots: int | list[int], dim: int, seed: int = 0, shuffle: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded support embeddings [S, dim] (float32) and labels [S] (int64) of `way` classes,
    `shots` examples each (or shots[k] for class k: unequal shots). Classes are well separated
    Gaussian clusters. shuffle: random order instead of class-major."""
    counts = [shots] * way if isinstance(shots, int) else list(shots)
    if len(counts) != way or min(counts) < 1 or dim < 1:
        raise ValueError(f"way={way}, shots={shots}, dim={dim}; use one count >= 1 per class")
    generator = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(way, dim, generator=generator)
    labels = torch.repeat_interleave(torch.arange(way), torch.tensor(counts))
    x = centres[labels] + torch.randn(len(labels), dim, generator=generator)
    if shuffle:
        order = torch.randperm(len(labels), generator=generator)
        x, labels = x[order], labels[order]
    return x, labels
