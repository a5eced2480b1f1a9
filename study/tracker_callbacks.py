# mypy: disable-error-code="override"
# (each hook forwards **info, as Tune's own CallbackList does; Callback declares the named arguments)
"""The study's experiment trackers as one Tune callback whose pickled form is only their specs.

Tune pickles its callbacks into tuner.pkl on every snapshot; MLflow's and W&B's callbacks hold
module and class references (cloudpickle's subimport, tensorboardX's SummaryWriter, open clients)
that make that file large and tie it to the tracker's installed version. This container keeps the
specs, builds the real callbacks in the process that runs Tune (a resume builds them afresh:
study/resume.py) and forwards every hook to them; Tune's container check (IS_CALLBACK_CONTAINER)
fails at import if a hook is left out. Imported only by studies that name trackers (it imports Ray).
"""

from __future__ import annotations

from typing import Any, Sequence

from ray.tune import Callback

from incsweep.study.trackers import TrackerSpec, build_callbacks

__all__ = ["TrackerCallbacks"]


class TrackerCallbacks(Callback):
    IS_CALLBACK_CONTAINER = True

    def __init__(self, trackers: Sequence[TrackerSpec], *, study: str, storage: str):
        self.trackers = tuple(trackers)
        self.study = study
        self.storage = storage
        self._built: list | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"trackers": self.trackers, "study": self.study, "storage": self.storage, "_built": None}

    @property
    def callbacks(self) -> list:
        if self._built is None:
            self._built = build_callbacks(self.trackers, study=self.study, storage=self.storage)
        return self._built

    def _each(self, hook: str, info: dict[str, Any]) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(**info)

    def setup(self, **info: Any) -> None:
        self._each("setup", info)

    def on_step_begin(self, **info: Any) -> None:
        self._each("on_step_begin", info)

    def on_step_end(self, **info: Any) -> None:
        self._each("on_step_end", info)

    def on_trial_start(self, **info: Any) -> None:
        self._each("on_trial_start", info)

    def on_trial_restore(self, **info: Any) -> None:
        self._each("on_trial_restore", info)

    def on_trial_save(self, **info: Any) -> None:
        self._each("on_trial_save", info)

    def on_trial_result(self, **info: Any) -> None:
        self._each("on_trial_result", info)

    def on_trial_complete(self, **info: Any) -> None:
        self._each("on_trial_complete", info)

    def on_trial_recover(self, **info: Any) -> None:
        self._each("on_trial_recover", info)

    def on_trial_error(self, **info: Any) -> None:
        self._each("on_trial_error", info)

    def on_checkpoint(self, **info: Any) -> None:
        self._each("on_checkpoint", info)

    def on_experiment_end(self, **info: Any) -> None:
        self._each("on_experiment_end", info)

    def get_state(self) -> dict | None:
        return None  # the trackers resume from their own stores (MLflow's DB, W&B's run files)

    def set_state(self, state: dict) -> None:
        pass
