"""Transfer learning: pre-train an encoder on every meta-training class, then adapt it to a new
few-shot task, and choose which source to transfer from.

One module per idea: supervised pre-training through the shared loop train.fit (pretrain.py),
few-shot transfer by linear probe, new head or full fine-tuning, each an Episode -> logits
callable for evaluate.few_shot (finetune.py), freezing layers (freeze.py), and task embeddings
to pick the nearest source model (task_similarity.py).
"""

from metalearn_course.transfer.finetune import (
    FineTuneAll,
    FineTuneHead,
    LinearProbe,
    fit_logistic_regression,
)
from metalearn_course.transfer.freeze import (
    freeze,
    freeze_up_to,
    statistics_frozen,
    trainable,
    unfreeze,
)
from metalearn_course.transfer.pretrain import ClassBatches, Classifier, CosineHead, cosine_logits
from metalearn_course.transfer.task_similarity import (
    feature_statistics,
    fisher_embedding,
    nearest_source,
    task_distance,
)

__all__ = [
    "ClassBatches",
    "Classifier",
    "CosineHead",
    "FineTuneAll",
    "FineTuneHead",
    "LinearProbe",
    "cosine_logits",
    "feature_statistics",
    "fisher_embedding",
    "fit_logistic_regression",
    "freeze",
    "freeze_up_to",
    "nearest_source",
    "statistics_frozen",
    "task_distance",
    "trainable",
    "unfreeze",
]
