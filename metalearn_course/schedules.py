"""Learning-rate schedules: factor(step), the multiplier of the optimizer's rate at each step, as
``torch.optim.lr_scheduler.LambdaLR`` takes it (train.fit's `lr_schedule`, RL²'s trainer).

One vocabulary for the whole course: the book's warm-up then cosine decay, and the papers' step
and linear decays, as functions (no schedule strings to parse).
"""

from __future__ import annotations

import math
from collections.abc import Callable


def warmup_cosine(steps: int) -> Callable[[int], float]:
    """The course's learning-rate schedule for `fit(lr_schedule=...)`: a linear warm-up over the
    first 5% of `steps`, then a cosine decay to 0 (Loshchilov & Hutter 2017, arXiv:1608.03983),

        factor(t) = min(1, (t + 1) / w) · ½ (1 + cos(π t / steps)),   w = max(1, steps // 20).
    """
    if steps < 1:
        raise ValueError(f"steps={steps}; the schedule needs at least 1 step")
    warmup = max(1, steps // 20)

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * step / steps))

    return factor


def step_decay(every: int, factor: float = 0.5) -> Callable[[int], float]:
    """The papers' step decay for `fit(lr_schedule=...)`: the rate times `factor` every `every`
    steps (Snell et al. 2017 halve Adam's rate every 2000 episodes: ``step_decay(2000)``),

        factor(t) = factor ** (t // every).
    """
    if every < 1:
        raise ValueError(f"every={every}; decay every 1 step or more")
    if not 0 < factor <= 1:
        raise ValueError(f"factor={factor}; use a factor in (0, 1]")
    return lambda step: factor ** (step // every)


def linear_decay(steps: int) -> Callable[[int], float]:
    """A linear decay from the full rate at step 0 to 0 after `steps` steps (Reptile's ε,
    Nichol et al. 2018): factor(t) = 1 - t / steps."""
    if steps < 1:
        raise ValueError(f"steps={steps}; the schedule needs at least 1 step")
    return lambda step: 1 - step / steps
