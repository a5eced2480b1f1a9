"""Byte-exact accounting of what a method must keep to predict (docs/protocols.md, "Memory accounting")."""

from __future__ import annotations

from typing import Iterable, Iterator

import torch
from torch import nn

from incsweep.core.memory_report import MemoryReport
from incsweep.core.units import MB

__all__ = ["MB", "MemoryReport", "tensor_bytes", "inference_tensors", "module_bytes",
           "exemplars_for_budget", "aligned_exemplars"]


def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of tensors at the dtype they are stored in."""
    return sum(t.numel() * t.element_size() for t in tensors)


def inference_tensors(module: nn.Module) -> Iterator[torch.Tensor]:
    """Parameters and buffers a module needs at inference.

    BatchNorm's ``num_batches_tracked`` is left out: it only drives cumulative-average momentum
    during training and plays no part in prediction.
    """
    yield from module.parameters()
    yield from (b for name, b in module.named_buffers() if not name.endswith("num_batches_tracked"))


def module_bytes(module: nn.Module) -> int:
    """Bytes of ``inference_tensors(module)``."""
    return tensor_bytes(inference_tensors(module))


def exemplars_for_budget(total_mb: float, model_bytes: int, image_bytes: int) -> int:
    """How many raw uint8 exemplars fit in ``total_mb`` after the model's bytes (0 if none fit)."""
    free = int(total_mb * MB) - model_bytes
    return max(free // image_bytes, 0)


def aligned_exemplars(*, base: int, n_tasks: int, backbone_params: int, kept_params: int, image_bytes: int) -> int:
    """Exemplars at DER's memory (docs/protocols.md): base + the float32 bytes of T backbones not kept.

    ``kept_params`` is what the method holds of those T backbones (1 backbone for a single-model
    method; g + T*s for MEMO), so DER itself (kept = T*P) gets exactly ``base``.
    """
    spare = n_tasks * backbone_params - kept_params
    return base + max(spare, 0) * 4 // image_bytes
