"""study/fifo.py: the same choice as Tune's FIFOScheduler, from the unfinished trials only."""

from __future__ import annotations

import pickle
import random

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler

from incsweep.study.fifo import StudyFIFOScheduler
from incsweep.study.kinds import SCHEDULERS
from incsweep.study.scheduler import ParetoASHA


class FakeTrial:
    def __init__(self, status: str):
        self.status = status


class FakeController:
    def __init__(self):
        self.trials: list[FakeTrial] = []

    def get_trials(self) -> list[FakeTrial]:
        return self.trials


STATUSES = (Trial.PENDING, Trial.RUNNING, Trial.PAUSED, Trial.TERMINATED, Trial.ERROR)


def test_it_chooses_what_tunes_fifo_chooses_through_a_study():
    rng = random.Random(0)
    ours, tunes, controller = StudyFIFOScheduler(), FIFOScheduler(), FakeController()
    for step in range(3000):
        if rng.random() < 0.3:
            trial = FakeTrial(Trial.PENDING)
            controller.trials.append(trial)
            ours.on_trial_add(controller, trial)
        for trial in rng.sample(controller.trials, min(3, len(controller.trials))):
            if trial.status not in (Trial.TERMINATED, Trial.ERROR):  # finished trials stay finished
                trial.status = rng.choice(STATUSES)
        assert ours.choose_trial_to_run(controller) is tunes.choose_trial_to_run(controller), step
    assert sum(t.status in (Trial.TERMINATED, Trial.ERROR) for t in controller.trials) > 500
    for trial in controller.trials:  # the study ends: what it holds is dropped as the choice meets it
        trial.status = Trial.TERMINATED
    assert ours.choose_trial_to_run(controller) is None and ours._unfinished == {}  # noqa: SLF001


def test_tunes_end_of_a_trial_drops_it_at_once():
    s, controller = StudyFIFOScheduler(), FakeController()
    a, b, c = FakeTrial(Trial.RUNNING), FakeTrial(Trial.RUNNING), FakeTrial(Trial.PENDING)
    for t in (a, b, c):
        s.on_trial_add(controller, t)
    s.on_trial_complete(controller, a, {})
    s.on_trial_error(controller, b)
    assert list(s._unfinished) == [c] and s.choose_trial_to_run(controller) is c  # noqa: SLF001


def test_it_pickles_without_tunes_trials_and_both_schedulers_use_it():
    s = StudyFIFOScheduler()
    s.on_trial_add(FakeController(), FakeTrial(Trial.PENDING))
    assert pickle.loads(pickle.dumps(s))._unfinished == {}  # noqa: SLF001
    assert isinstance(SCHEDULERS["fifo"].build(None, None), StudyFIFOScheduler)
    assert issubclass(ParetoASHA, StudyFIFOScheduler)
