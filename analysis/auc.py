"""MEMO's memory-aware measures: area under the accuracy-against-memory curve (AUC-A, AUC-L).

docs/protocols.md / MEMO (Zhou et al., ICLR 2023, "memory-aware measures"): trapezoidal area under
average (AUC-A) or last (AUC-L) accuracy, as a fraction in [0, 1], against total memory in MB, over
the budgets studied; not normalised. MEMO evaluates each method at a few fixed budgets; a sweep has
many configurations per memory size, so the curve here goes through each method's Pareto-optimal
points (best accuracy for its memory), connected linearly as MEMO's budget points are, and stays
flat from the last of them to the method's largest run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from incsweep.analysis.pareto import pareto_mask

__all__ = ["auc_over_memory", "memory_curve", "MemoryAUC", "memory_aucs"]


def memory_curve(memory_mb: np.ndarray, acc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The best-accuracy-for-memory curve through the given runs, sorted by memory: their Pareto
    front (acc max, memory min; of identical points one), then flat up to the largest run's memory
    (more memory never does worse than the best configuration that fits in less)."""
    m, a = np.asarray(memory_mb, dtype=np.float64), np.asarray(acc, dtype=np.float64)
    ok = ~(np.isnan(m) | np.isnan(a))
    m, a = m[ok], a[ok]
    if not len(m):
        return m, a
    on = pareto_mask(np.column_stack([m, a]), ["min", "max"])
    pts = np.unique(np.column_stack([m[on], a[on]]), axis=0)  # sorted by memory
    if m.max() > pts[-1, 0]:
        pts = np.vstack([pts, [m.max(), pts[-1, 1]]])
    return pts[:, 0], pts[:, 1]


def auc_over_memory(memory_mb: np.ndarray, acc: np.ndarray, lo: float | None = None, hi: float | None = None) -> float:
    """Trapezoidal area under ``acc`` against ``memory_mb`` through the given curve points (sorted
    here), between ``lo`` and ``hi`` (default: the points' span; values in between are interpolated
    linearly). Raises ValueError when [lo, hi] leaves the span, where the curve is unknown."""
    m, a = np.asarray(memory_mb, dtype=np.float64), np.asarray(acc, dtype=np.float64)
    if m.shape != a.shape or m.ndim != 1 or len(m) == 0:
        raise ValueError("auc_over_memory needs two equally long, non-empty 1-D arrays")
    order = np.argsort(m, kind="stable")
    m, a = m[order], a[order]
    lo = m[0] if lo is None else float(lo)
    hi = m[-1] if hi is None else float(hi)
    if lo < m[0] or hi > m[-1] or lo > hi:
        raise ValueError(f"range [{lo}, {hi}] MB is outside the curve's span [{m[0]}, {m[-1]}] MB")
    inside = (m > lo) & (m < hi)
    xs = np.r_[lo, m[inside], hi]
    ys = np.r_[np.interp(lo, m, a), a[inside], np.interp(hi, m, a)]
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2.0))


@dataclass(frozen=True)
class MemoryAUC:
    """AUC-A and AUC-L of one group over [lo_mb, hi_mb] (a range shared by all groups compared)."""

    auc_a: float
    auc_l: float
    lo_mb: float
    hi_mb: float
    points: int  # points of the average-accuracy curve (its front, plus the flat end when there is one)


def memory_aucs(curves: Mapping[object, tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict[object, MemoryAUC]:
    """``{group: (memory_mb, avg_acc, last_acc)}`` of complete runs -> AUC-A/AUC-L per group.

    Every group and both measures use one memory range, the one all groups cover (the largest of
    their smallest memories to the smallest of their largest), so the areas are comparable; when
    the groups share no range, each group uses its own span (lo_mb/hi_mb say which).
    """
    built = {key: (memory_curve(m, avg), memory_curve(m, last)) for key, (m, avg, last) in curves.items()}
    spans = [(ca[0][0], ca[0][-1]) for ca, _ in built.values() if len(ca[0])]
    lo = max((s[0] for s in spans), default=np.nan)
    hi = min((s[1] for s in spans), default=np.nan)
    shared = bool(spans) and lo <= hi
    out = {}
    for key, ((ma, aa), (ml, al)) in built.items():
        if not len(ma) or not len(ml):
            out[key] = MemoryAUC(np.nan, np.nan, np.nan, np.nan, 0)
            continue
        # both curves span the group's smallest to largest memory (see memory_curve)
        g_lo, g_hi = (lo, hi) if shared else (ma[0], ma[-1])
        out[key] = MemoryAUC(auc_over_memory(ma, aa, g_lo, g_hi), auc_over_memory(ml, al, g_lo, g_hi),
                             float(g_lo), float(g_hi), len(ma))
    return out
