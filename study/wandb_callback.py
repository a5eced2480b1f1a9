"""A study's Weights & Biases runs, one per trial, written from the driver's process.

Records: one run per trial named ``<method>_<trial id>`` in the study's group, its config the method,
the searched values under Optuna's names, the study's shared run fields and ``trial_id`` (not the
trial's plumbing: cache and heartbeat paths, the ``params`` mapping that repeats the searched values),
and as metrics the per-task ones only (study/tracker_records.py), not Tune's timers.

Ray's ``WandbLoggerCallback`` starts a Ray actor per trial, each a new process that imports wandb and
starts W&B's service: ~2 s a trial, +36% on the demo study (benchmarks/results/tracker_overhead.txt).
Here the runs live in the driver's process, which imports wandb once and keeps one W&B service;
W&B allows several runs at once in a process (``reinit="create_new"``). The calls are made by the
tracker container's background thread (study/tracker_callbacks.py), never in Tune's loop. A module
of its own: importing it imports wandb, which only studies with ``callbacks: [wandb]`` pay for.
"""

from __future__ import annotations

import logging
from typing import Any, Literal, cast

import wandb
from ray.tune.logger import LoggerCallback

from incsweep.study.tracker_records import tracked_metrics
from incsweep.trainables.boundary import trial_key

__all__ = ["StudyWandbCallback"]

log = logging.getLogger(__name__)

# trial-config keys that are plumbing, not what a run is about
_NOT_CONFIG = ("params", "prefix_cache", "prefix_cache_max_bytes", "heartbeat_dir", "resume_from", "key")


class StudyWandbCallback(LoggerCallback):
    def __init__(self, *, project: str, group: str, mode: str = "offline", dir: str | None = None):
        self.project, self.group, self.mode, self.dir = project, group, mode, dir
        self._runs: dict[str, Any] = {}  # study trial id -> its live W&B run

    def log_trial_start(self, trial: Any) -> None:
        key = trial_key(trial)
        if key in self._runs:
            return  # a retried trial goes on in its run
        config = {k: v for k, v in (trial.config or {}).items() if k not in _NOT_CONFIG}
        self._runs[key] = wandb.init(
            project=self.project, group=self.group, name=f"{config.get('method', '')}_{key}", id=trial.trial_id,
            config={**config, "trial_id": key}, reinit="create_new", dir=self.dir,
            mode=cast(Literal["online", "offline", "disabled"], self.mode),  # TrackerSpec checked it
            allow_val_change=True)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        run = self._runs.get(trial_key(trial))
        metrics = tracked_metrics(result)
        if run is not None and metrics:
            run.log(metrics)

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        run = self._runs.pop(trial_key(trial), None)
        if run is not None:
            run.finish(exit_code=1 if failed else 0)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        for key in list(self._runs):  # trials Tune never ended (an interrupted study): closed as they stand
            self._runs.pop(key).finish(exit_code=1)
