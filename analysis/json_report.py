"""``analyze --json`` / ``export --json``: the summary as plain JSON-able data (one object), for
scripts. Values are the same as the text tables'; NaN becomes null (JSON has no NaN)."""

from __future__ import annotations

import math
from typing import Any

from incsweep.analysis.summary import GroupSummary, Summary
from incsweep.core.vocabulary import REPORTED

__all__ = ["summary_data", "run_data"]

_IDENTITY = ("study", "method", "trial_id", "benchmark", "scenario", "seed")


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    return value


def run_data(summary: Summary, index: int) -> dict[str, Any]:
    """One complete run: identity, every reported metric (both splits), its searched parameters."""
    row = summary.row(index)
    return {**{k: _plain(row.get(k)) for k in _IDENTITY if k in row},
            "metrics": {k: _plain(row[k]) for k in REPORTED if k in row},
            "params": {k[len("param_"):]: _plain(v) for k, v in row.items() if k.startswith("param_") and v is not None}}


def _trial(summary: Summary, index: int | None) -> str | None:
    return None if index is None else str(summary.row(int(index))["trial_id"])


def _group(summary: Summary, g: GroupSummary) -> dict[str, Any]:
    return {
        "key": None if g is summary.overall else dict(zip(summary.by, map(_plain, g.key))), "label": g.label,
        "complete_runs": int(len(g.rows)), "infeasible_runs": int(g.infeasible),
        "statuses": dict(g.statuses), "hypervolume": _plain(g.hypervolume), "knee": _trial(summary, g.knee),
        "auc": None if g.auc is None else {"auc_a": _plain(g.auc.auc_a), "auc_l": _plain(g.auc.auc_l),
                                           "lo_mb": _plain(g.auc.lo_mb), "hi_mb": _plain(g.auc.hi_mb)},
        "best_under_mb": {f"{mb:g}": _trial(summary, i) for mb, i in g.best_under.items()},
        "front": [run_data(summary, int(i)) for i in g.front],
    }


def summary_data(summary: Summary) -> dict[str, Any]:
    """Everything ``analyze`` prints: objectives, reference point, overall and per-group results."""
    return {
        "objectives": [str(o) for o in summary.objectives], "split": summary.split, "by": list(summary.by),
        "reference": {o.column: _plain(float(r)) for o, r in zip(summary.objectives, summary.reference)},
        "reference_derived": summary.reference_derived,
        "rows": summary.table.num_rows, "complete_runs": summary.runs.num_rows,
        "infeasible_runs": summary.infeasible.num_rows if summary.infeasible is not None else 0,
        "constraints": dict(summary.constraints), "ad_hoc_constraints": summary.ad_hoc_constraints,
        "ignored_stored_constraints": summary.ignored_stored_constraints,
        "overall": _group(summary, summary.overall),
        "groups": [_group(summary, g) for g in summary.groups.values()],
        "convergence": _convergence(summary),
        "importance": _importance(summary),
    }


def _convergence(summary: Summary) -> dict[str, Any]:
    from incsweep.analysis.insight import convergence

    c = convergence(summary)
    return {"trials": c.trials.tolist(), "compute_s": [round(float(x), 3) for x in c.compute_s],
            "hypervolume": [_plain(float(h)) for h in c.hypervolume], "last_quarter_share": c.share_by_last()}


def _importance(summary: Summary) -> dict[str, Any]:
    """method -> objective -> {parameter: share}, or the sentence saying why there is none."""
    from incsweep.analysis.insight import importances

    return {method: found if isinstance(found, str) else
            {objective: {name: round(share, 6) for name, share in ranked} for objective, ranked in found.items()}
            for method, found in importances(summary).items()}
