"""Model compression of a meta-learned embedding: prune it, quantize it, distil it, measure it.

* pruning.py: magnitude pruning with torch.nn.utils.prune, global unstructured
  (`global_magnitude_prune`) and structured by output channel (`channel_prune`), and the
  physically smaller dense Conv4 without the pruned channels (`remove_pruned_channels`).
* quantization.py: post-training static int8 quantization (`quantize_encoder`) and
  quantization-aware training (`prepare_qat`, `convert_qat`), CPU only.
* distillation.py: Hinton et al.'s loss (`distillation_loss`) and a student ProtoNet that
  learns the teacher's episode logits with train.fit (`DistilledProtoNet`).
* measure.py: parameters, bytes on disk and latency per episode.
"""

from metalearn_course.compression.distillation import DistilledProtoNet, distillation_loss
from metalearn_course.compression.measure import (
    latency_per_episode,
    parameter_count,
    size_on_disk,
)
from metalearn_course.compression.pruning import (
    channel_prune,
    clone,
    global_magnitude_prune,
    layer_sparsity,
    load_pruned,
    make_permanent,
    remove_pruned_channels,
    sparsity,
)
from metalearn_course.compression.quantization import (
    FakeQuantEncoder,
    QuantizedEncoder,
    convert_qat,
    prepare_qat,
    quantize_encoder,
)

__all__ = [
    "DistilledProtoNet",
    "FakeQuantEncoder",
    "QuantizedEncoder",
    "channel_prune",
    "clone",
    "convert_qat",
    "distillation_loss",
    "global_magnitude_prune",
    "latency_per_episode",
    "layer_sparsity",
    "load_pruned",
    "make_permanent",
    "parameter_count",
    "prepare_qat",
    "quantize_encoder",
    "remove_pruned_channels",
    "size_on_disk",
    "sparsity",
]
