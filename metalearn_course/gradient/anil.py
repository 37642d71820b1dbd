"""ANIL (Almost No Inner Loop): adapt only the head; the body is meta-learned, never adapted.

Raghu, Raghu, Bengio & Vinyals 2019, "Rapid Learning or Feature Reuse? Towards Understanding
the Effectiveness of MAML", arXiv:1909.09157.

The paper found that after MAML training the body barely moves in the inner loop: MAML's
success is mostly *feature reuse*, not rapid learning. ANIL keeps MAML's outer loop but runs
the inner loop on the head's parameters w only, with the body's features h = g_θ(x) fixed:

    w_0 = w,    w_{j+1} = w_j - α_j ∇_w L(head_{w_j}(g_θ(x^s)), y^s)
    (θ, w) ← (θ, w) - β ∇_{θ,w} (1/B) Σ_i L(head_{w_k}(g_θ(x^q_i)), y^q_i)

Since the body does not change during adaptation, each task runs it once on its support set
and once on its query set, and the inner steps are small linear-layer steps: ANIL is much
cheaper than MAML, and the paper found it about as accurate. The meta-gradient still reaches
θ, through the features, second order included (the inner gradient depends on g_θ(x^s)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metalearn_course.gradient.functional import Params
from metalearn_course.gradient.maml import MAML, adapt


class ANIL(MAML):
    """ANIL: MAML with the inner loop on `model.head` only.

    model: a network with `body` and `head` submodules, forward(x) = head(body(x)), e.g.
        conv4_classifier(way) or BodyHead(body, head). The other arguments are MAML's; a
        MAML-trained model can be wrapped in ANIL to test with head-only adaptation, the
        paper's "ANIL at test time" experiment.
    """

    def __init__(
        self,
        model: nn.Module,
        inner_steps: int = 1,
        inner_lr: float | Sequence[float] = 0.4,
        **kwargs: Any,
    ) -> None:
        for part in ("body", "head"):
            if not isinstance(getattr(model, part, None), nn.Module):
                raise ValueError(
                    f"model has no `{part}` submodule; ANIL needs model.body and model.head,"
                    " e.g. BodyHead(body, head) or conv4_classifier(way)"
                )
        super().__init__(model, inner_steps, inner_lr, **kwargs)

    def inner_loop(
        self, support_x: torch.Tensor, support_y: torch.Tensor, params: Params, steps: int
    ) -> Params:
        """All parameters for one task: the body's as given, the head's adapted."""
        body = {k.removeprefix("body."): v for k, v in params.items() if k.startswith("body.")}
        head = {k.removeprefix("head."): v for k, v in params.items() if k.startswith("head.")}
        features = functional_call(self.model.body, body, (support_x,))  # once per task
        head = adapt(
            self.model.head,
            head,
            features,
            support_y,
            F.cross_entropy,
            steps,
            self.inner_rates(steps),
            self.first_order,
            self.gradient,
        )
        return {**params, **{f"head.{k}": v for k, v in head.items()}}
