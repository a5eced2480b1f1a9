"""One pass over loaded results: fronts, hypervolumes, AUC over memory, best under X MB, knees.

The CLI, the plots, the report and the export all read a ``Summary``; nothing here prints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence, TypeVar, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from incsweep.analysis.auc import MemoryAUC, memory_aucs
from incsweep.analysis.confirmation import split_confirmation
from incsweep.analysis.feasibility import judge
from incsweep.analysis.hypervolume import hypervolume, parse_reference, reference_point
from incsweep.analysis.load import as_table
from incsweep.analysis.objectives import (
    DEFAULT_OBJECTIVES,
    MEMORY_COLUMN,
    Objective,
    as_minimisation,
    parse_objectives,
    split_column,
)
from incsweep.analysis.pareto import group_indices, nondominated_mask, objective_matrix, usable_runs
from incsweep.analysis.select import best_under, knee_index
from incsweep.core.errors import ConfigError
from incsweep.core.vocabulary import AVG_ACC, LAST_ACC

__all__ = ["Summary", "GroupSummary", "summarize", "OVERALL"]

log = logging.getLogger(__name__)

T = TypeVar("T")

OVERALL = ("all",)  # the key of the summary over every run together


@dataclass(frozen=True)
class GroupSummary:
    """One group's complete runs, front (row indices into ``runs``, sorted by memory) and measures."""

    key: tuple
    rows: np.ndarray  # indices into Summary.runs of this group's usable complete runs
    front: np.ndarray  # indices into Summary.runs of its Pareto-optimal runs
    hypervolume: float
    knee: int | None  # an index into Summary.runs
    auc: MemoryAUC | None
    best_under: dict[float, int | None]  # limit MB -> index into Summary.runs
    statuses: dict[str, int]  # final-row status counts (complete, pruned, error, diverged) of the group
    infeasible: int = 0  # complete runs of the group that break the constraints (on no front)

    @property
    def label(self) -> str:
        return "/".join(map(str, self.key))


@dataclass(frozen=True)
class Summary:
    objectives: tuple[Objective, ...]
    split: str
    by: tuple[str, ...]
    runs: pa.Table  # usable complete final rows that meet the constraints (every front, pick and export uses these)
    table: pa.Table  # everything loaded (per-task rows included)
    reference: np.ndarray
    reference_derived: bool
    overall: GroupSummary
    groups: dict[tuple, GroupSummary] = field(default_factory=dict)
    # complete final rows of confirmation runs (analysis/confirmation.py): never on a front
    confirmed: pa.Table | None = None
    # usable complete final rows that break the constraints: drawn and counted, never on a front
    infeasible: pa.Table | None = None
    # study -> the constraints its rows were judged by ("" for none), and how (analysis/feasibility.py)
    constraints: dict[str, str] = field(default_factory=dict)
    ad_hoc_constraints: str = ""
    ignored_stored_constraints: bool = False
    # what is derived from this summary once and read by several outputs (its rows as dicts, the
    # convergence curve, the importances): ``analyze`` draws, tabulates and reports each, and at
    # 10,000 trials recomputing them per reader took most of its time (benchmarks/study_scale.py)
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def constrained(self) -> bool:
        """Whether any constraint was applied to any row."""
        return any(self.constraints.values())

    @property
    def accuracy(self) -> str:
        """The accuracy column that plots and best-under-X use: the first objective to maximise."""
        return next((o.column for o in self.objectives if o.sense == "max"), split_column(AVG_ACC, self.split))

    @property
    def memory(self) -> str:
        return MEMORY_COLUMN

    def row(self, index: int) -> dict[str, Any]:
        """Run ``index`` of ``runs`` as a dict (a copy: the caller may change it)."""
        rows = self.derived("rows", self.runs.to_pylist)
        return dict(rows[index])

    def derived(self, name: str, compute: Callable[[], T]) -> T:
        """``compute()``, once per summary and ``name`` (a summary never changes, so neither does what
        is derived from it)."""
        if name not in self._derived:
            self._derived[name] = compute()
        return cast(T, self._derived[name])


def _status_counts(table: pa.Table, mask: np.ndarray | None = None) -> dict[str, int]:
    final = table.filter(table["is_final"]) if mask is None else table.filter(pa.array(mask))
    counts = pc.value_counts(final["status"]).to_pylist()
    return {c["values"]: int(c["counts"]) for c in counts}


def summarize(table: pa.Table | Any, objectives: str | Sequence[str | Objective] = DEFAULT_OBJECTIVES, *,
              split: str = "val", by: Sequence[str] = ("method",), reference: Any = None,
              under_mb: Sequence[float] = (), constraints: Any = None, ignore_constraints: bool = False,
              study_constraints: Mapping[str, Any] | None = None) -> Summary:
    """Fronts, hypervolume, AUC-A/AUC-L, best under each of ``under_mb`` and the knee, overall and per
    group of ``by`` columns, over the complete runs that meet the constraints. ``reference``: the
    hypervolume reference point (see parse_reference); None derives the worst observed value per
    objective over those runs.

    Constraints (analysis/feasibility.py): each row meets its own study's (stored in the row, else
    ``study_constraints[study]``) and ``constraints`` (for every row); ``ignore_constraints`` sets
    the studies' own aside. ``table``: a pyarrow Table, or a pandas or polars DataFrame of the rows."""
    table = as_table(table)
    objs = parse_objectives(objectives, split)
    table, confirmation_rows = split_confirmation(table)
    usable = usable_runs(table, objs)
    verdict = judge(usable, study_constraints=study_constraints, ad_hoc=constraints, ignore_stored=ignore_constraints)
    runs, infeasible = usable.filter(pa.array(verdict.feasible)), usable.filter(pa.array(~verdict.feasible))
    if runs.num_rows == 0 and infeasible.num_rows:
        rules = "; ".join(f"{k}: {v}" for k, v in verdict.applied.items() if v)
        raise ConfigError(f"none of the {infeasible.num_rows} complete run(s) meets the constraints ({rules}); "
                          "relax them, or pass --ignore-constraints to analyse every run")
    if runs.num_rows == 0:
        statuses = _status_counts(table)
        if not statuses.get("complete"):
            hint = "no trial completed: their errors are in the results' error column (incsweep study status DIR)"
        elif split == "val":
            hint = "the validation split may be empty: try --split test"
        else:
            hint = "only complete runs are analysed"
        raise ConfigError(f"no complete run with values for {[o.column for o in objs]} in the results "
                          f"(final rows by status: {statuses or 'none'}); {hint}")
    values = objective_matrix(runs, objs)
    ref = reference_point(values, objs) if reference is None else parse_reference(reference, objs)
    minimised = as_minimisation(values, objs)
    senses = [o.sense for o in objs]
    acc_col = next((o.column for o in objs if o.sense == "max"), split_column(AVG_ACC, split))
    have_mem = MEMORY_COLUMN in runs.column_names
    mem = objective_matrix(runs, [Objective(MEMORY_COLUMN, "min")])[:, 0] if have_mem else None
    acc = objective_matrix(runs, [Objective(acc_col, "max")])[:, 0]
    auc_cols = [split_column(AVG_ACC, split), split_column(LAST_ACC, split)]
    have_auc = have_mem and all(c in runs.column_names for c in auc_cols)
    if have_auc:
        avg_last = objective_matrix(runs, [Objective(c, "max") for c in auc_cols])

    finals = table.filter(table["is_final"])

    broken = group_indices(infeasible, list(by)) if by and infeasible.num_rows else {}

    def group(key: tuple, idx: np.ndarray, status_mask: np.ndarray | None) -> GroupSummary:
        front = idx[nondominated_mask(minimised[idx])]
        if mem is not None:
            front = front[np.lexsort((-acc[front], mem[front]))]
        k = knee_index(values[front], objs)
        limits: dict[float, int | None] = {}
        for x in under_mb:
            j = None if mem is None else best_under(mem[idx], acc[idx], x)
            limits[float(x)] = None if j is None else int(idx[j])
        # the front alone: dominated runs add no volume, and the front is already known
        return GroupSummary(key=key, rows=idx, front=front, hypervolume=hypervolume(values[front], ref, senses),
                            knee=None if k is None else int(front[k]), auc=None, best_under=limits,
                            statuses=_status_counts(finals, status_mask) if status_mask is not None
                            else _status_counts(finals),
                            infeasible=infeasible.num_rows if key == OVERALL else len(broken.get(key, ())))

    overall = group(OVERALL, np.arange(runs.num_rows), None)
    groups: dict[tuple, GroupSummary] = {}
    if by:
        # Groups come from all final rows, so a method whose runs were all pruned still shows up.
        final_groups = group_indices(finals, list(by))
        run_groups = group_indices(runs, list(by))
        for key, final_idx in final_groups.items():
            mask = np.zeros(finals.num_rows, dtype=bool)
            mask[final_idx] = True
            groups[key] = group(key, run_groups.get(key, np.zeros(0, dtype=np.int64)), mask)
    if have_auc:
        assert mem is not None  # have_auc implies have_mem
        curves: dict[Any, tuple[np.ndarray, np.ndarray, np.ndarray]] = {
            k: (mem[g.rows], avg_last[g.rows, 0], avg_last[g.rows, 1]) for k, g in groups.items()}
        # all runs together span every group's range, so adding them leaves the shared range as is
        # and their AUC is measured over the same range as the groups'
        curves[OVERALL] = (mem, avg_last[:, 0], avg_last[:, 1])
        aucs = memory_aucs(curves)
        groups = {k: _with_auc(g, aucs.get(k)) for k, g in groups.items()}
        overall = _with_auc(overall, aucs[OVERALL])
    return Summary(objectives=objs, split=split, by=tuple(by), runs=runs, table=table, reference=ref,
                   reference_derived=reference is None, overall=overall, groups=groups,
                   confirmed=usable_runs(confirmation_rows, objs) if confirmation_rows.num_rows else None,
                   infeasible=infeasible, constraints=verdict.applied, ad_hoc_constraints=verdict.ad_hoc,
                   ignored_stored_constraints=verdict.ignored_stored)


def _with_auc(g: GroupSummary, auc: MemoryAUC | None) -> GroupSummary:
    return replace(g, auc=auc)
