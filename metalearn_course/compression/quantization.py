"""Post-training int8 quantization of the Conv4 embedding (and, optionally, quantization-aware
training).

Affine quantization stores a tensor x as 8-bit integers q with one scale s and zero point z:

    q = clamp( round(x / s) + z, q_min, q_max ),      x̂ = s · (q - z)

so each number costs 1 byte instead of 4 and the convolutions run in integer arithmetic
(Jacob et al. 2018, "Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference", arXiv:1712.05877). Weights get one (s, z) per output
channel (their range is known); activations get one per tensor, set by *calibration*: run a few
batches of training images through the float network with observers that record each
activation's range. The rounding error is at most s/2 per number, small next to the range, so a
well-calibrated int8 embedding stays close to the float one.

PyTorch's FX graph mode does it in three calls (torch.ao.quantization.quantize_fx):
``prepare_fx`` traces the network, folds each batch norm into the convolution before it and
inserts observers; calibration is plain forward passes; ``convert_fx`` replaces each conv by a
quantized one. We trace ``Conv4.encoder`` (the blocks) rather than Conv4 itself, whose input
check is Python control flow that tracing cannot follow, and flatten afterwards
(`QuantizedEncoder`).

Quantization-aware training (`prepare_qat` → train → `convert_qat`) simulates the rounding in
the forward pass ("fake quantization", with a straight-through gradient) during fine-tuning, so
the weights learn to live with it; it helps when post-training quantization loses accuracy.

Caveats, said once:
* Quantized kernels run on the CPU only (fbgemm / x86 / qnnpack); a tensor on another device is
  refused with a clear error.
* The qconfig must match the quantized engine that runs the model
  (torch.backends.quantized.engine: "x86" on Intel/AMD, "qnnpack" on ARM); the default
  `backend=None` uses the current engine.
* torch.ao.quantization is deprecated upstream in favour of the torchao package, but works in
  this torch (2.x) build; its three noisy warnings (the deprecation notice, the observers'
  `reduce_range` notice and the quantized-tensor-creation notice) are silenced by exact message
  inside these functions only (`_quiet`), never globally.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.ao.quantization import get_default_qat_qconfig_mapping, get_default_qconfig_mapping
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx, prepare_qat_fx

from metalearn_course.compression.pruning import clone, make_permanent
from metalearn_course.data.episodes import Episode
from metalearn_course.nets import Conv4

# The start of each warning torch.ao.quantization emits while preparing or converting.
_NOISY = (
    r"torch\.ao\.quantization is deprecated",
    r"Please use quant_min and quant_max to specify the range for observers",
    r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor",
)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence exactly the three known torch.ao.quantization warnings, nothing else."""
    with warnings.catch_warnings():
        for message in _NOISY:
            warnings.filterwarnings("ignore", message=message)
        yield


def _check_images(x: torch.Tensor, what: str) -> None:
    if x.dim() != 4:
        raise ValueError(
            f"{what} expects images [batch, channels, height, width], got shape {tuple(x.shape)}"
        )
    if x.device.type != "cpu":
        raise ValueError(
            f"{what} got a tensor on {x.device}, but int8 quantized kernels run on the CPU only;"
            " move the episode or images to the cpu (episode.to('cpu'), or few_shot(...,"
            " device='cpu'))"
        )


class QuantizedEncoder(nn.Module):
    """An int8 Conv4: float images [B, C, H, W] (CPU) -> float embeddings [B, D].

    body: the converted blocks (a torch.fx GraphModule) that quantize the input, run int8
    conv → pool → ReLU blocks and dequantize the output. Use it wherever the float encoder was:
    ``ProtoNet(quantize_encoder(method.encoder, images))``. It has no trainable parameters; the
    int8 weights live in packed form (they are in its state_dict, not in .parameters()).
    """

    def __init__(self, body: nn.Module, backend: str) -> None:
        super().__init__()
        self.body = body
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_images(x, "QuantizedEncoder")
        return self.body(x.float()).flatten(start_dim=1)


class FakeQuantEncoder(nn.Module):
    """A Conv4 prepared for quantization-aware training: a float network whose forward rounds
    weights and activations as int8 would (fake quantization), trainable with train.fit.
    Turn it into a QuantizedEncoder with `convert_qat` after training."""

    def __init__(self, body: nn.Module, backend: str) -> None:
        super().__init__()
        self.body = body
        self.backend = backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(start_dim=1)


def _resolve_backend(backend: str | None) -> str:
    backend = torch.backends.quantized.engine if backend is None else backend
    supported = [e for e in torch.backends.quantized.supported_engines if e != "none"]
    if backend not in supported:
        raise ValueError(
            f"backend={backend!r}; this torch build supports {supported}"
            " ('x86' on Intel/AMD, 'qnnpack' on ARM)"
        )
    return backend


def _blocks(encoder: nn.Module) -> nn.Sequential:
    """A float copy of the Conv4's blocks, masks folded in (a pruned Conv4 quantizes too)."""
    if not isinstance(encoder, Conv4):
        raise ValueError(
            f"encoder is a {type(encoder).__name__}; pass a Conv4 (e.g. method.encoder)"
        )
    blocks = make_permanent(clone(encoder)).encoder
    return blocks.cpu().float()


def _batches(calibration: torch.Tensor | Iterable[torch.Tensor | Episode]) -> list[torch.Tensor]:
    """Calibration images as a list of float batches; an Episode contributes all its images."""
    items = [calibration] if isinstance(calibration, torch.Tensor) else list(calibration)
    batches = []
    for item in items:
        if isinstance(item, Episode):
            item = torch.cat([item.support_x, item.query_x])
        item = item.cpu()
        item = torch.div(item, 255) if item.dtype == torch.uint8 else item.float()
        _check_images(item, "calibration")
        batches.append(item)
    if not batches:
        raise ValueError("calibration is empty; pass a batch of training images or episodes")
    return batches


def quantize_encoder(
    encoder: Conv4,
    calibration: torch.Tensor | Iterable[torch.Tensor | Episode],
    backend: str | None = None,
) -> QuantizedEncoder:
    """Post-training static int8 quantization of a (trained) Conv4, calibrated on images.

    calibration: a batch of images [B, C, H, W], or an iterable of batches or Episodes, from
        the TRAINING data (calibrating on test images would peek at the test set). A few hundred
        images are enough: the observers only record min/max ranges.
    backend: the quantized engine the model will run on (default: the current one,
        torch.backends.quantized.engine).
    `encoder` is not modified; batch norm is folded into the convolutions with its running
    statistics (eval mode), so the result matches the encoder in eval mode.
    """
    backend = _resolve_backend(backend)
    blocks = _blocks(encoder).eval()
    batches = _batches(calibration)
    with _quiet():
        prepared = prepare_fx(
            blocks, get_default_qconfig_mapping(backend), example_inputs=(batches[0],)
        )
        with torch.no_grad():
            for batch in batches:  # calibration: observers record each activation's range
                prepared(batch)
        body = convert_fx(prepared)
    return QuantizedEncoder(body, backend).eval()


def prepare_qat(encoder: Conv4, backend: str | None = None) -> FakeQuantEncoder:
    """A copy of `encoder` ready for quantization-aware training (fake-quantized, trainable).

    Train it like any encoder, e.g. ``fit(ProtoNet(prepare_qat(trained.encoder)), ...)`` with a
    small learning rate, then `convert_qat`. Batch norm stays live during training (folded
    into the convolution's fake-quantized weights, as in Jacob et al. 2018, Sec. 3.2).
    """
    backend = _resolve_backend(backend)
    blocks = _blocks(encoder).train()
    example = torch.zeros(2, blocks[0][0].in_channels, 28, 28)
    with _quiet():
        body = prepare_qat_fx(
            blocks, get_default_qat_qconfig_mapping(backend), example_inputs=(example,)
        )
    return FakeQuantEncoder(body, backend)


def convert_qat(encoder: FakeQuantEncoder) -> QuantizedEncoder:
    """The int8 network of a quantization-aware-trained encoder (on the cpu, eval mode)."""
    if not isinstance(encoder, FakeQuantEncoder):
        raise ValueError(f"encoder is a {type(encoder).__name__}; pass the result of prepare_qat")
    body = copy.deepcopy(encoder.body).cpu().eval()
    with _quiet():
        body = convert_fx(body)
    return QuantizedEncoder(body, encoder.backend).eval()
