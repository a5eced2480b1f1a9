"""The study's searcher: Ray Tune's public ``Searcher`` around incsweep's own Optuna study.

The Optuna study (journal or RDB) is the search's whole state: nothing is kept in Tune's pickles,
so a resumed study builds a fresh searcher on the same storage (study/resume.py) and Tune's saved
state is never loaded (docs/cluster.md, "Trust"). The traps of docs/ray-optuna.md handled here:

- Trials that stop before their last task (ASHA) are told PRUNED, never COMPLETE with truncated
  values that would land on the Pareto front (trap 3).
- A diverged trial or a non-finite objective is told FAIL (a NaN would leave it RUNNING: trap 6).
- Every Optuna trial carries its id in the study (user attr ``tune_trial_id``: the Tune trial id
  it first ran under); a resumed study continues the RUNNING ones under new Tune trials, fails the
  ones no Tune trial ever ran, and does not tell again what the storage already finished (trap 4).
- Constraints are set with ``Trial.set_constraint`` (Optuna 5) so every sampler respects them.

Only public APIs of Ray Tune and Optuna are used (ruff SLF001 is on for this package).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import optuna
from optuna.trial import TrialState
from ray.tune import Callback
from ray.tune.search import Searcher

from incsweep.study.summary import make_optuna_storage

if TYPE_CHECKING:  # the spec is imported where it is used, below
    from incsweep.study.spec import SamplerSpec

__all__ = ["StudySearcher", "Continuation", "trial_config", "make_sampler", "sampler_seed", "make_optuna_storage",
           "open_study", "StoredStudy", "TUNE_ID_ATTR", "ASK_S_ATTR", "reconcile_orphans", "reconcile_with_results",
           "fail_unrun", "AskAhead", "ASKED_AHEAD_ATTR"]

log = logging.getLogger(__name__)

TUNE_ID_ATTR = "tune_trial_id"
# Seconds the sampler took to propose the trial (ask plus the define-by-run suggestions, where
# independent samplers do their work): what a study pays per trial for its search, growing with the
# trials the sampler models (benchmarks/study_scale.py reads it back).
ASK_S_ATTR = "sampler_ask_s"
# True on a trial the searcher asked before Tune asked for it (StudySearcher.prepare_next)
ASKED_AHEAD_ATTR = "asked_ahead"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def make_sampler(sampler: "SamplerSpec | str", seed: int) -> optuna.samplers.BaseSampler:
    """The spec's sampler (study/kinds.py SAMPLERS; a bare name takes Optuna's defaults), seeded."""
    from incsweep.study.kinds import SAMPLERS
    from incsweep.study.spec import SamplerSpec

    s = SamplerSpec(name=sampler) if isinstance(sampler, str) else sampler
    return SAMPLERS[s.name].build(s, seed)


class StoredStudy(optuna.Study):
    """An Optuna study that names its storage: ``optuna.Study`` keeps its own private, and the searcher
    reads single trials from it (one trial's state, not the whole study's trials)."""

    def __init__(self, study_name: str, storage: str | optuna.storages.BaseStorage,
                 sampler: optuna.samplers.BaseSampler | None = None):
        # get_storage is what Study applies to its argument (an RDB behind Optuna's cache): the storage
        # named here is the study's own, so both see the same trials.
        self.storage = optuna.storages.get_storage(storage)
        super().__init__(study_name=study_name, storage=self.storage, sampler=sampler)


def open_study(storage: optuna.storages.BaseStorage, name: str, *, sampler: optuna.samplers.BaseSampler,
               metrics: Sequence[str], modes: Sequence[str]) -> StoredStudy:
    """The study's Optuna study on ``storage``: created with its directions and objective names, or
    loaded (with this driver's sampler) when it exists."""
    directions = [optuna.study.StudyDirection.MAXIMIZE if m == "max" else optuna.study.StudyDirection.MINIMIZE
                  for m in modes]
    optuna.create_study(storage=storage, study_name=name, directions=directions, load_if_exists=True)
    study = StoredStudy(name, storage, sampler)
    if list(study.directions) != directions:
        from incsweep.core.errors import ConfigError

        raise ConfigError(f"the Optuna study {name!r} has directions {[d.name for d in study.directions]}, this "
                          f"spec {[d.name for d in directions]}; give the study another name or storage")
    if study.metric_names is None:  # Optuna's tools (dashboard, trials_dataframe) label the objectives
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2, stable in use; chosen knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(metrics))
    return study


def sampler_seed(seed: int, n_trials: int) -> int:
    """The sampler's seed for a driver that finds ``n_trials`` in the study: the spec's seed for a new
    study; else one derived from both, so a resumed study's fresh sampler does not draw again the
    start-up configurations it drew first (its random state is not stored: study/resume.py)."""
    if n_trials == 0:
        return seed
    import numpy as np

    return int(np.random.SeedSequence([seed, n_trials]).generate_state(1)[0])


# optuna-dashboard (0.21) shows a trial's constraints from the system attribute "constraints", a list
# (Optuna 4's format); Optuna 5's set_constraint stores "constraints:<name>" per constraint. Both are
# written: Optuna 5 reads both (same values, so the same feasibility), the dashboard the list.
_DASHBOARD_CONSTRAINTS = "constraints"


def storage_trial_id(storage: optuna.storages.BaseStorage, study_name: str, number: int) -> int:
    """The storage's id of trial ``number`` of the study (Optuna keeps it private on its trial objects)."""
    return storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(study_name), number)


def trial_state(study: StoredStudy, number: int) -> TrialState:
    """The stored state of trial ``number``, read from the storage (one trial, not the whole study)."""
    return study.storage.get_trial(storage_trial_id(study.storage, study.study_name, number)).state


def running_trial(study: StoredStudy, number: int) -> optuna.trial.Trial:
    """A live handle on RUNNING trial ``number`` (to set its attributes and constraints)."""
    return optuna.trial.Trial(study, storage_trial_id(study.storage, study.study_name, number))


def set_constraints(trial: optuna.trial.Trial, constraints: Sequence[Any], metrics: Mapping[str, Any]) -> None:
    """Each constraint's violation (<= 0: feasible) on ``trial``, named, and as the list the dashboard shows."""
    values = [c.violation(float(metrics[c.metric])) for c in constraints]
    for c, v in zip(constraints, values):
        trial.set_constraint(str(c), v)
    if values:
        trial_id = storage_trial_id(trial.storage, trial.study.study_name, trial.number)
        trial.storage.set_trial_system_attr(trial_id, _DASHBOARD_CONSTRAINTS, values)


def reconcile_with_results(study: StoredStudy, finals: Mapping[str, Mapping[str, Any]], objectives: Sequence[Any],
                           constraints: Sequence[Any] = ()) -> list[int]:
    """Tell Optuna the outcome of every unfinished trial whose Parquet file already has its final row
    (``finals``: Tune trial id -> final row). A driver killed while appending the trial's last
    journal line leaves it RUNNING although the trial ended; Parquet is the source of truth."""
    told = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        row = finals.get(t.user_attrs.get(TUNE_ID_ATTR, ""))
        if row is None:
            continue
        values: list[Any] = [row.get(o.column) for o in objectives]
        if row["status"] == "complete" and all(v is not None and math.isfinite(float(v)) for v in values):
            set_constraints(running_trial(study, t.number), constraints, row)
            study.tell(t.number, [float(v) for v in values], state=TrialState.COMPLETE)
        else:
            study.tell(t.number, state=TrialState.PRUNED if row["status"] == "pruned" else TrialState.FAIL)
        told.append(t.number)
    if told:
        log.warning("told Optuna the outcome of %d trial(s) its journal had left RUNNING (from their Parquet rows): %s",
                    len(told), told)
    return told


def fail_unrun(study: StoredStudy, trial: optuna.trial.FrozenTrial, attr: str, why: str) -> None:
    """Fail RUNNING Optuna ``trial``, which no Tune trial ran, saying ``why`` in user attr ``attr``; an
    enqueued configuration (incsweep confirm, ``enqueue:``, an evaluation phase) is queued again, so
    the sampler does not fill its place with a configuration of its own."""
    running_trial(study, trial.number).set_user_attr(attr, why)
    study.tell(trial.number, state=TrialState.FAIL)
    fixed = trial.system_attrs.get("fixed_params")
    if fixed:
        study.enqueue_trial(dict(fixed), skip_if_exists=False)
        log.warning("re-enqueued the configuration of Optuna trial %d, which no trial ran: %s", trial.number, fixed)


def reconcile_orphans(study: StoredStudy, known_tune_ids: set[str]) -> list[int]:
    """Fail every running Optuna trial whose study id is not in ``known_tune_ids`` (the trials a
    resumed study continues), and enqueue again the configuration of those that were enqueued;
    returns their Optuna numbers. WAITING trials are enqueued ones not yet asked (``enqueue``,
    incsweep confirm): the next asks take them."""
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get(TUNE_ID_ATTR) in known_tune_ids:
            continue
        fail_unrun(study, t, "orphaned", "driver stopped before any Tune trial ran it")
        failed.append(t.number)
    if failed:
        log.warning("failed %d orphaned Optuna trial(s) left RUNNING by an interrupted driver: %s", len(failed), failed)
    return failed


def trial_config(space: Callable[[Any], Mapping[str, Any]], trial: Any) -> dict[str, Any]:
    """A trial's config from the define-by-run ``space``: its ``method`` and ``params``, plus every
    sampled value under Optuna's own name (``<method>.<param>``: what trackers show as the trial's
    parameters, as Ray's OptunaSearch put them)."""
    config = dict(space(trial))
    return {**trial.params, **config}


@dataclass(frozen=True)
class Continuation:
    """An interrupted trial a resumed study runs on: its Optuna trial, its id in the study, its
    configuration (as the space suggested it) and the checkpoints it may start from."""

    number: int
    key: str
    config: Mapping[str, Any]
    checkpoints: tuple[str, ...] = ()


class StudySearcher(Searcher):
    """Multi-objective, define-by-run search over an Optuna study, aware of the task axis.

    ``continuations`` (a resumed study) are handed out first, each to the next Tune trial; then
    every suggestion is an Optuna ``ask`` (enqueued configurations first) run through ``space``.

    ``ask_ahead`` (with ``samples``, the suggestions Tune will ask for): ``prepare_next`` asks the
    sampler for the next suggestion while the trials run (AskAhead calls it after every step of Tune's
    loop), so a slot that frees takes a ready configuration instead of waiting for the sampler's
    proposal (TPE's grows with the trials it models). The proposal then lacks the result of the trial
    whose slot it takes, as proposals in a parallel study already lack those of the running trials.
    """

    def __init__(self, *, space: Callable[[Any], Mapping[str, Any]], metrics: Sequence[str], modes: Sequence[str],
                 n_tasks: int, study: StoredStudy, constraints: Sequence[Any] = (),
                 continuations: Sequence[Continuation] = (), samples: int | None = None, ask_ahead: bool = False):
        super().__init__()  # Tune's single metric/mode does not apply: the objectives are ours
        self.study = study
        self.metric_names, self.modes = list(metrics), list(modes)
        self._space = space
        self._n_tasks = n_tasks
        self._constraints = tuple(constraints)
        self._continuations = list(continuations)
        self._numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self._told: set[str] = set()
        # suggestions up to which it asks ahead: Tune's num_samples, 0 when it does not
        self._ahead_until = samples if ask_ahead and samples is not None else 0
        self._served = 0  # suggestions handed to Tune (continuations included)
        self._held: tuple[optuna.trial.Trial, dict[str, Any]] | None = None  # asked ahead, not yet handed out

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its search algorithm into tuner.pkl, which is never read (a study resumes from
        # its Optuna storage: study/resume.py); the study's sampler need not pickle, and NSGA-II's
        # holds a lock (an nsga2 study failed at launch with "cannot pickle '_thread.lock' object")
        return {**self.__dict__, "study": None, "_held": None}

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True  # nothing to take from Tune: the space, objectives and directions are the study's

    def suggest(self, trial_id: str) -> dict | None:
        self._served += 1
        if self._continuations:
            c = self._continuations.pop(0)
            self._numbers[trial_id] = c.number
            return {**c.config, "key": c.key, "resume_from": list(c.checkpoints)}
        trial, config = self._held if self._held is not None else self._ask()
        self._held = None
        trial.set_user_attr(TUNE_ID_ATTR, trial_id)  # before Tune starts it: a resume finds it by this id
        self._numbers[trial_id] = trial.number
        return config

    @property
    def numbers(self) -> Mapping[str, int]:
        """Tune trial id -> Optuna trial number of every trial handed out so far (a live view: the
        Parquet sink stamps each row's ``trial_number`` from it)."""
        return self._numbers

    def _ask(self) -> tuple[optuna.trial.Trial, dict[str, Any]]:
        tic = time.perf_counter()
        trial = self.study.ask()
        config = trial_config(self._space, trial)
        trial.set_user_attr(ASK_S_ATTR, round(time.perf_counter() - tic, 6))
        return trial, config

    def prepare_next(self) -> None:
        """Ask the sampler for the next suggestion now, if asking ahead and Tune will still ask for one
        that no continuation fills (a trial asked and never handed out would stay RUNNING)."""
        if self._held is None and self._served + len(self._continuations) < self._ahead_until:
            self._held = self._ask()
            self._held[0].set_user_attr(ASKED_AHEAD_ATTR, True)

    def release_held(self) -> int | None:
        """Fail the trial asked ahead that no Tune trial took (the study stopped first); its number."""
        if self._held is None:
            return None
        trial, _ = self._held
        self._held = None
        frozen = self.study.storage.get_trial(storage_trial_id(self.study.storage, self.study.study_name, trial.number))
        fail_unrun(self.study, frozen, "outcome", "asked ahead; the study stopped before a trial ran it")
        return trial.number

    def outcome(self, result: Mapping[str, Any] | None, error: bool) -> tuple[TrialState, list[float] | None, str]:
        """What to tell Optuna about a finished trial, and why (pure: unit-tested)."""
        if error:
            return TrialState.FAIL, None, "error"
        if not result:
            return TrialState.PRUNED, None, "stopped before reporting"
        if result.get("diverged"):
            return TrialState.FAIL, None, "diverged"
        if result.get("failed"):
            return TrialState.FAIL, None, "error"
        done = int(result.get("tasks_done", 0))
        if done < self._n_tasks:
            return TrialState.PRUNED, None, f"stopped after {done}/{self._n_tasks} tasks"
        values: list[Any] = [result.get(m) for m in self.metric_names]
        if any(v is None or not math.isfinite(float(v)) for v in values):
            return TrialState.FAIL, None, f"non-finite objective {dict(zip(self.metric_names, values))}"
        return TrialState.COMPLETE, [float(v) for v in values], "complete"

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        number = self._numbers.get(trial_id)
        if number is None or trial_id in self._told:
            return
        self._told.add(trial_id)
        if trial_state(self.study, number) in _FINISHED:
            return  # the storage is ahead (an earlier driver told it)
        state, values, why = self.outcome(result, error)
        trial = running_trial(self.study, number)
        if state == TrialState.COMPLETE:
            assert result is not None  # outcome() completes only trials that reported
            set_constraints(trial, self._constraints, result)
        trial.set_user_attr("outcome", why)
        self.study.tell(number, values, state=state)

    def save(self, checkpoint_path: str) -> None:
        """Nothing: the Optuna storage holds the search (Tune's copy would never be read)."""

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("a study resumes from its Optuna storage, never from Tune's searcher state")


class AskAhead(Callback):
    """After every step of Tune's loop, the searcher asks for its next suggestion if it has none ready
    (StudySearcher.prepare_next): between Tune's events, while the trials train."""

    def __init__(self, searcher: StudySearcher):
        self.searcher = searcher

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.searcher.prepare_next()
