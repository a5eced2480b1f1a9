"""Accuracy matrix -> continual-learning metrics, exactly as docs/protocols.md defines them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["Metrics", "compute_metrics", "forgetting", "backward_transfer"]


@dataclass(frozen=True)
class Metrics:
    # metadata "label": the axis label and table heading people read (analysis/plots.py, the report)
    avg_acc: float = dataclasses.field(metadata={"label": "average incremental accuracy"})  # mean over i of acc_i
    last_acc: float = dataclasses.field(metadata={"label": "last accuracy"})  # acc_{T-1}
    forgetting: float = dataclasses.field(metadata={"label": "forgetting"})
    bwt: float = dataclasses.field(metadata={"label": "backward transfer"})

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": v for k, v in self.__dict__.items()}


def forgetting(acc: Sequence[Sequence[float]]) -> float:
    """Mean over j < T-1 of max_{i in [j, T-2]} acc[i][j] - acc[T-1][j]; 0 after one task."""
    t = len(acc)
    if t < 2:
        return 0.0
    return float(np.mean([max(acc[i][j] for i in range(j, t - 1)) - acc[t - 1][j] for j in range(t - 1)]))


def backward_transfer(acc: Sequence[Sequence[float]]) -> float:
    """Mean over j < T-1 of acc[T-1][j] - acc[j][j]; 0 after one task."""
    t = len(acc)
    if t < 2:
        return 0.0
    return float(np.mean([acc[t - 1][j] - acc[j][j] for j in range(t - 1)]))


def compute_metrics(acc: Sequence[Sequence[float]], seen_acc: Sequence[float]) -> Metrics:
    """``acc``: lower-triangular rows so far; ``seen_acc[i]``: acc_i (accuracy on all seen data after task i)."""
    if not seen_acc:
        nan = float("nan")
        return Metrics(nan, nan, nan, nan)
    return Metrics(
        avg_acc=float(np.mean(seen_acc)),
        last_acc=float(seen_acc[-1]),
        forgetting=forgetting(acc),
        bwt=backward_transfer(acc),
    )
