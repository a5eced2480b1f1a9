"""Byte-exact accounting of what a method must keep to predict (docs/protocols.md, "Memory accounting")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch
from torch import nn

from .units import MB

__all__ = ["MB", "MemoryReport", "tensor_bytes", "module_bytes", "exemplars_for_budget", "aligned_exemplars"]



def tensor_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of tensors at the dtype they are stored in."""
    return sum(t.numel() * t.element_size() for t in tensors)


def module_bytes(module: nn.Module) -> int:
    """Parameters and buffers a module needs at inference.

    BatchNorm's ``num_batches_tracked`` is left out: it only drives cumulative-average momentum
    during training and plays no part in prediction.
    """
    params = tensor_bytes(module.parameters())
    buffers = tensor_bytes(b for name, b in module.named_buffers() if not name.endswith("num_batches_tracked"))
    return params + buffers


@dataclass(frozen=True)
class MemoryReport:
    """What a method stores, by part. ``train_state_bytes`` is training-time only (not in total)."""

    model_bytes: int
    exemplar_bytes: int = 0
    extra_bytes: int = 0  # per-task extras (e.g. BMKP coefficients, per-task BN sets)
    n_exemplars: int = 0
    train_state_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.exemplar_bytes + self.extra_bytes

    @property
    def total_mb(self) -> float:
        return self.total_bytes / MB

    def as_dict(self) -> dict[str, float]:
        return {
            "model_bytes": self.model_bytes,
            "exemplar_bytes": self.exemplar_bytes,
            "extra_bytes": self.extra_bytes,
            "total_bytes": self.total_bytes,
            "total_mb": self.total_mb,
            "n_exemplars": self.n_exemplars,
            "train_state_bytes": self.train_state_bytes,
        }


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
