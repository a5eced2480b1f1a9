"""Driver-side Tune callbacks: the Parquet sink and one progress line per task and per trial.

The sink runs in the driver, the only writer of the study's results: every reported task becomes
a row (keyed by trial and task, so a task re-run after a resume replaces its row), and each
trial's file is rewritten atomically after every change (``study.results``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from datetime import datetime
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
from ray.tune import Callback

from incsweep.core.constraints import feasible, parse_constraints
from incsweep.core.errors import DataFormatError
from incsweep.core.vocabulary import AVG_ACC, FROM_CACHE, MEMORY_METRIC, WALL_TIME
from incsweep.study.results import (
    COMPACT_EVERY,
    compact_trial_files,
    final_row,
    judge_row,
    read_trial_file,
    set_aside,
    task_row,
    utcnow,
    write_trial_file,
)
from incsweep.trainables.boundary import REPLAYED, TrialConfig, trial_key

__all__ = ["ParquetSink", "ProgressLog", "StopOnSignal", "trial_error_text"]

log = logging.getLogger("incsweep.study.progress")


def trial_error_text(trial: Any) -> str:
    """The last line of a failed trial's error (Tune keeps the full traceback in its error file)."""
    text = ""
    for getter in ("get_error",):
        try:
            err = getattr(trial, getter)()
            text = f"{type(err).__name__}: {err}" if err is not None else ""
        except Exception:  # noqa: BLE001 - older/newer Trial APIs
            text = ""
    if not text and getattr(trial, "error_file", None):
        try:
            with open(trial.error_file) as f:
                text = f.read()
        except OSError:
            text = ""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:2000] if lines else "trial failed (no error text)"


class ParquetSink(Callback):
    """Writes one row per reported task and a final row per finished trial."""

    def __init__(self, storage: str, study: str, n_tasks: int, searched: Mapping[str, list[str]],
                 schema: pa.Schema | None = None, constraints: Sequence[str] = (),
                 trial_numbers: Mapping[str, int] | None = None):
        self.storage, self.study, self.n_tasks = storage, study, n_tasks
        # Tune trial id -> Optuna trial number, filled by the searcher as it hands out each trial
        # (StudySearcher.numbers, the same live mapping): the rows' trial_number
        self._numbers: Mapping[str, int] = trial_numbers if trial_numbers is not None else {}
        # Plain strings: every row is judged by them.
        self.constraints = [str(c) for c in constraints]
        # Kept as Arrow IPC bytes: Tune pickles its callbacks into tuner.pkl (never read back: a
        # resume rebuilds them, study/resume.py), and bytes pickle small and without pyarrow's factories.
        self._schema_ipc = schema.serialize().to_pybytes() if schema is not None else None
        self._schema: pa.Schema | None = schema  # not pickled (__getstate__), rebuilt once from the bytes
        self.searched = {m: list(p) for m, p in searched.items()}
        self._rows: dict[str, dict[int, dict[str, Any]]] = {}
        self._final: dict[str, dict[str, Any]] = {}
        # study trial ids (trainables.boundary.trial_key: a continued trial's is the one it continues)
        # this driver has heard of (orphan detection)
        self.seen: set[str] = set()
        # finished trials' files not compacted yet (study.results.compact_trial_files)
        self._finished: list[tuple[str, str]] = []
        self._closed: set[str] = set()  # trials this driver wrote a final row for

    # -- rows ----------------------------------------------------------------------------------
    def _load(self, trial_id: str, method: str) -> dict[int, dict[str, Any]]:
        if trial_id not in self._rows:
            try:
                # a reporting trial is never in a compacted file (only finished ones are)
                stored = read_trial_file(self.storage, self.study, method, trial_id, compacted=False)
            except DataFormatError as exc:
                # the trial reports again (resumed): its new rows must not be lost to a damaged file,
                # and the damaged one is kept, hidden, for whoever wants to look at it
                aside = set_aside(self.storage, self.study, method, trial_id)
                log.warning("%s; set aside as %s, this trial's rows start again", exc, aside)
                stored = []
            self._rows[trial_id] = {r["task"]: r for r in stored if not r["is_final"]}
            finals = [r for r in stored if r["is_final"]]
            if finals:
                self._final[trial_id] = finals[0]
        return self._rows[trial_id]

    def _params(self, trial: Any) -> dict[str, Any]:
        config = TrialConfig.from_tune(trial.config)
        return {k: config.params[k] for k in self.searched.get(config.method, []) if k in config.params}

    def _write(self, trial_id: str) -> None:
        rows = list(self._rows[trial_id].values())
        if trial_id in self._final:
            rows.append(self._final[trial_id])
        if rows:
            judged = parse_constraints(self.constraints)
            rows = [judge_row(r, judged) for r in rows]
            write_trial_file(self.storage, rows, self.schema)

    @property
    def schema(self) -> pa.Schema | None:
        if self._schema is None and self._schema_ipc is not None:
            self._schema = pa.ipc.read_schema(pa.py_buffer(self._schema_ipc))
        return self._schema

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_schema": None}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.seen.add(trial_key(trial))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.seen.add(trial_key(trial))
        if "task_result_json" not in result:
            return
        method = result["method"]
        rows = self._load(trial_key(trial), method)
        task = json.loads(result["task_result_json"])
        if result.get(REPLAYED) and int(task["task"]) in rows:
            return  # a continuation reporting a task this trial's file already holds: kept as written
        rows[int(task["task"])] = task_row(
            task, study=self.study, trial_id=trial_key(trial), method=method,
            benchmark=json.loads(result["config_json"])["benchmark"]["name"], seed=int(json.loads(result["config_json"])["seed"]),
            config_json=result["config_json"], params=self._params(trial),
            started_at=datetime.fromisoformat(result["started_at"]), n_tasks=self.n_tasks,
            from_cache=bool(result.get(FROM_CACHE)), trial_number=self._numbers.get(trial.trial_id))
        self._final.pop(trial_key(trial), None)  # a resumed trial reports again: its end is not known yet
        self._write(trial_key(trial))

    def _finish(self, trial: Any, status: str, error: str | None) -> None:
        if trial_key(trial) in self._closed:
            return  # told twice (complete, then an error in teardown): the first end stands, as written
        config = TrialConfig.from_tune(trial.config)
        method = config.method
        rows = self._load(trial_key(trial), method)
        template = None
        if not rows:
            template = {"study": self.study, "trial_id": trial_key(trial),
                        "trial_number": self._numbers.get(trial.trial_id), "method": method,
                        "benchmark": config.benchmark, "scenario": str(config.scenario),
                        "n_tasks": self.n_tasks, "seed": config.seed,
                        "config_json": json.dumps(config.to_tune(), default=str),
                        "code_version": "", "started_at": utcnow(),
                        **{f"param_{k}": v for k, v in self._params(trial).items()}}
        key = trial_key(trial)
        self._final[key] = final_row(list(rows.values()), status=status, error=error, template=template)
        self._write(key)
        # finished: its rows are on disk and no longer needed here (the driver's memory stays flat
        # over thousands of trials); a trial continued by a later resume reads its file again
        self._rows.pop(key, None)
        self._final.pop(key, None)
        self._finished.append((method, key))
        self._closed.add(key)
        _drop_checkpoints(trial, config.resume_from)
        _forget_tune_history(trial)
        if len(self._finished) >= COMPACT_EVERY:
            compact_trial_files(self.storage, self.study, self._finished)
            self._finished = []

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.seen.add(trial_key(trial))
        last = trial.last_result or {}
        if last.get("diverged"):
            self._finish(trial, "diverged", last.get("error"))
        elif last.get("failed"):
            self._finish(trial, "error", last.get("error"))
        elif int(last.get("tasks_done", 0)) >= self.n_tasks:
            self._finish(trial, "complete", None)
        else:
            self._finish(trial, "pruned", f"stopped by the scheduler after {int(last.get('tasks_done', 0))} task(s)")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.seen.add(trial_key(trial))
        self._finish(trial, "error", trial_error_text(trial))

    def finalize_orphans(self, stored: list[tuple[str, str]]) -> list[str]:
        """Close trial files that have task rows but no final row and belong to no trial Tune knows
        (the driver died before Tune's snapshot recorded them): status error, rows kept."""
        closed = []
        for method, trial_id in stored:
            if trial_id in self.seen:
                continue
            rows = read_trial_file(self.storage, self.study, method, trial_id)
            if not rows or any(r["is_final"] for r in rows):
                continue
            tasks = [r for r in rows if not r["is_final"]]
            write_trial_file(self.storage, tasks + [final_row(
                tasks, status="error", error="orphaned: the driver stopped before Tune recorded this trial; "
                                             "the study ran a replacement trial")], self.schema)
            closed.append(trial_id)
        return closed


def _forget_tune_history(trial: Any) -> None:
    """Drop what Tune keeps of a finished trial for its ExperimentAnalysis and snapshot, which a study
    never reads (its records are the Parquet rows; runner.py never uses Tune's ResultGrid, resume.py
    never Tune's snapshot): per numeric result key (~85 in a study's results) running min/max/avg and
    last-5/last-10 windows (tracemalloc of a 400-trial study: ~40 KB a trial, 170 deques), and the
    result of every checkpoint the trial reported (one a task: its whole result dict), whose
    checkpoints ``_drop_checkpoints`` has just removed. Tune also keeps each trial's snapshot JSON in
    the driver; these were the largest part of it (benchmarks/results/study_scale.txt)."""
    meta = getattr(trial, "run_metadata", None)
    if meta is None:
        return
    if hasattr(meta, "metric_analysis") and hasattr(meta, "metric_n_steps"):
        meta.metric_analysis = {}
        meta.metric_n_steps = {}
    manager = getattr(meta, "checkpoint_manager", None)
    if manager is not None and hasattr(manager, "checkpoint_config"):
        # a new, empty manager of the same kind: Tune reads it at the experiment's end (ResultGrid)
        meta.checkpoint_manager = type(manager)(manager.checkpoint_config)


def _drop_checkpoints(trial: Any, earlier: Sequence[str]) -> None:
    """Remove a finished trial's task checkpoints (its Tune directory's ``checkpoint_*`` and those of
    the interrupted trial it continued, ``earlier``): a finished trial is never continued (a re-run
    starts from its configuration), and at paper scale they are a study's largest files. Tune keeps
    them all while the trial runs (runner.py: no num_to_keep); failing to remove one costs disk only."""
    import pyarrow.fs as pafs

    storage: Any = getattr(trial, "storage", None)  # Tune's StorageContext of the trial
    fs = getattr(storage, "storage_filesystem", None)
    if storage is None or fs is None:
        return
    try:
        own = [i.path for i in fs.get_file_info(pafs.FileSelector(storage.trial_fs_path, allow_not_found=True))
               if i.type == pafs.FileType.Directory and i.base_name.startswith("checkpoint_")]
    except OSError as exc:
        log.debug("checkpoints of %s not listed: %s", trial_key(trial), exc)
        own = []
    for where in [*own, *earlier]:
        try:
            target_fs, path = pafs.FileSystem.from_uri(where) if "://" in where else (fs, where)
            target_fs.delete_dir(path)
        except (OSError, ValueError) as exc:  # gone already, or a location this driver cannot reach
            log.debug("checkpoint %s not removed: %s", where, exc)


class StopOnSignal(Callback):
    """Ends ``fit`` with KeyboardInterrupt at the controller's next step once a watched signal arrived
    (``signals``: objects whose ``check()`` raises it), should Tune or a library have caught the
    interrupt raised inside it (study.runner._interrupt_on)."""

    def __init__(self, signals: Sequence[Any]):
        self.signals = tuple(signals)

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        for s in self.signals:
            s.check()


def stored_front_points(table: pa.Table | None, objectives: Sequence[str], constraints: Sequence[str]) -> list[list[float]]:
    """The objective values of a study's stored complete trials that meet ``constraints`` (what the
    progress line's front holds), from its rows: a resumed driver's line starts from them."""
    if table is None or not table.num_rows or any(o not in table.column_names for o in objectives):
        return []
    parsed = parse_constraints(list(constraints))
    names = [n for n in {*objectives, *(c.metric for c in parsed)} if n in table.column_names]
    finals = table.filter(table["is_final"])
    rows = finals.select(["status", *names]).to_pylist()
    points = []
    for r in rows:
        if r["status"] != "complete" or not feasible(parsed, r):
            continue
        point = [float(r[o]) if r[o] is not None else math.nan for o in objectives]
        if all(math.isfinite(v) for v in point):
            points.append(point)
    return points


class ProgressLog(Callback):
    """One log line per finished task and per finished trial (the CLI prints the study.progress
    logger), each ending in the study's progress: trials finished of those requested by status,
    running, the size of the current Pareto front of completed trials that meet the study's constraints,
    elapsed time and an ETA."""

    def __init__(self, n_tasks: int, objectives: list[str], *, trials: int = 0, senses: list[str] | None = None,
                 finished: Mapping[str, int] | None = None, clock: Callable[[], float] | None = None,
                 constraints: Sequence[str] = (), heartbeat_dir: str | None = None, heartbeat_s: float = 30.0,
                 front: Sequence[Sequence[float]] = ()):
        self.n_tasks, self.objectives, self.trials = n_tasks, objectives, trials
        # A trial silent for ``heartbeat_s`` (a long task) gets a line saying it runs, with the epochs
        # and batches its heartbeat file (trainables/trial.py) says it has done
        self.heartbeat_dir, self.heartbeat_s = heartbeat_dir, heartbeat_s
        self._said: dict[str, float] = {}  # running trial -> when a line last spoke of it
        self._running: dict[str, Any] = {}  # running trial -> Tune's trial object
        self.constraints = [str(c) for c in constraints]
        self.senses = senses or ["max"] * len(objectives)
        self.statuses: Counter[str] = Counter(finished or {})  # earlier drivers' trials (resume) included
        self.done = 0  # trials finished under this driver
        # None: time.monotonic, looked up when used (Tune pickles callbacks into tuner.pkl, and a
        # builtin's reference pickles by name only)
        self._clock_fn = clock
        self._started = self._clock()
        self._tasks: dict[str, int] = {}  # running trial -> tasks done
        self._trained = 0  # tasks reported under this driver (the ETA's rate)
        self._first: float | None = None  # when the first of them was reported
        # objective values of the nondominated completed trials, each once, and how many trials tie on it
        self._front: list[list[float]] = []
        self._ties: list[int] = []
        self._seed_front(front)

    def _seed_front(self, points: Sequence[Sequence[float]]) -> None:
        """Earlier drivers' complete feasible trials (resume): the line's front is the study's, not
        this driver's alone. One pass over their distinct points, ties counted."""
        counts = Counter(tuple(float(v) for v in p) for p in points)
        if counts:
            self._set_front(list(counts), list(counts.values()))

    def _set_front(self, points: Sequence[Sequence[float]], ties: Sequence[int]) -> None:
        """Keep the nondominated ``points`` (distinct), each with its count of tied trials."""
        from incsweep.analysis.dominance import nondominated_mask

        signs = np.array([-1.0 if s == "max" else 1.0 for s in self.senses])  # minimized, as the mask takes them
        keep = nondominated_mask(np.asarray(points, dtype=float) * signs)
        self._front = [[float(v) for v in p] for p, k in zip(points, keep) if k]
        self._ties = [t for t, k in zip(ties, keep) if k]

    def _clock(self) -> float:
        return self._clock_fn() if self._clock_fn is not None else time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_running": {}}  # Tune's trial objects stay in this driver

    # -- the progress suffix --------------------------------------------------------------------
    def progress(self) -> str:
        finished = sum(self.statuses.values())
        by_status = ", ".join(f"{n} {k}" for k, n in sorted(self.statuses.items())) or "none yet"
        elapsed = self._clock() - self._started
        parts = [f"trials {finished}/{self.trials} ({by_status})" if self.trials else f"trials {finished}",
                 f"{len(self._tasks)} running", f"front {self._front_size()}", f"{_duration(elapsed)} elapsed"]
        remaining = (max(self.trials - finished - len(self._tasks), 0) * self.n_tasks
                     + sum(self.n_tasks - t for t in self._tasks.values()))
        if self._trained > 1 and self.trials and self._first is not None:
            # rate from the first report on (Ray's start-up is not a task); an upper bound, since
            # trials the scheduler stops early need fewer tasks than this counts
            rate = (self._clock() - self._first) / (self._trained - 1)
            parts.append(f"ETA {_duration(rate * remaining)}")
        return "[" + "; ".join(parts) + "]"

    def _front_size(self) -> int:
        return sum(self._ties)

    def _add_to_front(self, point: list[float]) -> None:
        """Keep only the nondominated points, a tie as a count: the front stays as small as its distinct
        points, not as long as the study (a saturated objective makes thousands of trials tie; every
        progress line counts them)."""
        if point in self._front:
            self._ties[self._front.index(point)] += 1
            return
        self._set_front([*self._front, point], [*self._ties, 1])

    # -- Tune callbacks -------------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._said[trial_key(trial)] = self._clock()
        self._running[trial_key(trial)] = trial

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """The heartbeat: a line for each running trial nothing was said of for ``heartbeat_s``."""
        now = self._clock()
        # the trials this driver started and that have not finished: Tune's ``trials`` lists every
        # trial of the study, and this runs at every step of its loop (a 10,000-trial study's
        # driver would walk the whole list each time)
        for trial in list(self._running.values()):
            key = trial_key(trial)
            if getattr(trial, "status", None) != "RUNNING" or now - self._said.get(key, now) < self.heartbeat_s:
                continue
            self._said[key] = now
            task = self._tasks.get(key, 0) + 1
            where = ""
            if self.heartbeat_dir is not None:
                from incsweep.incremental.heartbeat import read_beat

                b = read_beat(f"{self.heartbeat_dir}/{key}.json")
                if b is not None and b.at >= time.time() - 2 * self.heartbeat_s:  # not a stale file of an earlier task
                    where = f": epoch {b.epoch}/{b.epochs}, batch {b.batch}/{b.batches}"
            method = (getattr(trial, "config", None) or {}).get("method", "")
            log.info("%s %-6s task %d/%d training%s  %s", key, method, task, self.n_tasks, where, self.progress())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "task_result_json" not in result:
            return
        self._said[trial_key(trial)] = self._clock()
        self._tasks[trial_key(trial)] = int(result["tasks_done"])
        if result.get(REPLAYED):
            return  # trained before the resume: neither a new line nor part of the rate
        self._trained += 1
        if self._first is None:
            self._first = self._clock()
        cached = " (cached prefix)" if result.get(FROM_CACHE) else ""
        log.info("%s %-6s task %d/%d  val avg_acc %.4f  total %.3f MB  %.1f s%s  %s", trial_key(trial), result["method"],
                 result["tasks_done"], self.n_tasks, result[AVG_ACC], result[MEMORY_METRIC], result[WALL_TIME], cached,
                 self.progress())

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        last = trial.last_result or {}
        status = ("diverged" if last.get("diverged") else "error" if last.get("failed") else
                  "complete" if int(last.get("tasks_done", 0)) >= self.n_tasks else "pruned")
        self._finished(trial_key(trial), status)
        if status == "complete" and feasible(parse_constraints(self.constraints), last):
            point = [float(last.get(m, math.nan)) for m in self.objectives]
            if all(math.isfinite(v) for v in point):
                self._add_to_front(point)
        values = "  ".join(f"{m} {last.get(m, float('nan')):.4f}" for m in self.objectives)
        log.info("trial %s %s %s  %s  %s", trial_key(trial), last.get("method", ""), status, values, self.progress())

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.done += 1
        self._finished(trial_key(trial), "error")
        log.info("trial %s error: %s  %s", trial_key(trial), trial_error_text(trial), self.progress())

    def _finished(self, trial_id: str, status: str) -> None:
        self._running.pop(trial_id, None)
        self._tasks.pop(trial_id, None)
        self._said.pop(trial_id, None)
        self.statuses[status] += 1


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
