"""Meta-SGD: meta-learn the inner learning rate of every parameter, with the initialisation.

Li, Zhou, Chen & Li 2017, "Meta-SGD: Learning to Learn Quickly for Few-Shot Learning",
arXiv:1707.09835.

MAML's inner step uses one scalar rate α. Meta-SGD gives every parameter its own rate: α is a
tensor of θ's shape, and the step is elementwise,

    φ = θ - α ∘ ∇_θ L(f_θ(x^s), y^s)

α sets both the size and the *direction* of the update (a negative entry reverses a
coordinate's step). Meta-training learns (θ, α) together, by the same meta-gradient as MAML:

    (θ, α) ← (θ, α) - β ∇_{θ,α} (1/B) Σ_i L(f_{φ_i}(x^q_i), y^q_i),
    ∇_α L_q = -∇_φ L_q(φ) ∘ ∇_θ L_s(θ)

so α learns *which* coordinates are worth moving for a new task. The cost is a second copy of
the parameters; the paper adapts in one step and reports it learns faster than MAML.

Here α starts at `inner_lr` everywhere, so an untrained Meta-SGD is exactly MAML with that
rate (tests/test_gradient.py checks it). More inner steps reuse the same α at every step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from metalearn_course.gradient.functional import InnerLR
from metalearn_course.gradient.maml import MAML


class MetaSGD(MAML):
    """Meta-SGD: MAML with a learned learning rate per parameter entry, in `alpha`.

    alpha: nn.ParameterDict of tensors shaped like the model's parameters, keyed by parameter
        name with "/" for "." (torch does not allow dots in keys): "body/encoder/0/0/weight".
    inner_lr: the initial value of every α entry. The other arguments are MAML's.
    """

    def __init__(
        self, model: nn.Module, inner_steps: int = 1, inner_lr: float = 0.4, **kwargs: Any
    ) -> None:
        if kwargs.get("learn_inner_lr"):
            raise ValueError("learn_inner_lr=True: Meta-SGD always learns its rates (alpha)")
        if not isinstance(inner_lr, int | float):
            raise ValueError(f"inner_lr={inner_lr!r}; Meta-SGD starts α at one float >= 0")
        super().__init__(model, inner_steps, inner_lr, **kwargs)
        self.register_buffer("inner_lr", None)  # α replaces MAML's per-step rates
        # Pairs, not a dict: ParameterDict sorts the keys of a dict, pairs keep the model's order.
        self.alpha = nn.ParameterDict(
            [
                (name.replace(".", "/"), nn.Parameter(torch.full_like(p, float(inner_lr))))
                for name, p in self.model.named_parameters()
            ]
        )

    def inner_rates(self, steps: int) -> InnerLR:
        """α by parameter name, the same at every step."""
        return {key.replace("/", "."): alpha for key, alpha in self.alpha.items()}
