"""Optimization-based meta-learners: learn an initialisation (and step sizes) that gradient
descent adapts to a new task in a few steps.

One module per method, each citing its paper: MAML and first-order MAML (maml.py), Reptile
(reptile.py), Meta-SGD (metasgd.py), ANIL (anil.py); the learned LSTM optimizer of
Andrychowicz et al. lives in learned_optimizer.py. functional.py holds the shared pieces: batch
norm per task, the inner gradient, the body + head classifier, meta-batches.

Two ways in: plain functions of a parameter dictionary (`adapt`, `maml_loss`, `inner_train`,
`reptile_step`), e.g. for sinusoid regression; and episodic nn.Modules (`MAML`, `MetaSGD`,
`ANIL`, `Reptile`) that map an Episode, or a meta-batch of them, to query logits after
adaptation, and train with metalearn_course.train.fit.

This package is the lesson: one task at a time, torch.func.grad, no rewriting of the model you
pass in. The same methods run faster through metalearn_course.engine (``engine.fast(method)``),
which this package never imports.
"""

from metalearn_course.gradient.anil import ANIL
from metalearn_course.gradient.functional import (
    BodyHead,
    TaskBatchNorm,
    conv4_classifier,
    meta_batches,
    use_task_batch_norm,
)
from metalearn_course.gradient.maml import MAML, adapt, maml_loss
from metalearn_course.gradient.metasgd import MetaSGD
from metalearn_course.gradient.reptile import Reptile, inner_train, reptile_step

__all__ = [
    "ANIL",
    "MAML",
    "BodyHead",
    "MetaSGD",
    "Reptile",
    "TaskBatchNorm",
    "adapt",
    "conv4_classifier",
    "inner_train",
    "maml_loss",
    "meta_batches",
    "reptile_step",
    "use_task_batch_norm",
]
