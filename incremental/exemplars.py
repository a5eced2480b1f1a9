"""Exemplar memory: iCaRL herding and a per-class store of raw uint8 images in herding order."""

from __future__ import annotations

import torch

from incsweep.incremental.image_sets import as_tensor

__all__ = ["herding_order", "ExemplarStore"]


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
        """Keep ``images`` for class ``label``: uint8, or an ImageSet's evaluation views (C x S x S
        bytes an exemplar, as MEMO counts an ImageNet exemplar)."""
        self._x[label] = as_tensor(images).detach().to("cpu", torch.uint8).contiguous()

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
