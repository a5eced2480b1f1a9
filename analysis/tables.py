"""A Summary as plain tables (header + rows of strings), rendered as text by the CLI and HTML by the report."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from incsweep.analysis.summary import GroupSummary, Summary
from incsweep.core.builtin_methods import display_name
from incsweep.core.vocabulary import ACCURACY_METRICS, label, split_column

__all__ = ["groups_table", "front_table", "test_front_table", "confirmation_table", "confirmed_figures", "evaluation_table",
           "render_text", "headline"]


def _num(x: Any, fmt: str = ".4f") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    return str(x) if isinstance(x, int) else format(x, fmt)


def _pick(summary: Summary, index: int | None) -> str:
    if index is None:
        return "-"
    run = summary.row(index)
    return f"{run['trial_id']} ({_num(run[summary.accuracy])} @ {_num(run[summary.memory], '.3f')} MB)"


def headline(summary: Summary) -> list[str]:
    """A few lines: what was read, objectives, reference point, AUC range."""
    finals = summary.overall.statuses
    files = len(set(summary.table["source_file"].to_pylist())) if "source_file" in summary.table.column_names else "?"
    lines = [f"{summary.table.num_rows} rows from {files} file(s); {sum(finals.values())} trials ("
             + ", ".join(f"{k} {v}" for k, v in sorted(finals.items()))
             + f"); {summary.runs.num_rows} complete runs analysed"
             + (f", {summary.infeasible.num_rows} more break the constraints (on no front)"
                if summary.infeasible is not None and summary.infeasible.num_rows else ""),
             "objectives: " + ", ".join(map(str, summary.objectives)) + f" (split {summary.split})",
             "hypervolume reference: " + ", ".join(f"{o.column}={_num(float(r), '.6g')}"
                                                     for o, r in zip(summary.objectives, summary.reference))
             + (" (derived: worst observed value per objective)" if summary.reference_derived else " (given)")]
    lines += constraint_lines(summary)
    measured = [(g.label, g.auc) for g in [*summary.groups.values(), summary.overall] if g.auc and g.auc.points]
    spans = {(auc.lo_mb, auc.hi_mb) for _, auc in measured}
    if len(spans) == 1:
        lo, hi = spans.pop()
        lines.append(f"AUC-A / AUC-L: area under avg / last accuracy (fraction) against total MB over "
                     f"[{_num(lo, '.4g')}, {_num(hi, '.4g')}] MB, the range every group covers")
    elif spans:
        # memory_aucs falls back to each group's own span when the groups share no memory range
        lines.append("AUC-A / AUC-L: the groups share no memory range, so each area is over its own span "
                     "(not comparable between groups): " + ", ".join(
                         f"{label} [{_num(auc.lo_mb, '.4g')}, {_num(auc.hi_mb, '.4g')}] MB" for label, auc in measured))
    return lines


def constraint_lines(summary: Summary) -> list[str]:
    """What each study's runs were judged by: their study's constraints, ad-hoc ones, or none."""
    if not summary.constrained and not summary.ignored_stored_constraints:
        return ["constraints: none"]
    how = " (the studies' own set aside: --ignore-constraints)" if summary.ignored_stored_constraints else ""
    texts = set(summary.constraints.values())
    if len(texts) == 1:
        return [f"constraints: {texts.pop() or 'none'}, on every run{how}"]
    return [f"constraints, each study's runs by their own{how}: "
            + "; ".join(f"{study}: {text or 'none'}" for study, text in summary.constraints.items())]


def groups_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """One row per group (and one for all runs): counts, front size, hypervolume, AUCs, picks."""
    limits = list(summary.overall.best_under)
    header = ["group", "complete", "infeasible", "runs", "front", "hypervolume", "AUC-A", "AUC-L",
              "knee (trial: acc @ MB)"]
    header += [f"best <= {x:g} MB" for x in limits]

    def row(g: GroupSummary) -> list[str]:
        auc = g.auc
        cells = [g.label, str(len(g.rows)), str(g.infeasible), str(sum(g.statuses.values())), str(len(g.front)),
                 _num(g.hypervolume, ".6g"), _num(auc.auc_a if auc else None), _num(auc.auc_l if auc else None),
                 _pick(summary, g.knee)]
        return cells + [_pick(summary, g.best_under[x]) for x in limits]

    rows = [row(g) for g in summary.groups.values()]
    return header, rows + [row(summary.overall)]


def front_table(summary: Summary, group: GroupSummary | None = None) -> tuple[list[str], list[list[str]]]:
    """The front of ``group`` (default: all runs), one row per configuration, with its params."""
    g = group or summary.overall
    obj_cols = [o.column for o in summary.objectives]
    extra = [c for c in (summary.memory,) if c not in obj_cols and c in summary.runs.column_names]
    params = sorted(c for c in summary.runs.column_names if c.startswith("param_"))
    header = ["study", "method", "trial_id", *obj_cols, *extra, *(p[len("param_"):] for p in params)]
    rows = []
    for i in g.front:
        run = summary.row(int(i))
        rows.append([str(run["study"]), str(run["method"]), str(run["trial_id"]),
                     *(_num(run[c], ".6g") for c in obj_cols + extra),
                     *(_num(run[p], ".4g") if isinstance(run[p], float) else _num(run[p]) for p in params)])
    # parameters no front run has (other methods' spaces) are left out
    keep = [j for j in range(len(header)) if j < 3 + len(obj_cols) + len(extra) or any(r[j] != "-" for r in rows)]
    return [header[j] for j in keep], [[r[j] for j in keep] for r in rows]


def front_records(summary: Summary, group: GroupSummary | None = None) -> tuple[list[str], list[list[Any]]]:
    """The front as data, for ``front.csv``: the objectives, memory, every test-split metric and the
    parameters of each front configuration, at full precision; a value a run does not have is None
    (an empty CSV field, which pandas, polars and spreadsheets read as missing)."""
    g = group or summary.overall
    names = summary.runs.column_names
    obj_cols = [o.column for o in summary.objectives]
    extra = [c for c in (summary.memory,) if c not in obj_cols and c in names]
    tests = [c for c in (split_column(m, "test") for m in ACCURACY_METRICS) if c in names and c not in obj_cols]
    params = sorted(c for c in names if c.startswith("param_"))
    rows = []
    for i in g.front:
        run = summary.row(int(i))
        rows.append([run["study"], run["method"], run["trial_id"],
                     *(None if isinstance(run[c], float) and math.isnan(run[c]) else run[c]
                       for c in obj_cols + extra + tests + params)])
    fixed = 3 + len(obj_cols) + len(extra) + len(tests)
    keep = [j for j in range(fixed + len(params)) if j < fixed or any(r[j] is not None for r in rows)]
    header = ["study", "method", "trial_id", *obj_cols, *extra, *tests, *(c[len("param_"):] for c in params)]
    return [header[j] for j in keep], [[r[j] for j in keep] for r in rows]


def test_front_table(summary: Summary, group: GroupSummary | None = None) -> tuple[list[str], list[list[str]]]:
    """The front of ``group`` (default: all runs) with its test-split metrics and memory, methods as
    papers write them."""
    g = group or summary.overall
    metrics = [split_column(name, "test") for name in ACCURACY_METRICS]
    cols = [c for c in (*metrics, summary.memory) if c in summary.runs.column_names]
    header = ["study", "method", "trial_id", *(label(c) for c in cols)]
    rows = []
    for i in g.front:
        run = summary.row(int(i))
        rows.append([str(run["study"]), display_name(str(run["method"])), str(run["trial_id"]),
                     *(_num(run[c], ".4g") for c in cols)])
    return header, rows


def confirmed_figures(summary: Summary, indices=None) -> list:
    """The confirmations (analysis/confirmation.py) of the overall front (or ``indices``), on the
    accuracy objective and its test-split column."""
    from incsweep.analysis.confirmation import confirmations

    if summary.confirmed is None:
        return []
    acc = summary.accuracy
    bare = acc[len("test_"):] if acc.startswith("test_") else acc
    cols = [split_column(bare, "val"), split_column(bare, "test")]
    idx = summary.overall.front if indices is None else indices
    return confirmations(summary.runs, summary.confirmed, idx, cols, acc)


def confirmation_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """One row per front configuration with confirmation runs: the search's value and the confirmed
    mean +- std (validation and test), flagged when the search's value is outside 2 std."""
    found = confirmed_figures(summary)
    if not found:
        return [], []
    cols = list(found[0].mean)
    header = ["study", "method", "trial_id", "seeds", *(f"search {c}" for c in cols[:1]),
              *(f"confirmed {c} (mean +- std)" for c in cols), "flag"]
    rows = []
    for c in found:
        run = summary.row(c.index)
        cells = [str(run["study"]), str(run["method"]), str(run["trial_id"]), str(c.n),
                 _num(c.searched.get(cols[0]), ".4f")]
        cells += [f"{_num(c.mean[k], '.4f')} +- {_num(c.std[k], '.4f')}" for k in cols]
        cells.append("search outside 2 std" if c.flagged else "")
        rows.append(cells)
    return header, rows


def evaluation_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Protocols two_phase and first_task: each front configuration as tuned (on one benchmark, or on
    task 0 only) and as evaluated (on another benchmark, or on the whole stream), side by side, with
    the gap (evaluated minus tuned, test split)."""
    from incsweep.analysis.confirmation import evaluations

    if summary.confirmed is None:
        return [], []
    acc = summary.accuracy
    bare = acc[len("test_"):] if acc.startswith("test_") else acc
    test = split_column(bare, "test")
    found = evaluations(summary.runs, summary.confirmed, summary.overall.front, test)
    header = ["method", "trial_id", "tuned on", f"tuned {acc}", f"tuned {test}", "evaluated on", f"evaluated {test}",
              "gap (test)"]
    rows = []
    for i, ev in found:
        run = summary.row(i)

        def where(row: dict) -> str:
            b = json.loads(row["config_json"])["benchmark"]
            n = int(row["tasks_done"])
            return f"{b['name']} ({b.get('class_order')}), {n} task{'s' if n != 1 else ''}"

        gap = (ev[test] - run[test]) if ev.get(test) is not None and run.get(test) is not None else None
        rows.append([display_name(str(run["method"])), str(run["trial_id"]), where(run), _num(run[acc]),
                     _num(run[test]), where(ev), _num(ev[test]), _num(gap, "+.4f")])
    return header, rows


def render_text(header: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def convergence_lines(summary: Summary) -> list[str]:
    """Has the study converged: the front's hypervolume against trials and compute, and what the last
    quarter of the trials added (analysis/insight.py)."""
    from incsweep.analysis.insight import convergence

    c = convergence(summary)
    if len(c.hypervolume) == 0:
        return ["convergence: no finished trial yet"]
    marks = sorted({max(1, round(len(c.trials) * f)) for f in (0.25, 0.5, 0.75, 1.0)})
    steps = ", ".join(f"{c.hypervolume[m - 1]:.4g} after {m} ({c.compute_s[m - 1]:.0f} CPU-s)" for m in marks)
    share = c.share_by_last()
    verdict = ("" if share is None else
               f"; the last quarter of the trials added {share:.0%} of it"
               + (" (more trials may pay)" if share >= 0.05 else " (flat: more trials of this search add little)"))
    return [f"hypervolume of the front: {steps}{verdict}"]


def importance_table(summary: Summary) -> tuple[list[str], list[list[str]]]:
    """Which searched parameters mattered, per method and objective (PED-ANOVA, analysis/insight.py):
    one row per method and objective, the parameters most important first with their shares."""
    from incsweep.analysis.insight import importances

    header = ["method", "objective", "runs", "parameters, most important first (share of the variation explained)"]
    counts = dict(zip(*np.unique(np.asarray(summary.runs["method"].to_pylist(), dtype=object), return_counts=True)))
    rows = []
    for method, found in importances(summary).items():
        if isinstance(found, str):
            rows.append([display_name(method), "-", str(counts.get(method, 0)), found])
            continue
        for objective, ranked in found.items():
            rows.append([display_name(method), label(objective), str(counts.get(method, 0)),
                         ", ".join(f"{name} {share:.2f}" for name, share in ranked)])
    return header, rows
