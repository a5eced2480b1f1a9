"""Ray's MLflow callback with a study's records: one run per trial, named ``<method>_<trial id>`` and
tagged with the study, its parameters once (the method and the searched values under Optuna's names,
``finetune.lr``), and per-task metrics only (what ``REPORTED`` names: accuracies on both splits,
memory, time) at step = tasks done. Ray's own logs the whole trial config as parameters and every
number of every result (Tune's timers, flattened config values) as metrics. Module level, so Tune can
pickle it; importing it imports MLflow's callback, which only studies with ``callbacks: [mlflow]`` pay for."""

from __future__ import annotations

import time
from typing import Any

from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray.air.integrations.mlflow import MLflowLoggerCallback

from incsweep.study.tracker_records import TASKS_DONE, study_params, tracked_metrics
from incsweep.trainables.boundary import trial_key

__all__ = ["StudyMLflowCallback"]

class StudyMLflowCallback(MLflowLoggerCallback):
    # Ray's helper logs each metric and parameter in a call (an SQL transaction) of its own, after
    # checking that the run exists: ~20 metrics a task made MLflow +6% of the demo study's time.
    # One ``log_batch`` per task and one for the parameters instead.
    _client: MlflowClient | None = None

    def _batch(self, run_id: str, *, metrics: list[Metric] | None = None, params: list[Param] | None = None) -> None:
        self._batch_client().log_batch(run_id, metrics=metrics or [], params=params or [])

    def prepare(self) -> None:
        """Create the tracking store (MLflow's SQLite schema migration) before Tune's setup needs it."""
        self._batch_client().get_experiment_by_name(self.experiment_name or "Default")

    def _batch_client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def log_trial_start(self, trial: Any) -> None:
        if trial in self._trial_runs:
            return
        config = trial.config or {}
        key, method = trial_key(trial), str(config.get("method", ""))
        name = f"{method}_{key}"
        tags = {**(self.tags or {}), "trial_name": name, "trial_id": key, "method": method, "study": str(config.get("study", ""))}
        run = self.mlflow_util.start_run(tags=tags, run_name=name)
        self._trial_runs[trial] = run.info.run_id
        self._batch(run.info.run_id, params=[Param(k, str(v)) for k, v in study_params(config).items()])

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        metrics = tracked_metrics(result)
        if metrics:
            step = int(result.get(TASKS_DONE) or iteration)
            now = int(time.time() * 1000)
            self._batch(self._trial_runs[trial], metrics=[Metric(k, v, now, step) for k, v in metrics.items()])
