"""Pareto fronts of result tables over any number of objectives (dominance itself: dominance.py)."""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from incsweep.analysis.dominance import nondominated_mask
from incsweep.analysis.load import as_table, complete_runs, require_columns
from incsweep.analysis.objectives import DEFAULT_OBJECTIVES, Objective, as_minimisation, parse_objectives
from incsweep.core.errors import ConfigError

__all__ = ["pareto_mask", "nondominated_mask", "pareto_front", "objective_matrix", "group_indices"]

log = logging.getLogger(__name__)


def pareto_mask(values: np.ndarray, senses: Sequence[str]) -> np.ndarray:
    """(n, d) objective values with a ``max``/``min`` sense per column -> Pareto-optimal rows."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(senses):
        raise ValueError(f"values of shape {values.shape} do not match {len(senses)} senses")
    return nondominated_mask(as_minimisation(values, [Objective(f"c{i}", s) for i, s in enumerate(senses)]))


def objective_matrix(table: pa.Table, objectives: Sequence[Objective]) -> np.ndarray:
    """(n, d) float64 values of the objective columns (nulls become NaN)."""
    require_columns(table, [o.column for o in objectives])
    cols = []
    for o in objectives:
        col = table[o.column]
        if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_boolean(col.type)):
            raise ConfigError(f"objective {o.column} is of type {col.type}; objectives must be numeric columns")
        cols.append(pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False))
    if not cols:
        return np.zeros((table.num_rows, 0))
    return np.column_stack(cols).astype(np.float64, copy=False)


def group_indices(table: pa.Table, by: Sequence[str]) -> dict[tuple, np.ndarray]:
    """Row indices of each distinct value tuple of the ``by`` columns (one group () when ``by`` is empty)."""
    if not by:
        return {(): np.arange(table.num_rows)}
    require_columns(table, by)
    codes, labels = [], []
    for name in by:
        enc = pc.dictionary_encode(table[name], null_encoding="encode").combine_chunks()
        codes.append(enc.indices.to_numpy(zero_copy_only=False).astype(np.int64))
        labels.append(enc.dictionary.to_pylist())
    key = np.zeros(table.num_rows, dtype=np.int64)
    for c, lab in zip(codes, labels):
        key = key * (len(lab) + 1) + c
    uniq, inverse = np.unique(key, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    groups = {}
    for g in range(len(uniq)):
        idx = order[bounds[g]:bounds[g + 1]]
        first = idx[0]
        groups[tuple(lab[c[first]] for c, lab in zip(codes, labels))] = idx
    return dict(sorted(groups.items(), key=lambda kv: tuple(map(str, kv[0]))))


def usable_runs(table: pa.Table, objectives: Sequence[Objective]) -> pa.Table:
    """Complete runs whose every objective has a value (NaN/null rows are dropped, with a note)."""
    runs = complete_runs(table)
    values = objective_matrix(runs, objectives)
    ok = ~np.isnan(values).any(axis=1)
    if not ok.all():
        bad = [o.column for o, col in zip(objectives, values.T) if np.isnan(col).any()]
        log.info("%d complete run(s) have no value for %s and are left out", int((~ok).sum()), bad)
        runs = runs.filter(pa.array(ok))
    return runs


def pareto_front(table: pa.Table | Any, objectives: str | Sequence[str | Objective] = DEFAULT_OBJECTIVES, *,
                 split: str = "val", by: Sequence[str] = ()) -> pa.Table:
    """The Pareto-optimal complete runs of ``table`` (rows as loaded: a pyarrow Table, or a pandas or
    polars DataFrame of them), per group of ``by`` columns.

    Only final rows of runs with status ``complete`` are considered; the result is sorted by the
    groups, then by the first objective.
    """
    objs = parse_objectives(objectives, split)
    from incsweep.analysis.confirmation import split_confirmation  # confirmation runs never make a front

    table = as_table(table)

    runs = usable_runs(split_confirmation(table)[0], objs)
    values = as_minimisation(objective_matrix(runs, objs), objs)
    keep: list[np.ndarray] = []
    for idx in group_indices(runs, list(by)).values():
        sub = idx[nondominated_mask(values[idx])]
        keep.append(sub[np.lexsort(values[sub].T[::-1])])
    take = np.concatenate(keep) if keep else np.zeros(0, dtype=np.int64)
    return runs.take(pa.array(take, pa.int64()))
