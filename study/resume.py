"""A resumed study, rebuilt from its data: the Optuna storage, the Parquet results and the trials'
``weights_only`` checkpoints. Tune's saved experiment state (pickles) is never read.

Why rebuild rather than ``Tuner.restore``: Tune's state is pickles (anyone who can write the
storage could run code in the next driver), holds absolute paths (a copied study resumed into the
original, a moved one hung), and a driver killed right after Tune's first snapshot left an
experiment of one trial that every resume "finished" again (docs/cluster.md, "Trust" and
"Relocating a study"). What a resume needs is all in incsweep's own formats:

- **finished trials**: the Parquet final rows (the source of truth); an Optuna trial left RUNNING
  although its final row exists (a torn journal line) is told that outcome;
- **interrupted trials** (RUNNING in Optuna, with the Tune trial id they first ran under): each is
  continued by a new Tune trial with the same configuration and identity (``key``: its Parquet
  file and Optuna trial stay the same), from the furthest of its checkpoints that loads;
- **trials no Tune trial ran** (asked, then the driver died): failed, an enqueued configuration
  queued again (searcher.reconcile_orphans);
- **result files without a final row** whose Optuna trial is finished (the driver died between
  telling Optuna and the sink's write): closed with Optuna's outcome; with no Optuna trial, as
  orphaned;
- **the scheduler's rungs**: every trial's task rows (study.scheduler.ParetoASHA.seed).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import optuna
from optuna.trial import FixedTrial, TrialState
from pyarrow import fs as pafs

from incsweep.core.layout import TUNE_NAME, StudyLayout
from incsweep.study.results import StudyRows, final_row, read_study_rows, write_trial_file
from incsweep.study.searcher import (
    TUNE_ID_ATTR,
    Continuation,
    StoredStudy,
    reconcile_orphans,
    reconcile_with_results,
    trial_config,
)
from incsweep.study.spec import StudySpec

__all__ = ["ResumePlan", "plan_resume", "read_finals", "trial_dir_names", "checkpoint_locations"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResumePlan:
    """What a driver continues and what it found settled."""

    continuations: tuple[Continuation, ...] = ()
    task_rows: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)  # study trial id -> rows
    failed_orphans: tuple[int, ...] = ()  # Optuna numbers of trials no Tune trial ran
    closed: tuple[str, ...] = ()  # result files given a final row from Optuna's outcome
    # the rows read to plan, when planning wrote none (nothing closed): the driver's summary reuses
    # them instead of reading the study again (2 s at 10,000 trials: benchmarks/results/study_scale.txt)
    rows: StudyRows | None = None


def trial_dir_names(key: str, names: list[str]) -> list[str]:
    """The Tune trial directories of study trial ``key``: its own and its continuations'
    (``trial_<key>`` and ``trial_<key>_<tune id>``: study.runner.trial_dirname)."""
    return sorted(n for n in names if n == f"trial_{key}" or n.startswith(f"trial_{key}_"))


def checkpoint_locations(layout: StudyLayout, key: str, listing: Mapping[str, list[str]]) -> tuple[str, ...]:
    """Every checkpoint directory of study trial ``key`` as a location a trial can open (a path, or
    the storage URI's), oldest first. ``listing``: trial directory -> its checkpoint directories."""
    out = []
    for name in trial_dir_names(key, list(listing)):
        for ckpt in sorted(listing[name]):
            out.append(layout.location(f"{TUNE_NAME}/{name}/{ckpt}"))
    return tuple(out)


def _checkpoint_listing(layout: StudyLayout) -> dict[str, list[str]]:
    """Trial directory name -> its ``checkpoint_*`` directories, under the study's Tune directory."""
    fs = layout.tune_filesystem or pafs.LocalFileSystem()
    base = layout.tune_experiment
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return {}
    listing: dict[str, list[str]] = {}
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=False)):
        name = info.path.rstrip("/").rsplit("/", 1)[-1]
        if info.type != pafs.FileType.Directory or not name.startswith("trial_"):
            continue
        listing[name] = [c.path.rstrip("/").rsplit("/", 1)[-1] for c in fs.get_file_info(pafs.FileSelector(info.path))
                         if c.type == pafs.FileType.Directory and c.path.rstrip("/").rsplit("/", 1)[-1].startswith("checkpoint_")]
    return listing


def _read_results(storage: str, name: str) -> tuple[dict[str, tuple[str, list[dict[str, Any]]]], StudyRows]:
    """Study trial id -> (method, rows), and the rows as read; damaged files are skipped with a
    warning, as analyze does."""
    stored = read_study_rows(storage, name)
    for exc in stored.damaged.values():
        log.warning("skipping %s", exc)
    return {key: (method, rows) for (method, key), rows in stored.by_trial().items()}, stored


def read_finals(storage: str, name: str) -> dict[str, dict[str, Any]]:
    """Study trial id -> its final Parquet row, for every trial file that has one."""
    return {key: next(r for r in rows if r["is_final"]) for key, (_, rows) in _read_results(storage, name)[0].items()
            if any(r["is_final"] for r in rows)}


def _close(storage: str, spec: StudySpec, rows: list[dict[str, Any]], trial: optuna.trial.FrozenTrial | None) -> str:
    """Give a result file without a final row the outcome Optuna recorded (or orphaned: none)."""
    tasks = [r for r in rows if not r["is_final"]]
    if trial is None or trial.state == TrialState.FAIL and trial.user_attrs.get("orphaned"):
        status, error = "error", ("orphaned: the driver stopped before Tune recorded this trial; "
                                  "the study ran a replacement trial")
    elif trial.state == TrialState.COMPLETE and len(tasks) >= spec.n_tasks:
        status, error = "complete", None
    elif trial.state == TrialState.PRUNED:
        status, error = "pruned", f"stopped by the scheduler after {len(tasks)} task(s)"
    else:
        status, error = "error", f"Optuna recorded {trial.state.name} ({trial.user_attrs.get('outcome', 'no outcome')})"
    write_trial_file(storage, tasks + [final_row(tasks, status=status, error=error)])
    return status


def plan_resume(spec: StudySpec, layout: StudyLayout, study: StoredStudy) -> ResumePlan:
    """Settle what the storage already decides and list the interrupted trials to continue."""
    storage = layout.storage
    results, stored = _read_results(storage, spec.name)
    finals = {key: next(r for r in rows if r["is_final"]) for key, (_, rows) in results.items()
              if any(r["is_final"] for r in rows)}
    reconcile_with_results(study, finals, spec.objectives, spec.constraints)

    space = spec.space()
    listing: dict[str, list[str]] | None = None
    continuations = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        key = t.user_attrs.get(TUNE_ID_ATTR)
        if not key:
            continue  # no Tune trial ever ran it: reconcile_orphans below
        if listing is None:
            listing = _checkpoint_listing(layout)
        config = trial_config(space, FixedTrial(dict(t.params), t.number))
        continuations.append(Continuation(number=t.number, key=str(key), config=config,
                                          checkpoints=checkpoint_locations(layout, str(key), listing)))
    failed = reconcile_orphans(study, {c.key for c in continuations})

    continued = {c.key for c in continuations}
    by_key = {t.user_attrs.get(TUNE_ID_ATTR): t for t in study.get_trials(deepcopy=False) if TUNE_ID_ATTR in t.user_attrs}
    closed = []
    for key, (_, rows) in results.items():
        if key in finals or key in continued:
            continue
        status = _close(storage, spec, rows, by_key.get(key))
        log.warning("closed trial %s's results as %s from the Optuna storage (the driver stopped before writing "
                    "its final row)", key, status)
        closed.append(key)
    if continuations:
        log.info("continuing %d interrupted trial(s): %s", len(continuations), ", ".join(c.key for c in continuations))
    task_rows = {key: [r for r in rows if not r["is_final"]] for key, (_, rows) in results.items()}
    return ResumePlan(continuations=tuple(continuations), task_rows=task_rows, failed_orphans=tuple(failed),
                      closed=tuple(closed), rows=None if closed else stored)
