"""ASHA on the task axis that keeps a multi-objective front honest.

Plain ASHA ranks trials at a rung by one metric: with (avg_acc max, total_mb min) it stops the
small-memory, lower-accuracy trials that belong on the front. Here a trial reaching a rung (tasks
done = grace_period * reduction_factor^k) is compared with every trial recorded at that rung on
all objectives (at equal tasks done, so memory is comparable) under one of two rules (``RULES``):

- ``dominated``: it goes on when fewer than a ``(1 - 1/reduction_factor)`` share of them dominate
  it: only clearly dominated trials stop (about a fifth in benchmarks/asha_calibration.py).
- ``layer``: MO-ASHA's promotion (Schmucker et al. 2021): it goes on when it is among the top
  ``1/reduction_factor`` in non-dominated-sorting order (about half stop, so more trials fit in the
  same compute; asha_calibration.py measures what that costs and buys).

Under both a trial on the rung's front always continues. Stopped trials are told to Optuna as
PRUNED by StudySearcher, so they never reach a front.

With one objective the rule is Ray's ASHA's (``keep_by_quantile``: the cutoff of
``ray.tune.schedulers.AsyncHyperBandScheduler``, one bracket), in this class so that a resumed study
can seed the rungs with what its earlier drivers recorded (``seed``, from the Parquet task rows:
study/resume.py); Ray's ASHA would start a resumed study's rungs empty.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from ray.tune.schedulers import TrialScheduler

from incsweep.analysis.dominance import dominator_count, nondomination_layers
from incsweep.study.fifo import StudyFIFOScheduler
from incsweep.trainables.boundary import trial_key

__all__ = ["ParetoASHA", "RULES", "rungs", "keep_at_rung", "keep_by_dominators", "keep_by_layer", "keep_by_quantile"]


def rungs(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """Tasks-done milestones below ``max_t``: grace, grace*rf, grace*rf^2, ..."""
    out: list[int] = []
    t = float(grace_period)
    while round(t) < max_t:
        if not out or round(t) > out[-1]:
            out.append(int(round(t)))
        t *= reduction_factor
    return out


def keep_by_dominators(point: np.ndarray, recorded: np.ndarray, reduction_factor: float) -> bool:
    """Goes on unless at least a (1 - 1/rf) share of the trials at the rung (itself included)
    dominates it: stops only clearly dominated trials."""
    needed = math.ceil((1.0 - 1.0 / reduction_factor) * (len(recorded) + 1))
    return dominator_count(point, recorded) < max(needed, 1)


def keep_by_layer(point: np.ndarray, recorded: np.ndarray, reduction_factor: float) -> bool:
    """MO-ASHA's promotion (Schmucker et al. 2021): goes on when it is among the top 1/rf of the
    trials at the rung (itself included) in non-dominated-sorting order, ties in its own layer
    counted in its favour; a trial on the rung's front (layer 0) always goes on."""
    layers = nondomination_layers(np.vstack([recorded, point[None, :]]))
    if layers[-1] == 0:
        return True
    return int(np.sum(layers[:-1] < layers[-1])) < math.ceil((len(recorded) + 1) / reduction_factor)


def keep_by_quantile(point: np.ndarray, recorded: np.ndarray, reduction_factor: float) -> bool:
    """Ray's ASHA with one objective: goes on unless its reward is below the (1 - 1/rf) percentile
    of the rewards recorded at the rung before it (reward = -point: Ray's arithmetic, in its order)."""
    cutoff = np.nanpercentile(-recorded[:, 0], (1 - 1 / reduction_factor) * 100)
    return not bool(-point[0] < cutoff)


# Stopping rules by name (the study spec's scheduler.rule, for several objectives).
RULES = {"dominated": keep_by_dominators, "layer": keep_by_layer}
_ONE_OBJECTIVE = keep_by_quantile


def keep_at_rung(point: Sequence[float], recorded: np.ndarray, reduction_factor: float,
                 rule: str = "dominated") -> bool:
    """Whether a trial at ``point`` (objectives as minimisation) goes on, given the points recorded
    at the rung before it (rows), under the named rule of ``RULES``. A non-finite point stops; the
    first trial at a rung goes on."""
    p = np.asarray(point, dtype=np.float64)
    if recorded.size == 0 or not np.all(np.isfinite(p)):
        return bool(np.all(np.isfinite(p)))
    keep = _ONE_OBJECTIVE if len(p) == 1 else RULES[rule]
    return keep(p, np.asarray(recorded, dtype=np.float64).reshape(-1, len(p)), reduction_factor)


class ParetoASHA(StudyFIFOScheduler):
    """Asynchronous successive halving on the task axis: by ``rule`` at each rung (one objective:
    Ray's ASHA cutoff). Trials are known by their id in the study (trainables.boundary.trial_key),
    so a continued trial keeps the decisions taken on it before a resume."""

    def __init__(self, *, metrics: Sequence[str], modes: Sequence[str], max_t: int, grace_period: int = 2,
                 reduction_factor: float = 2.0, rule: str = "dominated", time_attr: str = "tasks_done"):
        super().__init__()
        if rule not in RULES:
            raise ValueError(f"rule={rule!r}: allowed {sorted(RULES)}")
        self._rule = rule
        self._metrics, self._signs = list(metrics), [1.0 if m == "min" else -1.0 for m in modes]
        self._time_attr, self._rf = time_attr, reduction_factor
        self._rungs = rungs(grace_period, reduction_factor, max_t)
        self._recorded: dict[int, list[list[float]]] = {r: [] for r in self._rungs}
        self._seen: dict[str, set[int]] = {}
        self.stopped: set[str] = set()

    def set_search_properties(self, metric: Any, mode: Any, **spec: Any) -> bool:
        return True  # the objectives are ours; Tune's single metric/mode does not apply

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        t = result.get(self._time_attr)
        if t is None or result.get("diverged") or result.get("failed") or int(t) not in self._recorded:
            return TrialScheduler.CONTINUE
        rung = int(t)
        key = trial_key(trial)
        seen = self._seen.setdefault(key, set())
        if rung in seen:  # a resumed trial reports a rung again: decided already
            return TrialScheduler.CONTINUE
        seen.add(rung)
        point = self._point(result)
        recorded = np.asarray(self._recorded[rung], dtype=np.float64).reshape(-1, len(point))
        keep = keep_at_rung(point, recorded, self._rf, self._rule)
        if all(math.isfinite(v) for v in point):
            self._recorded[rung].append(point)
        if keep:
            return TrialScheduler.CONTINUE
        self.stopped.add(key)
        return TrialScheduler.STOP

    def _point(self, metrics: Mapping[str, Any]) -> list[float]:
        return [s * float(metrics.get(m, math.nan) if metrics.get(m) is not None else math.nan)
                for m, s in zip(self._metrics, self._signs)]

    def seed(self, task_rows: Mapping[str, Sequence[Mapping[str, Any]]]) -> int:
        """Record what earlier drivers of the study recorded: each trial's point at each rung it
        reached (``task_rows``: study trial id -> its Parquet task rows). Returns the points recorded."""
        n = 0
        for key, rows in task_rows.items():
            for row in rows:
                rung = int(row["task"]) + 1
                if rung not in self._recorded or rung in self._seen.setdefault(key, set()):
                    continue
                self._seen[key].add(rung)
                point = self._point(row)
                if all(math.isfinite(v) for v in point):
                    self._recorded[rung].append(point)
                    n += 1
        return n

    def debug_string(self) -> str:
        return "ParetoASHA: " + ", ".join(f"rung {r}: {len(v)} recorded" for r, v in self._recorded.items())
