"""Contract: ``study status`` counts an Optuna journal's trial states from its state records alone
(study/summary.py, journal_state_counts); on random journals it must agree with Optuna's own replay."""

from __future__ import annotations

import random
from collections import Counter

import optuna
import pytest
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from incsweep.study.summary import journal_state_counts


def _optuna_counts(path: str, name: str) -> Counter:
    study = optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(JournalFileBackend(path)))
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def _random_journal(path: str, seed: int) -> None:
    """Two studies written through Optuna, with every kind of state change a study makes: asked and
    told trials (complete, pruned, failed), trials left running, enqueued (waiting) ones later asked,
    added finished trials, a deleted third study, and refused changes (telling a finished trial)."""
    rng = random.Random(seed)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = optuna.storages.JournalStorage(JournalFileBackend(path))
    gone = optuna.create_study(study_name="gone", storage=storage)
    gone.ask()
    studies = [optuna.create_study(study_name=n, storage=storage, directions=["maximize", "minimize"])
               for n in ("s", "s.confirm")]
    optuna.delete_study(study_name="gone", storage=storage)
    for _ in range(120):
        study = rng.choice(studies)
        roll = rng.random()
        if roll < 0.1:
            study.enqueue_trial({"x": rng.random()})
            continue
        if roll < 0.15:
            study.add_trial(optuna.trial.create_trial(params={"x": 0.5},
                                                      distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
                                                      values=[0.5, 1.0]))
            continue
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        outcome = rng.random()
        if outcome < 0.15:
            continue  # left running (a killed driver)
        state = TrialState.COMPLETE if outcome < 0.7 else TrialState.PRUNED if outcome < 0.85 else TrialState.FAIL
        study.tell(trial, [rng.random(), rng.random()] if state == TrialState.COMPLETE else None, state=state)
        if rng.random() < 0.1:  # a record another worker wrote for a finished trial: replayed as refused
            with pytest.raises(UpdateFinishedTrialError):
                storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # noqa: SLF001 - its storage id
    studies[0].enqueue_trial({"x": 0.25})  # two workers pop one waiting trial: the second is refused
    tid = next(t._trial_id for t in studies[0].get_trials() if t.state == TrialState.WAITING)  # noqa: SLF001
    assert storage.set_trial_state_values(tid, TrialState.RUNNING) and not storage.set_trial_state_values(
        tid, TrialState.RUNNING)


@pytest.mark.parametrize("seed", range(4))
def test_journal_state_counts_agree_with_optunas_replay(tmp_path, seed):
    path = str(tmp_path / "optuna.journal")
    _random_journal(path, seed)
    for name in ("s", "s.confirm"):
        counted = journal_state_counts(path, name)
        assert counted == _optuna_counts(path, name)
    assert sum(journal_state_counts(path, "s").values()) > 20 and len(journal_state_counts(path, "s")) >= 3


def test_what_it_cannot_answer_as_optuna_would_goes_back_to_optuna(tmp_path):
    path = tmp_path / "optuna.journal"
    _random_journal(str(path), 0)
    whole = path.read_bytes()
    assert journal_state_counts(str(path), "missing") is None  # Optuna names a missing study itself
    path.write_bytes(whole + b'{"op_code":4,"worker_id":"w","study_id":0')  # torn last record: skipped, as Optuna does
    assert journal_state_counts(str(path), "s") == _optuna_counts(str(path), "s")
    path.write_bytes(whole + b'{"op_code":99,"worker_id":"w"}\n')  # a newer Optuna's operation
    assert journal_state_counts(str(path), "s") is None
    path.write_bytes(whole.replace(b"\n", b"\n{not json\n", 1))  # damaged before the end
    assert journal_state_counts(str(path), "s") is None
