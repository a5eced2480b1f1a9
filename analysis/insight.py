"""The two questions after a study: has it converged (would more trials pay?), and which searched
parameters mattered, for each objective.

Convergence: the overall front's hypervolume (the summary's objectives, constraints and reference
point, so the last value is the summary's own) after each trial in the order the study proposed them
(``trial_number``, Optuna's, as its own history plots), against the trials and against the compute
spent by them. Not the order trials finished: in a study running trials in parallel that order is an
accident of the run (the same 12 proposals of the demo finished in another order run to run, and its
curve read 0.07926 or 0.08077 after 6 trials). Rows without a number (written outside a study, or by
incsweep before it recorded one) come first, in the order they finished. Compute is every task a
trial trained: its ``cpu_s`` (``wall_s`` where a row has no CPU time), stopped, failed and diverged
trials included; tasks a trial took from the prefix cache cost nothing there (their training is
counted once, in the trial that ran them).

Importance: Optuna's PED-ANOVA (Watanabe et al., IJCAI 2023; ``optuna.importance``) per method and
objective, over that method's usable complete runs that meet the constraints: how much of the
objective's variation among the best runs each searched parameter explains. PED-ANOVA needs no
surrogate model and runs in milliseconds. Its top set is the best 10% of the runs, at least 2 (so a
small study's figure is rough: the report states the runs it rests on); with fewer than
``MIN_TRIALS`` runs it is not computed.
Parameter ranges are those the runs span (the Parquet rows carry values, not the search space),
log-scaled where a positive parameter spans two decades or more.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from incsweep.analysis.hypervolume import hypervolume
from incsweep.analysis.pareto import objective_matrix, pareto_mask
from incsweep.analysis.summary import Summary
from incsweep.core.vocabulary import CPU_TIME, FROM_CACHE, WALL_TIME

__all__ = ["Convergence", "convergence", "importances", "MIN_TRIALS"]

# PED-ANOVA compares its top set (here at least 2 runs) with all runs: below 6 that is a third or more
MIN_TRIALS = 6


@dataclass(frozen=True)
class Convergence:
    """Hypervolume of the front after each finished trial (in the order the study proposed them: the
    module's docstring), with the trials and the compute (CPU seconds) spent by them."""

    trials: np.ndarray
    compute_s: np.ndarray
    hypervolume: np.ndarray

    def share_by_last(self, fraction: float = 0.25) -> float | None:
        """The share of the final hypervolume the last ``fraction`` of the trials added (None: none yet)."""
        if len(self.hypervolume) == 0 or self.hypervolume[-1] <= 0:
            return None
        cut = int(math.floor(len(self.hypervolume) * (1 - fraction)))
        before = self.hypervolume[cut - 1] if cut > 0 else 0.0
        return float((self.hypervolume[-1] - before) / self.hypervolume[-1])


def _trial_compute(table: pa.Table) -> dict[tuple[str, str], float]:
    """(study, trial_id) -> seconds of the tasks the trial trained itself (cached tasks excluded)."""
    tasks = table.filter(pc.invert(table["is_final"]))
    n = tasks.num_rows
    names = tasks.column_names
    cpu = tasks[CPU_TIME].to_pylist() if CPU_TIME in names else [None] * n
    wall = tasks[WALL_TIME].to_pylist() if WALL_TIME in names else [None] * n
    cached = tasks[FROM_CACHE].to_pylist() if FROM_CACHE in names else [False] * n
    out: dict[tuple[str, str], float] = {}
    for study, trial, c, w, hit in zip(tasks["study"].to_pylist(), tasks["trial_id"].to_pylist(), cpu, wall, cached):
        seconds = next((float(x) for x in (c, w) if x is not None and math.isfinite(x)), 0.0)
        out[(study, trial)] = out.get((study, trial), 0.0) + (0.0 if hit else seconds)
    return out


def convergence(summary: Summary) -> Convergence:
    """The overall front's hypervolume trial by trial (see the module's docstring)."""
    return summary.derived("convergence", lambda: _convergence(summary))


def proposal_order(finals: pa.Table) -> np.ndarray:
    """Indices of ``finals`` (one final row per trial) in the order the trials were proposed: by
    ``trial_number``, ties (several studies) by finish time; rows without a number first, by finish
    time. Stable: the loader's order (study, trial) settles what is left."""
    def column(name: str) -> pa.ChunkedArray:  # absent (files from before it, or not incsweep's): all null
        present = name in finals.column_names
        return pc.cast(finals[name], pa.int64()) if present else pa.chunked_array([pa.nulls(finals.num_rows, pa.int64())])

    finished, number = column("finished_at"), column("trial_number")
    keys = (pc.fill_null(finished, 0), pc.fill_null(number, -1), pc.is_valid(number))
    return np.lexsort([k.to_numpy() for k in keys])  # the last key sorts first: unnumbered rows lead


def _convergence(summary: Summary) -> Convergence:
    table = summary.table
    finals = table.filter(table["is_final"])
    order = proposal_order(finals)
    spent = _trial_compute(table)
    usable = {(s, t): i for i, (s, t) in enumerate(zip(summary.runs["study"].to_pylist(),
                                                       summary.runs["trial_id"].to_pylist()))}
    values = objective_matrix(summary.runs, summary.objectives) if summary.runs.num_rows else np.zeros((0, 0))
    senses = [o.sense for o in summary.objectives]
    keys = list(zip(finals["study"].to_pylist(), finals["trial_id"].to_pylist()))
    # the hypervolume of the runs so far is that of their front: only the front is kept (a point that
    # leaves it never returns), so a trial costs its front's size, not every trial before it (10,000
    # trials: recomputing over all of them took minutes of `analyze`; benchmarks/study_scale.py). Ties are
    # kept once: thousands of trials tie when an objective saturates. The volume changes only when a
    # trial joins the front, and only then is it recomputed.
    front = np.zeros((0, len(senses)))
    compute, hv = [], []
    total, current = 0.0, 0.0
    for i in order:
        key = keys[int(i)]
        total += spent.get(key, 0.0)
        if key in usable:  # only a usable run can move the front: the others keep the last value
            point = values[usable[key]]
            # a NaN row adds nothing (hypervolume() leaves it out), nor does a tie with a front point
            if not np.isnan(point).any() and not (front == point).all(axis=1).any():
                candidates = np.vstack([front, point[None, :]])
                mask = pareto_mask(candidates, senses)
                if mask[-1]:  # dominated: the front and its volume stay as they were
                    front = candidates[mask]
                    current = hypervolume(front, summary.reference, senses)
        compute.append(total)
        hv.append(current)
    n = len(hv)
    return Convergence(trials=np.arange(1, n + 1), compute_s=np.asarray(compute), hypervolume=np.asarray(hv))


def _distribution(values: list[Any]) -> Any:
    import optuna.distributions as d

    present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    distinct = sorted(set(present), key=str)
    if len(distinct) < 2:
        return None  # fixed (or never set): nothing to explain
    if all(isinstance(v, bool) for v in distinct) or not all(isinstance(v, (int, float)) for v in distinct):
        return d.CategoricalDistribution(distinct)
    lo, hi = min(distinct), max(distinct)
    log = lo > 0 and hi / lo >= 100
    if all(isinstance(v, int) for v in distinct):
        return d.IntDistribution(int(lo), int(hi), log=log)
    return d.FloatDistribution(float(lo), float(hi), log=log)


def importances(summary: Summary) -> dict[str, dict[str, list[tuple[str, float]]] | str]:
    """method -> objective -> [(parameter, importance), ...] most important first (PED-ANOVA), or a
    sentence saying why a method has none (too few runs, nothing searched)."""
    import optuna

    def compute() -> dict[str, dict[str, list[tuple[str, float]]] | str]:
        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # a study per method and objective: no "created" lines
        try:
            return _importances(summary)
        finally:
            optuna.logging.set_verbosity(verbosity)

    return summary.derived("importances", compute)


def _importances(summary: Summary) -> dict[str, dict[str, list[tuple[str, float]]] | str]:
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    runs = summary.runs
    params = [c for c in runs.column_names if c.startswith("param_")]
    out: dict[str, dict[str, list[tuple[str, float]]] | str] = {}
    for method in sorted(set(runs["method"].to_pylist())):
        rows = runs.filter(pc.equal(runs["method"], method))
        if rows.num_rows < MIN_TRIALS:
            out[method] = f"{rows.num_rows} complete run(s); importance needs at least {MIN_TRIALS}"
            continue
        dists = {c[len("param_"):]: _distribution(rows[c].to_pylist()) for c in params}
        dists = {name: dist for name, dist in dists.items() if dist is not None}
        if not dists:
            out[method] = "no parameter varied across its runs"
            continue
        columns = {name: rows[f"param_{name}"].to_pylist() for name in dists}
        values = objective_matrix(rows, summary.objectives)
        per_objective: dict[str, list[tuple[str, float]]] = {}
        tied = False
        for j, objective in enumerate(summary.objectives):
            study = optuna.create_study(direction="maximize" if objective.sense == "max" else "minimize")
            trials = []
            for i in range(rows.num_rows):
                chosen = {n: columns[n][i] for n in dists if columns[n][i] is not None}
                if len(chosen) != len(dists) or not math.isfinite(values[i, j]):
                    continue  # a run without one of the varied parameters (another branch of the space)
                trials.append(optuna.trial.create_trial(params=chosen, distributions=dists, value=float(values[i, j])))
            if len(trials) < MIN_TRIALS:
                continue
            study.add_trials(trials)
            evaluator = PedAnovaImportanceEvaluator(target_quantile=max(0.1, 2 / len(trials)))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = get_param_importances(study, evaluator=evaluator, normalize=True)
            if any("select the same set of trials" in str(w.message) for w in caught):
                # the best runs tie with the rest (a saturated objective): PED-ANOVA would give every
                # parameter the same share, which reads as an answer and is none
                tied = True
                continue
            per_objective[objective.column] = sorted(result.items(), key=lambda kv: -kv[1])
        out[method] = per_objective or (
            "its runs tie on every objective: no parameter explains a difference" if tied
            else f"fewer than {MIN_TRIALS} runs with every varied parameter")
    return out
