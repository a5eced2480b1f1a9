"""Picking configurations off a front: the best under a memory limit, and the knee."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from incsweep.analysis.objectives import Objective, as_minimisation

__all__ = ["best_under", "knee_index"]


def best_under(memory_mb: np.ndarray, score: np.ndarray, limit_mb: float, sense: str = "max") -> int | None:
    """Index of the best ``score`` among runs with ``memory_mb <= limit_mb`` (ties: the smaller
    memory, then the first row); None when no run fits."""
    m, s = np.asarray(memory_mb, dtype=np.float64), np.asarray(score, dtype=np.float64)
    s = -s if sense == "max" else s
    fits = np.flatnonzero((m <= limit_mb) & ~np.isnan(s))
    if not len(fits):
        return None
    order = np.lexsort((fits, m[fits], s[fits]))  # best score, then least memory, then row order
    return int(fits[order[0]])


def knee_index(front_values: np.ndarray, objectives: Sequence[Objective]) -> int | None:
    """The knee of a front (rows: front points, columns: objectives), None for an empty front.

    Objectives are min-max normalised over the front first, so units do not matter.
    2 objectives: the point farthest from the chord joining the two extreme points (the "maximum
    distance" knee of Das 1999 / Kneedle, Satopaa et al. 2011). More objectives, or fronts of one
    or two points: the point nearest the ideal point (best value of every objective).
    """
    f = as_minimisation(np.asarray(front_values, dtype=np.float64), objectives)
    if len(f) == 0:
        return None
    lo, hi = f.min(axis=0), f.max(axis=0)
    width = np.where(hi > lo, hi - lo, 1.0)
    z = (f - lo) / width
    if f.shape[1] == 2 and len(f) >= 3:
        a, b = z[np.argmin(z[:, 0])], z[np.argmin(z[:, 1])]
        chord = b - a
        norm = np.hypot(*chord)
        if norm > 0:
            # distance to the line through a and b, positive on the side of the ideal point (0, 0)
            dist = (chord[0] * (z[:, 1] - a[1]) - chord[1] * (z[:, 0] - a[0])) / norm
            side = np.sign(chord[0] * (0 - a[1]) - chord[1] * (0 - a[0])) or 1.0
            return int(np.argmax(dist * side))
    return int(np.argmin(np.linalg.norm(z, axis=1)))
