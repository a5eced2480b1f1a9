"""What a method stores, by part: the memory half of the result vocabulary (torch-free, so that the
analysis and the CLI can name its fields without importing torch)."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import ClassVar

from incsweep.core.units import MB

__all__ = ["MemoryReport"]


@dataclass(frozen=True)
class MemoryReport:
    """What a method stores, by part. ``train_state_bytes`` is training-time only (not in total)."""

    # metadata "label": what people read on an axis or a table heading, with the unit
    model_bytes: int = dataclasses.field(metadata={"label": "model (bytes)"})
    exemplar_bytes: int = dataclasses.field(default=0, metadata={"label": "exemplars (bytes)"})
    # per-task extras (e.g. BMKP coefficients, per-task BN sets, EWC's Fisher and anchors)
    extra_bytes: int = dataclasses.field(default=0, metadata={"label": "extras (bytes)"})
    n_exemplars: int = dataclasses.field(default=0, metadata={"label": "exemplars (count)"})
    # e.g. BMKP's working network: needed to train, not to predict
    train_state_bytes: int = dataclasses.field(default=0, metadata={"label": "training-only state (bytes)"})

    # Properties that are results in their own right (reported, stored and optimisable like fields),
    # with their labels.
    DERIVED: ClassVar[tuple[str, ...]] = ("total_bytes", "total_mb")
    DERIVED_LABELS: ClassVar[dict[str, str]] = {"total_bytes": "total memory (bytes)",
                                                "total_mb": "total memory (MB, 2^20 bytes)"}

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.exemplar_bytes + self.extra_bytes

    @property
    def total_mb(self) -> float:
        return self.total_bytes / MB

    @classmethod
    def columns(cls) -> dict[str, type]:
        """Every reported memory value -> its Python type (int or float): fields, then DERIVED."""
        hints = typing.get_type_hints(cls)
        out: dict[str, type] = {f.name: hints[f.name] for f in dataclasses.fields(cls)}
        for name in cls.DERIVED:
            out[name] = typing.get_type_hints(getattr(cls, name).fget)["return"]
        return out

    @classmethod
    def labels(cls) -> dict[str, str]:
        """Every reported memory value -> its human label with unit."""
        return {**{f.name: f.metadata["label"] for f in dataclasses.fields(cls)}, **cls.DERIVED_LABELS}

    def as_dict(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in self.columns()}
