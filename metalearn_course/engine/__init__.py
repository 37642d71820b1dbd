"""The engine: what exists only for speed, applied explicitly and tested equal to the lesson.

The gradient-based learners in metalearn_course.gradient are written for reading: one task at
a time, torch.func.grad, torch's batch norm. ``fast(method)`` turns a MAML, FOMAML, Meta-SGD,
ANIL or Reptile into the same method running faster, in place:

    maml = fast(MAML(conv4_classifier(way=5), 1, 0.4))            # CPU: loop over tasks
    maml = fast(MAML(conv4_classifier(way=5), 1, 0.4), vmap=True)  # GPU: vmap over tasks

fastpath.py has the plain-autograd inner gradient, vmap over tasks and the batch norm that stays
exact under vmap; folding.py folds a first conv → batch norm pair into one convolution. The
lesson never imports this package (an import-linter contract in pyproject.toml checks it), and
tests/test_engine.py checks that every method gives the same outputs, meta-gradients and running
statistics with and without it, in float64. benchmarks/maml_peers.py measures what it buys.
"""

from metalearn_course.engine.fastpath import (
    VmapTaskBatchNorm,
    fast,
    fast_gradient,
    vmap_over_tasks,
)
from metalearn_course.engine.folding import FoldedBlock, fold_batch_norm

__all__ = [
    "FoldedBlock",
    "VmapTaskBatchNorm",
    "fast",
    "fast_gradient",
    "fold_batch_norm",
    "vmap_over_tasks",
]
