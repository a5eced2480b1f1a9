"""What a stored study holds, read without Ray or the engine: ``study status`` and the notebook's
``Study.status()`` import only this (pyarrow and Optuna), so they answer in about a second, and
the driver's own summary is the same code.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping

import pyarrow.compute as pc

from incsweep.analysis.objectives import DEFAULT_OBJECTIVES, Objective, parse_objectives
from incsweep.core.constraints import Constraint, parse_constraints
from incsweep.core.errors import ConfigError
from incsweep.core.layout import StudyLayout
from incsweep.core.vocabulary import OPTIMISABLE, TEST_PREFIX
from incsweep.study.results import StudyRows, read_study_rows

if TYPE_CHECKING:  # the full spec imports the engine (torch); only its annotations are needed here
    import optuna

    from incsweep.study.spec import StudySpec

__all__ = ["StudySummary", "summarize", "optuna_state_counts", "StudyView", "stored_view", "make_optuna_storage",
           "DEFAULT_TRIALS"]

log = logging.getLogger("incsweep.study.runner")

DEFAULT_TRIALS = 12  # a spec's trials when it names none (StudySpec.trials)


def make_optuna_storage(url_or_path: str) -> optuna.storages.BaseStorage:
    """An RDB URL (sqlite:///, postgresql://, ...) or the path of a journal file (the default)."""
    import optuna

    if "://" in url_or_path:
        return optuna.storages.RDBStorage(url_or_path)
    from optuna.storages.journal import JournalFileBackend

    return optuna.storages.JournalStorage(JournalFileBackend(url_or_path))


@dataclass
class StudySummary:
    storage: str
    study: str
    trials: int  # requested
    statuses: Counter = field(default_factory=Counter)  # final rows by status
    unfinished: list[str] = field(default_factory=list)  # trial files without a final row
    task_rows: int = 0
    optuna_states: Counter = field(default_factory=Counter)
    errors: dict[str, str] = field(default_factory=dict)  # trial id -> the error of a trial that ended in one
    n_tasks: int | None = None  # tasks of a run, as the stored rows say (None: no row yet)

    @property
    def finished(self) -> int:
        # Orphans closed as errors after a driver kill were replaced by new trials: not counted.
        return sum(self.statuses.values()) - self.statuses.get("orphaned", 0)

    @property
    def done(self) -> bool:
        return not self.unfinished and self.finished >= self.trials


def summarize(storage: str, spec: StudySpec | StudyView, stored: StudyRows | None = None,
              optuna_states: Counter | None = None) -> StudySummary:
    """What the study's Parquet results and Optuna storage say (works while a study runs); ``spec``:
    the full spec, or the view ``study status`` reads without importing the study's methods;
    ``stored``: the study's rows if the caller read them already; ``optuna_states``: the Optuna
    trials' states if the caller counted them already (``optuna_state_counts``)."""
    summary = StudySummary(storage=storage, study=spec.name, trials=spec.trials)
    stored = stored if stored is not None else read_study_rows(storage, spec.name)
    table = stored.table
    if table is not None and table.num_rows and "n_tasks" in table.column_names:
        summary.n_tasks = pc.max(table["n_tasks"]).as_py()
    for (_, trial_id), exc in sorted(stored.damaged.items()):
        # as analyze does: skipped with a warning, never rewritten; counted as finished (its trial
        # reported before the file was damaged), so resume is not held back by it
        log.warning("skipping %s", exc)
        summary.statuses["unreadable"] += 1
        summary.errors[trial_id] = str(exc)
    # the five columns counted, not every row as dicts: 10,000 trials' rows as dicts took 0.9 s
    first_final: dict[tuple[str, str], tuple[str, str | None]] = {}
    trials: set[tuple[str, str]] = set()
    if table is not None:
        columns = [table[c].to_pylist() for c in ("method", "trial_id", "is_final", "status", "error")]
        for method, trial_id, is_final, status, error in zip(*columns):
            trials.add((method, trial_id))
            if not is_final:
                summary.task_rows += 1
            elif (method, trial_id) not in first_final:
                first_final[(method, trial_id)] = (status, error)
    for key in sorted(trials):
        trial_id = key[1]
        if key not in first_final:
            summary.unfinished.append(trial_id)
            continue
        status, error = first_final[key]
        if (error or "").startswith("orphaned"):
            summary.statuses["orphaned"] += 1
        else:
            summary.statuses[status] += 1
            if status == "error" and error:
                summary.errors[trial_id] = str(error)
    summary.optuna_states = optuna_states if optuna_states is not None else optuna_state_counts(storage, spec)
    return summary


def optuna_state_counts(storage: str, spec: StudySpec | StudyView) -> Counter:
    """How many of the study's Optuna trials are in each state (empty: no Optuna study yet). For a
    journal file, from the journal's study and state records alone (``journal_state_counts``);
    otherwise, or where that cannot answer, from Optuna."""
    layout = StudyLayout(storage)
    try:
        import optuna

        url = layout.optuna_url(spec.optuna_storage)
        if "://" not in url and os.path.exists(url):
            counted = journal_state_counts(url, spec.name)
            if counted is not None:
                return counted
        if "://" in url or os.path.exists(url):
            with _optuna_quiet(optuna):
                study = optuna.load_study(study_name=spec.name, storage=make_optuna_storage(url))
                return Counter(t.state.name for t in study.get_trials(deepcopy=False))
    except (KeyError, ConfigError):
        pass  # no Optuna study yet
    return Counter()


# Optuna's journal operations that decide a trial's state (optuna/storages/journal/_storage.py,
# JournalOperation); every other operation leaves states alone. An operation not listed in _KNOWN_OPS
# (a newer Optuna's) makes journal_state_counts hand the question back to Optuna.
_CREATE_STUDY, _DELETE_STUDY, _CREATE_TRIAL, _SET_TRIAL_STATE = 0, 1, 4, 6
_KNOWN_OPS = frozenset(range(11))
_STATE_OPS = frozenset((_CREATE_STUDY, _DELETE_STUDY, _CREATE_TRIAL, _SET_TRIAL_STATE))
_OP_CODE = re.compile(rb'"op_code"\s*:\s*(\d+)')


def journal_state_counts(path: str, study_name: str) -> Counter | None:
    """The states of ``study_name``'s trials in an Optuna journal file, replaying only the records that
    decide them, by Optuna's rules (a finished trial never changes).
    Optuna's own replay builds every trial, parameters included: 1.2 s of ``study status``'s 3 s at
    10,000 trials, this ~0.2 s (benchmarks/results/study_scale.txt). None where it cannot answer as
    Optuna would (an unknown operation, a damaged line before the last): the caller asks Optuna; a
    contract test replays random journals both ways (tests/study/test_journal_states.py)."""
    import json

    from optuna.trial import TrialState

    studies: dict[int, str] = {}  # study id -> name, of the studies that exist
    next_study = 0
    trial_study: list[int] = []  # trial id -> study id (trial ids count across studies, as Optuna's)
    trial_state: list[TrialState] = []
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    last = len(lines) - 1  # after the final newline: b"" (or a torn record, which Optuna skips too)
    for i, line in enumerate(lines):
        if i == last:
            break
        m = _OP_CODE.search(line)
        op = int(m.group(1)) if m else -1
        if op not in _KNOWN_OPS:
            return None
        if op not in _STATE_OPS:
            continue
        try:
            log = json.loads(line)
        except ValueError:
            return None
        if op == _CREATE_STUDY:
            if log["study_name"] not in studies.values():  # a second study of one name is refused
                studies[next_study] = log["study_name"]
                next_study += 1
        elif op == _DELETE_STUDY:
            studies.pop(log["study_id"], None)
        elif op == _CREATE_TRIAL:
            if log["study_id"] in studies:
                trial_study.append(log["study_id"])
                trial_state.append(TrialState(log.get("state", TrialState.RUNNING.value)))
        else:
            tid, state = log["trial_id"], TrialState(log["state"])
            if tid < len(trial_state) and not trial_state[tid].is_finished():
                trial_state[tid] = state  # (Optuna also refuses RUNNING over RUNNING: the same state)
    ids = [sid for sid, name in studies.items() if name == study_name]
    if not ids:
        return None  # no such study: Optuna says so in its own words
    return Counter(st.name for sid, st in zip(trial_study, trial_state) if sid == ids[0])


@contextmanager
def _optuna_quiet(optuna: Any) -> Iterator[None]:
    """Optuna's INFO lines off while the driver reads its storage; the caller's verbosity back after."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(before, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _parse_objectives(objs: Any) -> tuple[Objective, ...]:
    """A list of ``metric:mode`` strings, a comma-separated string, or a mapping ``{metric: max|min}``;
    each a validation metric a trial reports (``OPTIMISABLE``)."""
    if not isinstance(objs, (str, list, tuple, Mapping)):
        raise ConfigError(f"objectives: {objs!r} is not allowed; give a list like [avg_acc:max, total_mb:min] "
                          "or a mapping like {avg_acc: max, total_mb: min}")
    out = parse_objectives(objs)
    for o in out:
        if o.column.startswith(TEST_PREFIX):
            raise ConfigError(f"objective {o.column!r}: test metrics are recorded, never optimised; "
                              f"use {o.column[len(TEST_PREFIX):]!r}")
        if o.column not in OPTIMISABLE:
            raise ConfigError(f"objective {o.column!r} is unknown; choose from {list(OPTIMISABLE)}")
    return out


@dataclass(frozen=True)
class StudyView:
    """What ``study status`` needs of a stored study, read without importing any of its methods (a
    study whose method no longer imports can still be counted): name, trials requested, objectives,
    constraints, the Optuna storage (the tasks of a run are read from its rows: ``StudySummary.n_tasks``)."""

    name: str
    trials: int
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...]
    optuna_storage: str | None


def stored_view(storage: str) -> StudyView:
    """The :class:`StudyView` of the study in ``storage`` (FileNotFoundError: none there)."""
    from incsweep.core.layout import StudyLayout

    data = StudyLayout(storage).read_spec()
    if data is None:
        raise FileNotFoundError(f"{storage} holds no study (no study.yaml); start one with `incsweep study run SPEC.yaml`")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ConfigError(f"{storage}/study.yaml is not a study spec (no name)")
    trials = data.get("trials", DEFAULT_TRIALS)
    if isinstance(trials, bool) or not isinstance(trials, int):
        raise ConfigError(f"{storage}/study.yaml: trials={trials!r} is not a whole number")
    return StudyView(name=data["name"], trials=trials,
                     objectives=_parse_objectives(data.get("objectives") or DEFAULT_OBJECTIVES),
                     constraints=parse_constraints(data.get("constraints")), optuna_storage=data.get("optuna_storage"))
