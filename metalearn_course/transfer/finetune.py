"""Few-shot transfer: adapt a pre-trained encoder to a new episode using its support set only.

Three ways to reuse a pre-trained encoder f_θ (metalearn_course.transfer.pretrain) on an
N-way K-shot episode, from the cheapest to the most flexible. Each is a callable
Episode -> query logits [N*Q, N], so `evaluate.few_shot` scores them on the very same test
episodes as ProtoNet and MAML. Each trains on the support set AT TEST TIME, inside
``torch.enable_grad()`` (the evaluator runs under no_grad), and is deterministic given the
episode: full-batch steps, a fixed number of them, and a seeded initialisation.

(a) `LinearProbe`: multinomial logistic regression on frozen, L2-normalised features
    (Tian et al. 2020, arXiv:2003.11539, whose code fits scikit-learn's LogisticRegression with
    L-BFGS and its default penalty C = 1). With z = f(x) / ||f(x)||,

        min_{W, b}  (1 / 2C) ||W||²  +  Σ_i  -log softmax_{y_i}(W z_i + b)

    a convex problem, solved here with torch's L-BFGS to convergence.

(b) `FineTuneHead`: a new linear head (Baseline) or cosine head s · cos(w_c, f(x))
    (Baseline++) trained on frozen features by a fixed number of SGD steps (Chen et al. 2019,
    arXiv:1904.04232; their code: SGD with momentum 0.9, weight decay 1e-3, 100 epochs of
    mini-batches of 4, from a random initialisation).

(c) `FineTuneAll`: the head AND the encoder's trainable parameters, a few steps with a small
    learning rate for the encoder:

        θ' = θ - η_enc ∇_θ L_support(θ, W),    W' = W - η_head ∇_W L_support(θ, W)

    written with torch.func.functional_call on a dictionary of cloned parameters: the
    encoder's stored weights are never modified, and no module is copied. Which encoder
    parameters adapt is decided by their requires_grad flag, so metalearn_course.transfer.
    freeze chooses the layers (e.g. ``freeze_up_to(encoder, 2)`` adapts the last two blocks).

Batch norm. The encoder runs in eval mode throughout adaptation and prediction: it normalises
with the running statistics of pre-training and never updates them. With 5 support images the
batch statistics would be noisy, they would make a query's prediction depend on the other
queries (transductive), and updating the running averages would change the stored encoder.
The batch-norm affine weights (γ, β) are parameters and do adapt in FineTuneAll.

`encoder=None` means the episodes already hold features (EpisodeSampler over the output of
evaluate.embed_images): the frozen-feature methods (a) and (b) then evaluate 600 episodes in
seconds, embedding every test image once instead of once per episode.

Head initialisation. ``init="random"`` (Chen et al.) draws the head from a generator seeded
with `seed`; ``init="prototypes"`` starts from the ProtoNet classifier of the support set
(W_k = 2 c_k, b_k = -||c_k||², see metric.protonet.linear_classifier_weights; for the cosine
head w_k = c_k), so step 0 already predicts like ProtoNet: the initialisation of Proto-MAML
(Triantafillou et al. 2020, arXiv:1903.03096).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from metalearn_course.data.episodes import Episode
from metalearn_course.metric.protonet import linear_classifier_weights, prototypes
from metalearn_course.nets import mode
from metalearn_course.transfer.pretrain import HEADS, cosine_logits

INITS = ("random", "prototypes")
Head = dict[str, torch.Tensor]  # "weight" [N, D] (and "bias" [N] for a linear head)


def frozen_features(encoder: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """f(x) [n, D] of a frozen encoder (eval mode, no gradient); x itself if encoder is None."""
    with torch.no_grad(), mode(encoder, training=False):
        features = x if encoder is None else encoder(x)
    return features.detach().flatten(1)


def head_logits(head: Head, features: torch.Tensor, scale: float) -> torch.Tensor:
    """Logits of a linear head (W f + b) or of a cosine head (s · cos(w_c, f): no bias)."""
    if "bias" in head:
        return features @ head["weight"].T + head["bias"]
    return cosine_logits(features, head["weight"], scale)


def init_head(
    kind: str, init: str, features: torch.Tensor, labels: torch.Tensor, way: int, seed: int
) -> Head:
    """A new head for `way` classes on support features [S, D] (see the module docstring)."""
    if kind not in HEADS:
        raise ValueError(f"head={kind!r}; use one of {HEADS}")
    if init == "prototypes":
        centres = prototypes(features, labels, way)
        if kind == "cosine":
            return {"weight": centres.clone()}
        weight, bias = linear_classifier_weights(centres)
        return {"weight": weight, "bias": bias}
    if init != "random":
        raise ValueError(f"init={init!r}; use one of {INITS}")
    # nn.Linear's initialisation, U(-1/sqrt(D), 1/sqrt(D)), from a private seeded generator:
    # the same episode always gets the same head, and torch's global RNG is left alone.
    generator = torch.Generator().manual_seed(seed)
    bound = features.shape[1] ** -0.5

    def draw(*shape: int) -> torch.Tensor:
        return (torch.rand(*shape, generator=generator) * 2 - 1) * bound

    head = {"weight": draw(way, features.shape[1])}
    if kind == "linear":
        head["bias"] = draw(way)
    return {k: v.to(features.device, features.dtype) for k, v in head.items()}


def train_steps(
    groups: list[dict], loss: Callable[[], torch.Tensor], steps: int, momentum: float
) -> None:
    """`steps` full-batch SGD steps on the tensors of `groups` (torch.optim param groups of
    leaf tensors with requires_grad) minimising `loss()`; gradients are enabled inside."""
    groups = [g for g in groups if g["params"]]
    optimizer = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum)
    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss().backward()
            optimizer.step()


def fit_logistic_regression(
    features: torch.Tensor, labels: torch.Tensor, way: int, C: float = 1.0, max_iter: int = 100
) -> Head:
    """Multinomial logistic regression with an L2 penalty, solved by L-BFGS (float64).

    Minimises (1 / 2C) ||W||² + Σ_i CE(W z_i + b, y_i), scikit-learn's objective (the bias is
    not penalised); divided by C·n here so that the loss is a mean. Starts from zero: the
    problem is convex, so the start only affects speed, and zero makes the fit deterministic.
    """
    if not C > 0:
        raise ValueError(f"C={C}; use an inverse regularisation strength C > 0 (e.g. 1)")
    z = features.detach().double()
    n, dim = z.shape
    weight = torch.zeros(way, dim, dtype=torch.float64, device=z.device, requires_grad=True)
    bias = torch.zeros(way, dtype=torch.float64, device=z.device, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        max_iter=max_iter,
        tolerance_grad=1e-9,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(z @ weight.T + bias, labels) + (weight**2).sum() / (2 * C * n)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return {"weight": weight.detach(), "bias": bias.detach()}


class LinearProbe(nn.Module):
    """(a) Logistic regression on frozen, L2-normalised features (Tian et al. 2020).

    encoder: the pre-trained f (kept frozen), or None if episodes hold features already.
    C: inverse L2 penalty, scikit-learn's (Tian et al. use its default, 1).
    normalize: L2-normalise the features first (Tian et al.: it helps).
    max_iter: L-BFGS iterations (the toy and Omniglot problems converge well within 100).
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        C: float = 1.0,
        normalize: bool = True,
        max_iter: int = 100,
    ) -> None:
        super().__init__()
        if not C > 0:
            raise ValueError(f"C={C}; use C > 0")
        if max_iter < 1:
            raise ValueError(f"max_iter={max_iter}; use max_iter >= 1")
        self.encoder, self.C, self.normalize, self.max_iter = encoder, C, normalize, max_iter

    def forward(self, episode: Episode) -> torch.Tensor:
        episode.validate()
        support = frozen_features(self.encoder, episode.support_x)
        queries = frozen_features(self.encoder, episode.query_x)
        if self.normalize:
            support, queries = F.normalize(support, dim=-1), F.normalize(queries, dim=-1)
        head = fit_logistic_regression(
            support, episode.support_y, episode.way, self.C, self.max_iter
        )
        return head_logits(head, queries.double(), 1.0).to(queries.dtype)


class FineTuneHead(nn.Module):
    """(b) A new head trained on frozen features: Baseline ("linear") or Baseline++ ("cosine").

    encoder: the pre-trained f (kept frozen), or None if episodes hold features already.
    head: "linear" or "cosine" (logits s · cos(w_c, f), s = scale).
    steps, lr, momentum, weight_decay: full-batch SGD on the support set.
    init: "random" (Chen et al.; seeded by `seed`) or "prototypes" (start as ProtoNet).
    """

    def __init__(
        self,
        encoder: nn.Module | None = None,
        head: str = "linear",
        steps: int = 100,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-3,
        scale: float = 10.0,
        init: str = "random",
        seed: int = 0,
    ) -> None:
        super().__init__()
        _check(head=head, init=init, steps=steps, lr=lr, scale=scale)
        self.encoder, self.head, self.init, self.seed = encoder, head, init, seed
        self.steps, self.lr, self.momentum = steps, lr, momentum
        self.weight_decay, self.scale = weight_decay, scale

    def forward(self, episode: Episode) -> torch.Tensor:
        episode.validate()
        support = frozen_features(self.encoder, episode.support_x)
        queries = frozen_features(self.encoder, episode.query_x)
        y = episode.support_y
        head = init_head(self.head, self.init, support, y, episode.way, self.seed)
        head = {k: v.clone().requires_grad_(True) for k, v in head.items()}

        def loss() -> torch.Tensor:
            return F.cross_entropy(head_logits(head, support, self.scale), y)

        group = {"params": list(head.values()), "lr": self.lr, "weight_decay": self.weight_decay}
        train_steps([group], loss, self.steps, self.momentum)
        with torch.no_grad():
            return head_logits(head, queries, self.scale)


class FineTuneAll(nn.Module):
    """(c) Fine-tune the encoder's trainable parameters and a new head on the support set.

    encoder: the pre-trained f; its parameters with requires_grad=True adapt (all of them
        unless metalearn_course.transfer.freeze froze some), the others stay fixed. Its stored
        weights are never modified: adaptation works on clones (torch.func.functional_call).
    head, init, scale, seed: the new head as in FineTuneHead (init default "prototypes").
    steps: full-batch SGD steps; lr: the encoder's (small) learning rate; head_lr: the head's.
    weight_decay: on the head only (decaying the encoder would pull it towards zero, not
        towards its pre-trained values).
    """

    def __init__(
        self,
        encoder: nn.Module,
        head: str = "linear",
        steps: int = 20,
        lr: float = 1e-3,
        head_lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-3,
        scale: float = 10.0,
        init: str = "prototypes",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise ValueError("encoder must be an nn.Module (FineTuneAll adapts its parameters)")
        _check(head=head, init=init, steps=steps, lr=lr, scale=scale)
        if not head_lr >= 0:
            raise ValueError(f"head_lr={head_lr}; use a learning rate >= 0")
        self.encoder, self.head, self.init, self.seed = encoder, head, init, seed
        self.steps, self.lr, self.head_lr, self.momentum = steps, lr, head_lr, momentum
        self.weight_decay, self.scale = weight_decay, scale

    def adapt(self, episode: Episode) -> tuple[dict[str, torch.Tensor], Head]:
        """The adapted encoder parameters (all of them, by name) and head for one episode."""
        named = dict(self.encoder.named_parameters())
        fast = {
            n: p.detach().clone().requires_grad_(True) for n, p in named.items() if p.requires_grad
        }
        params = {n: fast.get(n, p.detach()) for n, p in named.items()}
        x, y = episode.support_x, episode.support_y
        with mode(self.encoder, training=False):  # running batch-norm statistics, never updated
            support = frozen_features(self.encoder, x)
            head = init_head(self.head, self.init, support, y, episode.way, self.seed)
            head = {k: v.clone().requires_grad_(True) for k, v in head.items()}

            def loss() -> torch.Tensor:
                features = functional_call(self.encoder, params, (x,)).flatten(1)
                return F.cross_entropy(head_logits(head, features, self.scale), y)

            groups = [
                {"params": list(fast.values()), "lr": self.lr, "weight_decay": 0.0},
                {
                    "params": list(head.values()),
                    "lr": self.head_lr,
                    "weight_decay": self.weight_decay,
                },
            ]
            train_steps(groups, loss, self.steps, self.momentum)
        return {n: p.detach() for n, p in params.items()}, {k: v.detach() for k, v in head.items()}

    def forward(self, episode: Episode) -> torch.Tensor:
        episode.validate()
        params, head = self.adapt(episode)
        with torch.no_grad(), mode(self.encoder, training=False):
            queries = functional_call(self.encoder, params, (episode.query_x,)).flatten(1)
            return head_logits(head, queries, self.scale)


def _check(head: str, init: str, steps: int, lr: float, scale: float) -> None:
    if head not in HEADS:
        raise ValueError(f"head={head!r}; use one of {HEADS}")
    if init not in INITS:
        raise ValueError(f"init={init!r}; use one of {INITS}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps={steps!r}; use an int >= 0 (0: the initial head as it is)")
    if not lr >= 0:
        raise ValueError(f"lr={lr}; use a learning rate >= 0")
    if not scale > 0:
        raise ValueError(f"scale={scale}; use a cosine scale s > 0 (e.g. 10)")
