"""Dominance, the one implementation incsweep has: Pareto fronts (analysis), non-dominated sorting
and dominator counts (the study's Pareto-aware ASHA, study/scheduler.py), hypervolume's fronts.

All functions take (n, d) arrays where smaller is better in every column (``as_minimisation``).
A point dominates another when it is no worse in every column and strictly better in one; points
with identical values do not dominate each other, so duplicates on a front are all kept (they are
different trials a user may want to see).
"""

from __future__ import annotations

import numpy as np

__all__ = ["nondominated_mask", "nondomination_layers", "dominator_count", "dominance_matrix"]


def dominance_matrix(points: np.ndarray) -> np.ndarray:
    """(n, n) booleans: ``[i, j]`` is True when row i dominates row j. O(n^2 d) memory: small n only."""
    p = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    return np.all(p[:, None, :] <= p[None, :, :], axis=2) & np.any(p[:, None, :] < p[None, :, :], axis=2)


def dominator_count(point: np.ndarray, points: np.ndarray) -> int:
    """How many rows of ``points`` dominate ``point``."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, len(point))
    return int((np.all(pts <= point, axis=1) & np.any(pts < point, axis=1)).sum())


def nondomination_layers(points: np.ndarray) -> np.ndarray:
    """Non-dominated sorting: each row's layer, 0 for rows no other row dominates, 1 for those only
    layer-0 rows dominate, and so on."""
    dominates = dominance_matrix(points)
    layers = np.full(len(dominates), -1)
    left = np.ones(len(dominates), dtype=bool)
    layer = 0
    while left.any():
        current = left & ~np.any(dominates & left[:, None], axis=0)
        layers[current] = layer
        left &= ~current
        layer += 1
    return layers


def _mask_2d(f: np.ndarray) -> np.ndarray:
    # Sort by (x, y); a point is on the front iff it is the lowest y of its x-group and that y is
    # strictly below every y seen at smaller x. O(n log n).
    order = np.lexsort((f[:, 1], f[:, 0]))
    x, y = f[order, 0], f[order, 1]
    start = np.r_[True, x[1:] != x[:-1]]
    starts = np.flatnonzero(start)
    gmin = np.minimum.reduceat(y, starts)
    prev = np.r_[np.inf, np.minimum.accumulate(gmin)[:-1]]
    gid = np.cumsum(start) - 1
    on = (y == gmin[gid]) & (gmin[gid] < prev[gid])
    mask = np.zeros(len(f), dtype=bool)
    mask[order] = on
    return mask


def _mask_nd(f: np.ndarray) -> np.ndarray:
    # Lexicographic order: anything dominating a point sorts before it. Walk the survivors in that
    # order; each one is non-dominated when reached and removes every point it dominates.
    # O(n * front size * d).
    order = np.lexsort(f.T[::-1])
    rest, ids = f[order], order
    i = 0
    while i < len(rest):
        p = rest[i]
        dominated = np.all(rest >= p, axis=1) & np.any(rest > p, axis=1)
        rest, ids = rest[~dominated], ids[~dominated]
        i += 1
    mask = np.zeros(len(f), dtype=bool)
    mask[ids] = True
    return mask


def nondominated_mask(f: np.ndarray) -> np.ndarray:
    """``f``: (n, d) values, smaller is better in every column -> True where no row dominates."""
    f = np.asarray(f, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"expected an (n, d) array, got shape {f.shape}")
    if np.isnan(f).any():
        raise ValueError("objective values contain NaN; drop those rows first")
    if len(f) == 0:
        return np.zeros(0, dtype=bool)
    if f.shape[1] == 1:
        return f[:, 0] == f[:, 0].min()
    return _mask_2d(f) if f.shape[1] == 2 else _mask_nd(f)
