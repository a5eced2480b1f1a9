# mypy: disable-error-code="override"
# (each hook forwards **info, as Tune's own CallbackList does; Callback declares the named arguments)
"""The study's experiment trackers as one Tune callback whose pickled form is only their specs.

Tune pickles its callbacks into tuner.pkl on every snapshot; MLflow's and W&B's callbacks hold
module and class references (cloudpickle's subimport, tensorboardX's SummaryWriter, open clients)
that make that file large and tie it to the tracker's installed version. This container keeps the
specs, builds the real callbacks in the process that runs Tune (a resume builds them afresh:
study/resume.py) and forwards every hook to them; Tune's container check (IS_CALLBACK_CONTAINER)
fails at import if a hook is left out. Imported only by studies that name trackers (it imports Ray).

The trackers' calls (an MLflow run's SQL, a W&B run's start and finish) run in one background thread,
in the order Tune made them, so Tune's loop (and every trial waiting on it) never waits for a
tracker; ``on_experiment_end`` waits until every call is made. A tracker's error is logged, once
per hook, and the study goes on: the Parquet results are the record, a tracker a view of it.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any, Sequence

from ray.tune import Callback

from incsweep.study.trackers import TrackerSpec, build_callbacks

__all__ = ["TrackerCallbacks"]

log = logging.getLogger(__name__)


class TrackerCallbacks(Callback):
    IS_CALLBACK_CONTAINER = True

    def __init__(self, trackers: Sequence[TrackerSpec], *, study: str, storage: str):
        self.trackers = tuple(trackers)
        self.study = study
        self.storage = storage
        self._built: list | None = None
        self._calls: queue.Queue | None = None  # the background thread's queue of calls, and the thread
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"trackers": self.trackers, "study": self.study, "storage": self.storage, "_built": None,
                "_calls": None, "_thread": None}

    @property
    def callbacks(self) -> list:
        if self._built is None:
            self._built = build_callbacks(self.trackers, study=self.study, storage=self.storage)
        return self._built

    # -- the background thread --------------------------------------------------------------------
    def _worker(self) -> tuple[queue.Queue, threading.Thread]:
        if self._calls is None or self._thread is None or not self._thread.is_alive():
            self._calls = queue.Queue()
            self._thread = threading.Thread(target=_run_calls, args=(self._calls,), name="incsweep-trackers",
                                            daemon=True)
            self._thread.start()
        return self._calls, self._thread

    def _each(self, hook: str, info: dict[str, Any]) -> None:
        if "result" in info:  # Tune reuses nothing of it after the hook, but a copy costs little
            info = {**info, "result": dict(info["result"])}
        calls, _ = self._worker()
        calls.put((self, hook, info))  # the thread builds the trackers (imports MLflow, W&B) at its first call

    def prepare(self) -> None:
        """Build the trackers and let each prepare its store, in the background thread: the runner calls
        this before Ray starts, so MLflow's import and its SQLite schema migration (about a second,
        14% of a tiny study before this) overlap Ray's start-up instead of the first trials."""
        self._each("prepare", {})

    def setup(self, **info: Any) -> None:
        self._each("setup", info)

    def on_step_begin(self, **info: Any) -> None:
        pass  # no tracker acts on steps (Ray's LoggerCallback: no-ops); every step of Tune's loop calls it

    def on_step_end(self, **info: Any) -> None:
        pass

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
        calls, thread = self._worker()
        calls.put(None)  # then the thread ends, every call before it made
        thread.join()

    def get_state(self) -> dict | None:
        return None  # the trackers resume from their own stores (MLflow's DB, W&B's run files)

    def set_state(self, state: dict) -> None:
        pass


def _run_calls(calls: queue.Queue) -> None:
    """Make each queued (container, hook, info) call on every tracker, in order, until None; an error is
    logged once per tracker and hook. ``prepare`` is called on the trackers that have it."""
    failed: set[tuple[str, str]] = set()

    def once(where: tuple[str, str], exc: Exception) -> None:
        if where not in failed:
            failed.add(where)
            log.warning("%s.%s failed (%s: %s); the study goes on, this tracker's records may miss data",
                        *where, type(exc).__name__, exc)

    while True:
        item = calls.get()
        if item is None:
            return
        container, hook, info = item
        try:
            callbacks = container.callbacks
        except Exception as exc:  # noqa: BLE001 - building failed: no tracker records, the study goes on
            once(("trackers", "build"), exc)
            continue
        for callback in callbacks:
            method = getattr(callback, hook, None)
            if method is None:  # prepare: only the trackers with a store to make
                continue
            try:
                method(**info)
            except Exception as exc:  # noqa: BLE001 - a tracker must not end a study (its records are a view)
                once((type(callback).__name__, hook), exc)
