"""Which runs meet the constraints: each row by its own study's, plus any ad-hoc ones.

A row's constraints are, in order of trust: the ``constraints`` column the study's sink wrote into
it (incsweep/core/schema.py), else the study's ``study.yaml`` when the inputs include the study's storage
(results written before the column existed), else none. ``analyze --constraint`` adds constraints
to every row, across studies; ``--ignore-constraints`` drops the stored ones. The verdict is
Optuna's rule (incsweep/core/constraints.py), so a study's front here equals Optuna's ``best_trials``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from incsweep.core.constraints import Constraint, format_constraints, met, parse_constraints

__all__ = ["Feasibility", "judge"]

CONSTRAINTS_COLUMN = "constraints"


@dataclass(frozen=True)
class Feasibility:
    """The verdict per row, and which constraints were applied to each study's rows, as text."""

    feasible: np.ndarray  # bool, one per row of the judged table
    applied: dict[str, str]  # study -> the constraints its rows were judged by ("" for none)
    ad_hoc: str  # the constraints given for all rows ("" for none)
    ignored_stored: bool  # the studies' own constraints were set aside (--ignore-constraints)


def _values(table: pa.Table, column: str) -> np.ndarray:
    if column not in table.column_names:
        return np.full(table.num_rows, np.nan)
    col = table[column]
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        return np.full(table.num_rows, np.nan)
    return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)


def _meets(table: pa.Table, constraints: Sequence[Constraint]) -> np.ndarray:
    ok = np.ones(table.num_rows, dtype=bool)
    with np.errstate(invalid="ignore"):
        for c in constraints:
            ok &= met(c.violation(_values(table, c.metric)))
    return ok


def _strings(table: pa.Table, column: str) -> list[Any]:
    if column not in table.column_names:
        return [None] * table.num_rows
    return pc.cast(table[column], pa.string()).to_pylist()


def judge(table: pa.Table, *, study_constraints: Mapping[str, Any] | None = None, ad_hoc: Any = None,
          ignore_stored: bool = False) -> Feasibility:
    """Judge every row of ``table``. ``study_constraints``: study -> its spec's constraints, used for
    rows that carry none; ``ad_hoc``: constraints for every row (strings or Constraint objects)."""
    extra = parse_constraints(ad_hoc)
    from_specs = {name: parse_constraints(value) for name, value in (study_constraints or {}).items()}
    studies, stored = _strings(table, "study"), _strings(table, CONSTRAINTS_COLUMN)
    keys: dict[tuple[Any, Any], list[int]] = {}
    for i, key in enumerate(zip(studies, stored)):
        keys.setdefault(key, []).append(i)
    feasible = np.ones(table.num_rows, dtype=bool)
    applied: dict[str, set[str]] = {}
    for (study, text), rows in keys.items():
        own: tuple[Constraint, ...] = ()
        if not ignore_stored:
            own = parse_constraints(text) if text is not None else from_specs.get(study, ())
        rules = own + extra
        applied.setdefault(str(study), set()).add(format_constraints(rules))
        if rules:
            idx = np.asarray(rows)
            feasible[idx] = _meets(table.take(pa.array(idx)), rules)
    return Feasibility(feasible=feasible, applied={s: " | ".join(sorted(t)) for s, t in sorted(applied.items())},
                       ad_hoc=format_constraints(extra), ignored_stored=ignore_stored)
