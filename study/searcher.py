"""OptunaSearch for incremental runs: the traps of docs/ray-optuna.md handled in one subclass.

- Trials that stop before their last task (ASHA) are told PRUNED, never COMPLETE with truncated
  values that would land on the Pareto front (trap 3).
- A diverged trial or a non-finite objective is told FAIL (a NaN would leave it RUNNING: trap 6).
- Every Optuna trial carries its Tune trial id (user attr ``tune_trial_id``); after a hard kill,
  Optuna trials that Tune's last snapshot does not know are failed as orphans, and trials the
  storage already finished are not told again (trap 4).
- Constraints are set with ``Trial.set_constraint`` (Optuna 5) so every sampler respects them.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import optuna
from optuna.trial import TrialState
from ray.tune.search.optuna import OptunaSearch

if TYPE_CHECKING:  # the spec is imported where it is used, below
    from .spec import SamplerSpec

__all__ = ["StudySearcher", "make_sampler", "make_optuna_storage", "TUNE_ID_ATTR", "reconcile_orphans",
           "reconcile_with_results"]

log = logging.getLogger(__name__)

TUNE_ID_ATTR = "tune_trial_id"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def make_sampler(sampler: "SamplerSpec | str", seed: int) -> optuna.samplers.BaseSampler:
    """The spec's sampler (tpe, nsga2, random or gp; a bare name takes Optuna's defaults), seeded."""
    from .spec import SamplerSpec

    s = SamplerSpec(name=sampler) if isinstance(sampler, str) else sampler
    if s.name == "tpe":
        # group=True: a multi-method study's space is conditional; without it multivariate TPE
        # falls back to independent sampling for every field outside the common intersection
        with warnings.catch_warnings():  # group is "experimental" in Optuna 5; chosen knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=s.startup_trials,
                                              multivariate=s.multivariate, group=s.multivariate)
    if s.name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=s.population_size)
    if s.name == "gp":
        # fields outside the space every trial shares (a multi-method study) are sampled at random
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=s.startup_trials)
    return optuna.samplers.RandomSampler(seed=seed)


def make_optuna_storage(url_or_path: str) -> optuna.storages.BaseStorage:
    """An RDB URL (sqlite:///, postgresql://, ...) or the path of a journal file (the default)."""
    if "://" in url_or_path:
        return optuna.storages.RDBStorage(url_or_path)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(url_or_path))


# optuna-dashboard (0.21) shows a trial's constraints from the system attribute "constraints", a list
# (Optuna 4's format); Optuna 5's set_constraint stores "constraints:<name>" per constraint. Both are
# written: Optuna 5 reads both (same values, so the same feasibility), the dashboard the list.
_DASHBOARD_CONSTRAINTS = "constraints"


def set_constraints(trial: optuna.trial.Trial, constraints: Sequence[Any], metrics: Mapping[str, Any]) -> None:
    """Each constraint's violation (<= 0: feasible) on ``trial``, named, and as the list the dashboard shows."""
    values = [c.violation(float(metrics[c.metric])) for c in constraints]
    for c, v in zip(constraints, values):
        trial.set_constraint(str(c), v)
    if values:
        trial.storage.set_trial_system_attr(trial._trial_id, _DASHBOARD_CONSTRAINTS, values)


def reconcile_with_results(study: optuna.Study, finals: Mapping[str, Mapping[str, Any]], objectives: Sequence[Any],
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
            set_constraints(optuna.trial.Trial(study, t._trial_id), constraints, row)
            study.tell(t.number, [float(v) for v in values], state=TrialState.COMPLETE)
        else:
            study.tell(t.number, state=TrialState.PRUNED if row["status"] == "pruned" else TrialState.FAIL)
        told.append(t.number)
    if told:
        log.warning("told Optuna the outcome of %d trial(s) its journal had left RUNNING (from their Parquet rows): %s",
                    len(told), told)
    return told


def reconcile_orphans(study: optuna.Study, known_tune_ids: set[str]) -> list[int]:
    """Fail every running Optuna trial whose Tune trial is unknown (asked after Tune's last snapshot,
    then the driver died), and enqueue again the configuration of those that were enqueued; returns
    their Optuna numbers. WAITING trials are enqueued ones not yet asked (``enqueue``, incsweep
    confirm): the next asks take them."""
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get(TUNE_ID_ATTR) in known_tune_ids:
            continue
        study._storage.set_trial_user_attr(t._trial_id, "orphaned", "driver stopped before Tune recorded this trial")
        study.tell(t.number, state=TrialState.FAIL)
        failed.append(t.number)
        fixed = t.system_attrs.get("fixed_params")
        if fixed:
            # an enqueued configuration (incsweep confirm, enqueue:, an evaluation phase) must run as
            # asked: queued again, so the sampler does not fill its place with a configuration of its own
            study.enqueue_trial(dict(fixed), skip_if_exists=False)
            log.warning("re-enqueued the configuration of orphaned Optuna trial %d: %s", t.number, fixed)
    if failed:
        log.warning("failed %d orphaned Optuna trial(s) left RUNNING by an interrupted driver: %s", len(failed), failed)
    return failed


class StudySearcher(OptunaSearch):
    """Multi-objective OptunaSearch over a define-by-run space, aware of the task axis."""

    def __init__(self, *, space: Any, metrics: Sequence[str], modes: Sequence[str], n_tasks: int,
                 constraints: Sequence[Any] = (), sampler: optuna.samplers.BaseSampler,
                 storage: optuna.storages.BaseStorage, study_name: str,
                 enqueue: Sequence[Mapping[str, Any]] = ()):
        super().__init__(space=space, metric=list(metrics), mode=list(modes), sampler=sampler, storage=storage,
                         study_name=study_name)
        self._n_tasks = n_tasks
        self._constraints = tuple(constraints)
        if self.study.metric_names is None:  # Optuna's tools (dashboard, trials_dataframe) label the objectives
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2, stable in use; chosen knowingly
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                self.study.set_metric_names(list(metrics))
        if enqueue and not self.study.trials:  # a new study only: a resumed one has them already
            for params in enqueue:
                self.study.enqueue_trial(dict(params))

    @property
    def study(self) -> optuna.Study:
        assert self._ot_study is not None  # OptunaSearch builds it in __init__ (a space is given)
        return self._ot_study

    def known_tune_ids(self) -> set[str]:
        return set(self._ot_trials)

    def reconcile(self) -> list[int]:
        """Align with the Optuna storage (after a restore or a fresh start on existing storage)."""
        for tune_id, ot_trial in self._ot_trials.items():
            state = self.study._storage.get_trial(ot_trial._trial_id).state
            if state in _FINISHED:
                self._completed_trials.add(tune_id)  # the storage is ahead of Tune's snapshot
        return reconcile_orphans(self.study, self.known_tune_ids())

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        self.reconcile()

    def suggest(self, trial_id: str) -> dict | None:
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials[trial_id]
        if TUNE_ID_ATTR not in ot_trial.user_attrs:
            ot_trial.set_user_attr(TUNE_ID_ATTR, trial_id)
        return config

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
        values: list[Any] = [result.get(m) for m in self.metric]
        if any(v is None or not math.isfinite(float(v)) for v in values):
            return TrialState.FAIL, None, f"non-finite objective {dict(zip(self.metric, values))}"
        return TrialState.COMPLETE, [float(v) for v in values], "complete"

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        if self.study._storage.get_trial(ot_trial._trial_id).state in _FINISHED:
            self._completed_trials.add(trial_id)
            return
        state, values, why = self.outcome(result, error)
        if state == TrialState.COMPLETE:
            assert result is not None  # outcome() completes only trials that reported
            set_constraints(ot_trial, self._constraints, result)
        ot_trial.set_user_attr("outcome", why)
        self.study.tell(ot_trial, values, state=state)
        self._completed_trials.add(trial_id)
