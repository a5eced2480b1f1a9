"""ASHA on the task axis that keeps a multi-objective front honest.

Plain ASHA ranks trials at a rung by one metric: with (avg_acc max, total_mb min) it stops the
small-memory, lower-accuracy trials that belong on the front. Here a trial reaching a rung (tasks
done = grace_period * reduction_factor^k) is compared with every trial recorded at that rung on
all objectives (at equal tasks done, so memory is comparable): it goes on when fewer than
``(1 - 1/reduction_factor)`` of them dominate it, so a trial on the rung's front always continues
and only clearly dominated ones stop (the non-dominated ranking of MO-ASHA, Schmucker et al. 2021,
reduced to domination counts). Stopped trials are told to Optuna as PRUNED by StudySearcher.
"""

from __future__ import annotations

import math
import pickle
from typing import Any, Sequence

import numpy as np
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

__all__ = ["ParetoASHA", "rungs", "keep_at_rung"]


def rungs(grace_period: int, reduction_factor: float, max_t: int) -> list[int]:
    """Tasks-done milestones below ``max_t``: grace, grace*rf, grace*rf^2, ..."""
    out, t = [], float(grace_period)
    while round(t) < max_t:
        if not out or round(t) > out[-1]:
            out.append(int(round(t)))
        t *= reduction_factor
    return out


def keep_at_rung(point: Sequence[float], recorded: np.ndarray, reduction_factor: float) -> bool:
    """Whether a trial at ``point`` (objectives as minimisation) goes on, given the points recorded
    at the rung before it (rows). It stops only when at least a (1 - 1/rf) share of them dominates it."""
    p = np.asarray(point, dtype=np.float64)
    if recorded.size == 0 or not np.all(np.isfinite(p)):
        return bool(np.all(np.isfinite(p)))
    dominating = np.all(recorded <= p, axis=1) & np.any(recorded < p, axis=1)
    needed = math.ceil((1.0 - 1.0 / reduction_factor) * (len(recorded) + 1))
    return int(dominating.sum()) < max(needed, 1)


class ParetoASHA(FIFOScheduler):
    """Asynchronous successive halving by domination counts at each rung of the task axis."""

    def __init__(self, *, metrics: Sequence[str], modes: Sequence[str], max_t: int, grace_period: int = 2,
                 reduction_factor: float = 2.0, time_attr: str = "tasks_done"):
        super().__init__()
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
        if t is None or result.get("diverged") or int(t) not in self._recorded:
            return TrialScheduler.CONTINUE
        rung = int(t)
        seen = self._seen.setdefault(trial.trial_id, set())
        if rung in seen:  # a resumed trial reports a rung again: decided already
            return TrialScheduler.CONTINUE
        seen.add(rung)
        point = [s * float(result.get(m, math.nan)) for m, s in zip(self._metrics, self._signs)]
        recorded = np.asarray(self._recorded[rung], dtype=np.float64).reshape(-1, len(point))
        keep = keep_at_rung(point, recorded, self._rf)
        if all(math.isfinite(v) for v in point):
            self._recorded[rung].append(point)
        if keep:
            return TrialScheduler.CONTINUE
        self.stopped.add(trial.trial_id)
        return TrialScheduler.STOP

    def debug_string(self) -> str:
        return "ParetoASHA: " + ", ".join(f"rung {r}: {len(v)} recorded" for r, v in self._recorded.items())

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))
