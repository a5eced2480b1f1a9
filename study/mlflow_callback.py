"""Ray's MLflow callback with a study's records: one run per trial, named ``<method>_<trial id>`` and
tagged with the study, its parameters once (the method and the searched values under Optuna's names,
``finetune.lr``), and per-task metrics only (what ``REPORTED`` names: accuracies on both splits,
memory, time) at step = tasks done. Ray's own logs the whole trial config as parameters and every
number of every result (Tune's timers, flattened config values) as metrics. Module level, so Tune can
pickle it; importing it imports MLflow's callback, which only studies with ``callbacks: [mlflow]`` pay for."""

from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from incsweep.study.tracker_records import TASKS_DONE, study_params, tracked_metrics
from incsweep.trainables.boundary import trial_key

__all__ = ["StudyMLflowCallback"]

class StudyMLflowCallback(MLflowLoggerCallback):
    def log_trial_start(self, trial: Any) -> None:
        if trial in self._trial_runs:
            return
        config = trial.config or {}
        key, method = trial_key(trial), str(config.get("method", ""))
        name = f"{method}_{key}"
        tags = {**(self.tags or {}), "trial_name": name, "trial_id": key, "method": method, "study": str(config.get("study", ""))}
        run = self.mlflow_util.start_run(tags=tags, run_name=name)
        self._trial_runs[trial] = run.info.run_id
        self.mlflow_util.log_params(run_id=run.info.run_id, params_to_log=study_params(config))

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        metrics = tracked_metrics(result)
        if metrics:
            step = int(result.get(TASKS_DONE) or iteration)
            self.mlflow_util.log_metrics(run_id=self._trial_runs[trial], metrics_to_log=metrics, step=step)
