"""Tune's FIFO scheduling without its walk over every trial of the study at each step of Tune's loop.

``ray.tune.schedulers.FIFOScheduler.choose_trial_to_run`` returns the first PENDING (else PAUSED) trial
by scanning ``tune_controller.get_trials()``, every trial the study ever had, and Tune's loop asks it at
each step while a slot is free. In a 10,000-trial study that scan was a sixth of the driver's busy time
at 4,200 trials, growing with every trial (py-spy of benchmarks/study_scale.py --trials 10000;
benchmarks/results/study_scale.txt). Here the scheduler keeps the trials that can still run, in the
order Tune added them (``on_trial_add``, also for a resumed study's restored trials), drops a trial when
Tune says it ended (and any finished one it meets), and chooses from those: the same trial Tune's would
choose (tests/study/test_fifo.py).
"""

from __future__ import annotations

from typing import Any

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

__all__ = ["StudyFIFOScheduler"]

_DONE = (Trial.TERMINATED, Trial.ERROR)


class StudyFIFOScheduler(FIFOScheduler):
    """FIFOScheduler whose choice reads only the trials that have not finished (module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._unfinished: dict[Any, None] = {}  # Tune's trials in the order added (a dict: an ordered set)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_unfinished": {}}  # Tune's trials stay in the driver (a resume adds them again)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        self._unfinished[trial] = None

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)
        self._unfinished.pop(trial, None)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_error(tune_controller, trial)
        self._unfinished.pop(trial, None)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_remove(tune_controller, trial)
        self._unfinished.pop(trial, None)

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        paused = None
        for trial in list(self._unfinished):
            if trial.status in _DONE:
                del self._unfinished[trial]
            elif trial.status == Trial.PENDING:
                return trial
            elif trial.status == Trial.PAUSED and paused is None:
                paused = trial
        return paused
