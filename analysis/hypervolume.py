"""Exact hypervolume (the volume of objective space a front dominates, bounded by a reference point).

2-D: one sweep over the front sorted by the first objective, O(n log n).
3-D and more: our own exact dimension sweep ("HSO", While, Hingston, Barone & Huband, IEEE TEC 2006):
slice along the last objective and add slice thickness times the (d-1)-D hypervolume of the points
below the slice. O(n^(d-1) log n): exact and fast for the fronts a study produces (tens to a few
thousand points), slow for huge fronts in many dimensions. No maintained library is a dependency:
pymoo/botorch are heavy and optuna's implementation is private; tests check ours against a brute
force on a grid.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from incsweep.analysis.dominance import nondominated_mask
from incsweep.analysis.objectives import Objective, as_minimisation
from incsweep.core.errors import ConfigError

__all__ = ["hypervolume", "reference_point", "parse_reference"]


def _hv_min(p: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of points ``p`` (minimisation, all strictly below ``ref``)."""
    if len(p) == 0:
        return 0.0
    d = p.shape[1]
    if d == 1:
        return float(ref[0] - p[:, 0].min())
    p = np.unique(p[nondominated_mask(p)], axis=0)
    if d == 2:
        p = p[np.argsort(p[:, 0], kind="stable")]  # x ascending, so y strictly descending on a front
        x_next = np.r_[p[1:, 0], ref[0]]
        return float(np.sum((x_next - p[:, 0]) * (ref[1] - p[:, 1])))
    p = p[np.argsort(p[:, -1], kind="stable")]
    z_next = np.r_[p[1:, -1], ref[-1]]
    total = 0.0
    for i in range(len(p)):
        thickness = z_next[i] - p[i, -1]
        if thickness > 0:
            total += thickness * _hv_min(p[: i + 1, :-1], ref[:-1])
    return total


def hypervolume(points: np.ndarray, ref: Sequence[float] | np.ndarray, senses: Sequence[str] | None = None) -> float:
    """Exact hypervolume of ``points`` (n, d) against ``ref`` (d,); ``senses``: ``max``/``min`` per
    column (default all ``min``). Points not strictly better than ``ref`` in every objective add nothing."""
    p = np.asarray(points, dtype=np.float64)
    r = np.asarray(ref, dtype=np.float64)
    if p.ndim == 1:
        p = p.reshape(-1, len(r))
    if p.shape[1] != r.shape[0]:
        raise ValueError(f"points have {p.shape[1]} objectives, the reference point {r.shape[0]}")
    senses = list(senses) if senses is not None else ["min"] * len(r)
    objs = [Objective(f"c{i}", s) for i, s in enumerate(senses)]
    p, r = as_minimisation(p, objs), as_minimisation(r[None, :], objs)[0]
    if np.isnan(r).any():
        raise ValueError("reference point contains NaN")
    p = p[~np.isnan(p).any(axis=1)]
    p = p[np.all(p < r, axis=1)]
    return _hv_min(p, r)


def reference_point(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """The worst value observed per objective (min for ``max`` objectives, max for ``min`` ones).

    Derived this way when the user states none, so that every group analysed together is measured
    against the same point; runs at the worst value of an objective add no volume.
    """
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        raise ConfigError("cannot derive a hypervolume reference point from zero runs")
    return np.array([np.nanmin(v[:, i]) if o.sense == "max" else np.nanmax(v[:, i]) for i, o in enumerate(objectives)])


def parse_reference(text: str | Mapping[str, float] | Sequence[float], objectives: Sequence[Objective]) -> np.ndarray:
    """``"avg_acc=0,total_mb=50"`` (names as in --objectives, before the --split mapping, or the
    mapped column names), a mapping, or values in objective order -> the reference point."""
    bare = {o.column.removeprefix("test_"): o for o in objectives}
    if isinstance(text, str):
        items: dict[str, float] = {}
        for part in filter(None, (s.strip() for s in text.split(","))):
            name, eq, value = part.partition("=")
            if not eq:
                raise ConfigError(f"--ref {text!r}: write NAME=VALUE per objective, e.g. avg_acc=0,total_mb=50")
            try:
                items[name.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"--ref {text!r}: {value!r} is not a number") from None
        text = items
    if isinstance(text, Mapping):
        out: dict[str, float] = {}
        for name, given in text.items():
            obj = next((o for o in objectives if o.column == name), None) or bare.get(name)
            if obj is None:
                raise ConfigError(f"--ref names {name!r}, which is not an objective; objectives: {[str(o) for o in objectives]}")
            out[obj.column] = float(given)
        missing = [o.column for o in objectives if o.column not in out]
        if missing:
            raise ConfigError(f"--ref gives no value for {missing}; give one per objective")
        return np.array([out[o.column] for o in objectives])
    values = np.asarray(list(text), dtype=np.float64)
    if values.shape != (len(objectives),):
        raise ConfigError(f"reference point has {values.size} values for {len(objectives)} objectives")
    return values
