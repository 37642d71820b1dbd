"""Sinusoid regression: the toy few-shot problem of MAML.

Each task is a sine wave y = A sin(x - φ) with its own amplitude A ~ U[0.1, 5.0] and phase
φ ~ U[0, π]; inputs are x ~ U[-5, 5] (Finn et al. 2017, "Model-Agnostic Meta-Learning for Fast
Adaptation of Deep Networks", arXiv:1703.03400, Sec. 5.1). A learner sees K (x, y) points of a
new wave and must predict the rest of it. The tasks share structure (every one is a sine) that
no single task reveals, which is exactly what meta-learning is meant to pick up.

Sign convention: y = A sin(x - φ), as in the reference MAML code (``amp * np.sin(x - phase)``);
a positive phase shifts the wave to the right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch


def sinusoid(x: torch.Tensor, amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """The true function y = A sin(x - φ); the arguments broadcast against each other."""
    return amplitude * torch.sin(x - phase)


@dataclass(eq=False)
class SinusoidBatch:
    """T regression tasks with K support and Q query points each (all float32)."""

    support_x: torch.Tensor  # [T, K, 1]
    support_y: torch.Tensor  # [T, K, 1]
    query_x: torch.Tensor  # [T, Q, 1]
    query_y: torch.Tensor  # [T, Q, 1]
    amplitude: torch.Tensor  # [T]
    phase: torch.Tensor  # [T]

    def curves(
        self, points: int = 200, x_range: tuple[float, float] = (-5.0, 5.0)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The true waves on an even grid, for plots: x [points] and y [T, points]."""
        if points < 2:
            raise ValueError(f"points={points}; use points >= 2 for a curve")
        x = torch.linspace(x_range[0], x_range[1], points)
        return x, sinusoid(x, self.amplitude[:, None], self.phase[:, None])


def _check_range(name: str, bounds: tuple[float, float]) -> None:
    low, high = bounds
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{name}={bounds}; use finite (low, high) with low <= high")


@dataclass
class SinusoidTasks:
    """A seeded source of sine-wave tasks. The defaults are MAML's; the same seed gives the
    same sequence of batches on any machine (numpy's PCG64)."""

    amplitude_range: tuple[float, float] = (0.1, 5.0)
    phase_range: tuple[float, float] = (0.0, math.pi)
    x_range: tuple[float, float] = (-5.0, 5.0)
    seed: int = 0
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        _check_range("amplitude_range", self.amplitude_range)
        _check_range("phase_range", self.phase_range)
        _check_range("x_range", self.x_range)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))

    def sample(self, n_tasks: int, shots: int, queries: int) -> SinusoidBatch:
        """Draw `n_tasks` new waves with `shots` support and `queries` query points each."""
        if n_tasks < 1:
            raise ValueError(f"n_tasks={n_tasks}; use n_tasks >= 1")
        if shots < 1:
            raise ValueError(f"shots={shots}; use shots >= 1")
        if queries < 0:
            raise ValueError(f"queries={queries}; use queries >= 0")

        def uniform(bounds: tuple[float, float], size: tuple[int, ...]) -> torch.Tensor:
            values = self._rng.uniform(bounds[0], bounds[1], size=size)
            return torch.from_numpy(values.astype(np.float32))

        amplitude = uniform(self.amplitude_range, (n_tasks,))
        phase = uniform(self.phase_range, (n_tasks,))
        # Support and query points are i.i.d. draws of the same wave: the first `shots` of each
        # row are the support set.
        x = uniform(self.x_range, (n_tasks, shots + queries, 1))
        y = sinusoid(x, amplitude[:, None, None], phase[:, None, None])
        return SinusoidBatch(
            support_x=x[:, :shots].contiguous(),
            support_y=y[:, :shots].contiguous(),
            query_x=x[:, shots:].contiguous(),
            query_y=y[:, shots:].contiguous(),
            amplitude=amplitude,
            phase=phase,
        )
