"""Byte-exact accounting of what a method must keep to predict (docs/protocols.md, "Memory accounting")."""

from __future__ import annotations

from typing import Iterable, Iterator

import torch
from torch import nn

from incsweep.core.memory_report import MemoryReport
from incsweep.core.units import MB

__all__ = ["MB", "MemoryReport", "tensor_bytes", "inference_tensors", "module_bytes"]


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
