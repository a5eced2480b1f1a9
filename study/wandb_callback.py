"""Ray's W&B logger callback with a study's records and a ``__del__`` that tolerates interpreter exit.

Records: one run per trial named ``<method>_<trial id>`` (Ray's: the trial's repr), its config the
method, the searched values under Optuna's names and the study's shared run fields (not the trial's
plumbing: cache and heartbeat paths, the ``params`` mapping that repeats the searched values), and
as metrics the per-task ones only (study/tracker_records.py), not Tune's timers.
Ray's ``__del__`` looks up ``ray.is_initialized`` when module globals may already be gone and prints
a traceback after every study (ray/air/integrations/wandb.py, Ray 2.60). A module of its own:
importing it imports wandb, which only studies with ``callbacks: [wandb]`` pay for; module level,
so Tune can pickle it."""

from __future__ import annotations

from typing import Any

from ray.air.integrations.wandb import WandbLoggerCallback

from incsweep.study.tracker_records import tracked_metrics
from incsweep.trainables.boundary import trial_key

__all__ = ["QuietWandbLoggerCallback"]


# trial-config keys that are plumbing, not what a run is about
_NOT_CONFIG = ("params", "prefix_cache", "prefix_cache_max_bytes", "heartbeat_dir", "resume_from", "key")


class QuietWandbLoggerCallback(WandbLoggerCallback):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["excludes"] = [*kwargs.get("excludes", ()), *_NOT_CONFIG]
        super().__init__(*args, **kwargs)

    def log_trial_start(self, trial: Any) -> None:
        config = trial.config or {}
        self.kwargs["name"] = f"{config.get('method', '')}_{trial_key(trial)}"  # wandb.init's, for this trial
        try:
            super().log_trial_start(trial)
        finally:
            self.kwargs.pop("name", None)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        # Ray's callback updates the run's config from each result's "config" and its trial_id
        keep = {k: result[k] for k in ("trial_id",) if k in result}  # W&B steps through results itself
        config = {k: v for k, v in (trial.config or {}).items() if k not in _NOT_CONFIG}
        super().log_trial_result(iteration, trial, {**tracked_metrics(result), **keep, "config": config})

    def __del__(self) -> None:
        try:
            super().__del__()
        except (AttributeError, TypeError):  # ray's module attributes are None during interpreter shutdown
            pass
