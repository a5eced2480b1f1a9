"""Exemplar memory: iCaRL herding and a per-class store of raw uint8 images in herding order."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from incsweep.core.configs import spec, validate
from incsweep.core.errors import ConfigError
from incsweep.incremental.memory import MB, aligned_exemplars, exemplars_for_budget

__all__ = ["herding_order", "ExemplarStore", "BudgetConfig", "resolve_budget"]


def herding_order(features: torch.Tensor, m: int) -> torch.Tensor:
    """iCaRL herding: indices of ``m`` samples whose running mean best tracks the class mean.

    ``features`` should already be L2-normalised (MEMO/PyCIL normalise before herding). A sample is
    chosen at most once, as in PyCIL.
    """
    n = features.shape[0]
    m = min(m, n)
    mu = features.mean(0)
    chosen: list[int] = []
    running = torch.zeros_like(mu)
    available = torch.ones(n, dtype=torch.bool, device=features.device)
    for k in range(1, m + 1):
        candidate_means = (running.unsqueeze(0) + features) / k
        dist = (mu.unsqueeze(0) - candidate_means).norm(dim=1)
        dist[~available] = float("inf")
        i = int(torch.argmin(dist))
        chosen.append(i)
        available[i] = False
        running += features[i]
    return torch.tensor(chosen, dtype=torch.long)


class ExemplarStore:
    """Per-class raw uint8 exemplars, each class kept in herding order so shrinking keeps a prefix."""

    def __init__(self) -> None:
        self._x: dict[int, torch.Tensor] = {}

    def add(self, label: int, images: torch.Tensor) -> None:
        self._x[label] = images.detach().to("cpu", torch.uint8).contiguous()

    def shrink(self, per_class: int) -> None:
        """Keep the first ``per_class`` of every class (herding order)."""
        for c in self._x:
            self._x[c] = self._x[c][:per_class].clone()

    @property
    def classes(self) -> list[int]:
        return sorted(self._x)

    def __len__(self) -> int:
        return sum(len(v) for v in self._x.values())

    @property
    def nbytes(self) -> int:
        """Raw uint8 size; labels are implied by the per-class layout, so they cost nothing here."""
        return sum(v.numel() for v in self._x.values())

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All exemplars (uint8) and their labels, classes in ascending order."""
        if not self._x:
            return torch.empty(0, dtype=torch.uint8), torch.empty(0, dtype=torch.long)
        xs = [self._x[c] for c in self.classes]
        ys = [torch.full((len(self._x[c]),), c, dtype=torch.long) for c in self.classes]
        return torch.cat(xs), torch.cat(ys)

    def state_dict(self) -> dict:
        return {int(c): v for c, v in self._x.items()}

    def load_state_dict(self, state: dict) -> None:
        self._x = {int(c): v.to(torch.uint8) for c, v in state.items()}


@dataclass(frozen=True)
class BudgetConfig:
    """How many exemplars a method may keep (docs/protocols.md and memo.md "Budgets").

    - ``count``: ``memory_size`` exemplars in total, ``memory_size // classes_seen`` per class;
    - ``per_class``: ``memory_per_class`` for every seen class;
    - ``total_mb``: whatever fits in ``memory_mb`` after the final model's bytes;
    - ``aligned``: DER's memory, ``aligned_base`` exemplars + T backbones (MEMO's fair comparison).
    """

    budget: str = spec("count", choices=("count", "per_class", "total_mb", "aligned"))
    memory_size: int = spec(2000, range=(0, None))  # PyCIL/MEMO default total exemplars
    memory_per_class: int = spec(20, range=(0, None))  # iCaRL/PyCIL fixed-per-class default
    memory_mb: float = spec(0.0, range=(0.0, None))
    aligned_base: int = spec(2000, range=(0, None))  # MEMO aligns to DER with 2,000 exemplars

    def __post_init__(self) -> None:
        validate(self)
        if self.budget == "total_mb" and self.memory_mb <= 0:
            raise ConfigError("budget=total_mb needs memory_mb > 0 (the total memory in MB = 2^20 bytes)")


def resolve_budget(cfg: BudgetConfig, *, final_model_bytes: int, image_bytes: int, n_tasks: int,
                   backbone_params: int, kept_params: int) -> int | None:
    """Total exemplar count M for the run, or None for a fixed per-class budget."""
    if cfg.budget == "count":
        return cfg.memory_size
    if cfg.budget == "per_class":
        return None
    if cfg.budget == "total_mb":
        m = exemplars_for_budget(cfg.memory_mb, final_model_bytes, image_bytes)
        if m == 0:
            raise ConfigError(
                f"memory_mb={cfg.memory_mb} leaves no room for exemplars: the model alone needs "
                f"{final_model_bytes / MB:.3f} MB"
            )
        return m
    return aligned_exemplars(base=cfg.aligned_base, n_tasks=n_tasks, backbone_params=backbone_params,
                             kept_params=kept_params, image_bytes=image_bytes)
