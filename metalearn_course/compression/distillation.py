"""Knowledge distillation over episodes: a small student learns to answer like the teacher.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network", arXiv:1503.02531.

A trained network's output distribution says more than its argmax: which wrong classes are
plausible ("dark knowledge"). The student is trained on the teacher's *softened* probabilities,
both softmaxes taken at a temperature T > 1, plus the usual cross-entropy with the labels:

    L = α · T² · KL( softmax(t / T) ‖ softmax(s / T) ) + (1 − α) · CE( s, y )

with s the student's logits and t the teacher's. The T² keeps the two terms' gradients on the
same scale: the soft term's gradient shrinks like 1/T² as T grows (Hinton et al., Sec. 2).
KL differs from the paper's cross-entropy with the soft targets only by the teacher's entropy,
a constant for the student, so the gradients are the same; KL has the merit of being exactly
zero when the student agrees with the teacher.

Over episodes. A metric learner's "logits" are the scores of an episode's queries against its
own support classes, so the natural transfer set is episodes: on each training episode both
networks build prototypes from the same support set and score the same queries, and the student
matches the teacher's [N·Q, N] scores (`DistilledProtoNet`). Nothing requires the embeddings to
have the same size: a Conv4 with 16 filters (16-dimensional embedding) can learn from the
64-filter ProtoNet. Note that ProtoNet's logits are negative *squared distances*, whose scale
depends on the embedding (often tens to hundreds): the temperature that softens them usefully is
larger than for a classifier's logits, so look at softmax(t / T) before choosing T.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from metalearn_course.data.episodes import Episode
from metalearn_course.metric.protonet import ProtoNet


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 4.0,
    alpha: float = 0.5,
) -> torch.Tensor:
    """α·T²·KL(softmax(t/T) ‖ softmax(s/T)) + (1−α)·CE(s, y), averaged over the rows.

    student_logits, teacher_logits: [M, N] scores of M examples (an episode's queries) for N
        classes; the teacher's are a fixed target (detached: no gradient reaches the teacher).
    labels: [M] int64 in 0..N-1, for the hard cross-entropy term (computed at T = 1).
    temperature: T > 0; 1 leaves the softmax as it is, larger values soften both.
    alpha: weight of the soft (teacher) term in [0, 1]; 1 = pure distillation, 0 = plain
        cross-entropy with the labels.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(
            f"student_logits has shape {tuple(student_logits.shape)} and teacher_logits"
            f" {tuple(teacher_logits.shape)}; expected the same shape [examples, classes]"
        )
    if labels.shape != student_logits.shape[:1]:
        raise ValueError(
            f"labels has shape {tuple(labels.shape)}; expected [{student_logits.shape[0]}],"
            " one label per row of the logits"
        )
    if not temperature > 0:
        raise ValueError(f"temperature={temperature}; use a temperature > 0 (1 = no softening)")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha={alpha}; use 0 <= alpha <= 1 (weight of the teacher term)")
    T = temperature
    log_p_student = F.log_softmax(student_logits / T, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach() / T, dim=-1)
    # KL(p_t ‖ p_s) = Σ p_t (log p_t − log p_s), mean over rows ("batchmean" = true KL per row)
    soft = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    hard = F.cross_entropy(student_logits, labels)
    return alpha * T**2 * soft + (1 - alpha) * hard


class DistilledProtoNet(nn.Module):
    """A student ProtoNet trained to match a frozen teacher's episode logits.

    student_encoder: the small embedding to train (e.g. Conv4(hidden=16)).
    teacher: a trained episodic method, Episode -> logits [N*Q, N] (e.g. the Conv4 ProtoNet).
        It is frozen (requires_grad False) and always runs in eval mode, even while fit puts
        this module in training mode, so its batch norm neither uses batch statistics nor
        updates its running ones.
    temperature, alpha: of distillation_loss.

    forward(episode) is the student's ProtoNet logits: evaluate it with evaluate.few_shot as
    any ProtoNet (or deploy ``.student`` alone). loss(output, episode) is the distillation loss
    against the teacher's logits on the same episode, so ``train.fit`` trains the student with
    no new loop. fit's default optimizer only sees the student's parameters.
    """

    def __init__(
        self,
        student_encoder: nn.Module,
        teacher: nn.Module,
        temperature: float = 4.0,
        alpha: float = 0.5,
        distance: str = "euclidean",
    ) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature={temperature}; use a temperature > 0")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha={alpha}; use 0 <= alpha <= 1")
        self.student = ProtoNet(student_encoder, distance=distance)
        self.teacher = teacher.requires_grad_(False).eval()
        self.temperature = temperature
        self.alpha = alpha

    def train(self, mode: bool = True) -> DistilledProtoNet:
        """Switch the student's mode; the teacher stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, episode: Episode) -> torch.Tensor:
        return self.student(episode)

    def loss(self, output: torch.Tensor, episode: Episode) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.teacher(episode)
        return distillation_loss(
            output, teacher_logits, episode.query_y, self.temperature, self.alpha
        )
