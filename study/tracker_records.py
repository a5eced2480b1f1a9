"""What a study hands experiment trackers (study/mlflow_callback.py, wandb_callback.py): a trial's
parameters and its per-task metrics. Imports no tracker and no Ray."""

from __future__ import annotations

import math
from typing import Any, Mapping

from incsweep.core.vocabulary import REPORTED

__all__ = ["TASKS_DONE", "study_params", "tracked_metrics"]

TASKS_DONE = "tasks_done"  # the trainable's task counter (trainables/trial.py task_metrics)


def study_params(config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's parameters for a tracker: its method and each searched value by Optuna's name."""
    return {"method": config.get("method", ""), **{k: v for k, v in config.items() if "." in k}}


def tracked_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """The per-task metrics of a Tune result (finite numbers among ``REPORTED`` and tasks done)."""
    out = {}
    for name in (*REPORTED, TASKS_DONE):
        value = result.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[name] = float(value)
    return out
