"""The Parquet results sink: per-trial rows built from task results, written atomically per trial.

One file per trial (``study.schema`` documents the layout and columns). The whole file is rewritten
after every task with all rows known so far, keyed by task index, so a task re-run after a resume
replaces its row instead of duplicating it, and a reader never sees a half-written file: local files
go through a temporary name and ``os.replace``; other pyarrow filesystems write a temporary object
and move it (object stores publish an object only once its upload completes).

A large study's finished trials are merged, 100 at a time, into ``compacted-<id>.parquet`` files
beside the trial files (``compact_trial_files``): the directory stays one Parquet dataset every
reader reads whole, and a reader opens ~1 file per 100 trials instead of one per trial.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from incsweep.core.constraints import Constraint, format_constraints, met, violations
from incsweep.core.errors import DataFormatError
from incsweep.core.layout import resolve_storage
from incsweep.core.memory_report import MemoryReport
from incsweep.core.provenance import code_version
from incsweep.core.vocabulary import ACCURACY_METRICS, CPU_TIME, FROM_CACHE, TEST_METRICS, WALL_TIME

if TYPE_CHECKING:  # the engine (torch) only for annotations: analysis and the CLI's help stay torch-free
    from incsweep.incremental.run import RunResult, TaskResult

from incsweep.core.schema import (
    FINAL_STATUSES,
    PARTITION_KEYS,
    RESULTS_SCHEMA,
    TASK_STATUS,
    file_schema,
    param_column,
    stat_column,
)

__all__ = ["task_row", "final_row", "rows_from_run", "trial_path", "write_trial_file", "read_trial_file",
           "list_trial_files", "read_study_rows", "StudyRows", "compact_trial_files", "compact_leftovers",
           "tidy_compacted", "COMPACT_EVERY", "utcnow"]

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def trial_path(root: str, study: str, method: str, trial_id: str) -> str:
    """``<root>/results/study=<study>/method=<method>/<trial_id>.parquet`` (root: path inside the fs)."""
    return f"{root}/results/study={study}/method={method}/{trial_id}.parquet"


def task_row(result: TaskResult | Mapping[str, Any], *, study: str, trial_id: str, method: str, benchmark: str,
             seed: int, config_json: str, params: Mapping[str, Any], started_at: datetime,
             finished_at: datetime | None = None, version: str | None = None,
             n_tasks: int | None = None, from_cache: bool = False, trial_number: int | None = None) -> dict[str, Any]:
    """The row of one finished task (``result``: a TaskResult or its ``as_dict()``). ``n_tasks``: the
    tasks the run covers when it stops early by design (protocol first_task: 1); None: the benchmark's.
    ``from_cache``: the task was reused from the prefix cache, not computed by this trial.
    ``trial_number``: the study's Optuna number of the trial (None outside a study)."""
    r = dict(result) if isinstance(result, Mapping) else result.as_dict()
    covered = int(r["n_tasks"]) if n_tasks is None else int(n_tasks)
    memory = MemoryReport(**{k: int(v) for k, v in r["memory"].items() if k not in MemoryReport.DERIVED})
    row: dict[str, Any] = {
        "study": study, "trial_id": trial_id, "trial_number": trial_number, "method": method, "benchmark": benchmark,
        "scenario": r["scenario"], "task": int(r["task"]), "n_tasks": covered,
        "tasks_done": int(r["task"]) + 1, "is_final": False,
        "complete": int(r["task"]) + 1 == covered, "status": TASK_STATUS, "error": None,
        **{name: r["val"][name] for name in ACCURACY_METRICS},
        **{test_name: r["test"][name] for name, test_name in zip(ACCURACY_METRICS, TEST_METRICS)},
        "acc_row": [float(a) for a in r["acc_row"]], "val_acc_row": [float(a) for a in r["val_acc_row"]],
        **memory.as_dict(),
        WALL_TIME: float(r[WALL_TIME]), CPU_TIME: float(r.get(CPU_TIME, math.nan)), FROM_CACHE: bool(from_cache),
        "seed": int(seed), "config_json": config_json,
        "code_version": version if version is not None else code_version(),
        "started_at": started_at, "finished_at": finished_at or utcnow(),
    }
    row.update({param_column(k): v for k, v in params.items()})
    row.update({stat_column(k): float(v) for k, v in (r.get("method_stats") or {}).items()})
    return judge_row(row, ())  # no constraint: feasible; a study's sink judges its rows by its own


def final_row(task_rows: Sequence[Mapping[str, Any]], *, status: str, error: str | None = None,
              template: Mapping[str, Any] | None = None, finished_at: datetime | None = None,
              wall_s: float | None = None) -> dict[str, Any]:
    """The final row of a trial: the last task's metrics (or ``template`` identity columns and NaN
    metrics when no task finished) with the terminal ``status``."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"status={status!r}; allowed: {FINAL_STATUSES}")
    if task_rows:
        last = max(task_rows, key=lambda row: row["task"])
        row = dict(last)
        row[WALL_TIME] = float(sum(r[WALL_TIME] for r in task_rows)) if wall_s is None else wall_s
        row[CPU_TIME] = float(sum(r.get(CPU_TIME, math.nan) for r in task_rows))
    else:
        if template is None:
            raise ValueError("final_row needs task rows or a template")
        row = {name: None for name in RESULTS_SCHEMA.names}
        row.update({k: v for k, v in template.items()})
        row.update(task=-1, tasks_done=0, complete=False, wall_s=wall_s or 0.0)
        for name in ACCURACY_METRICS + TEST_METRICS:
            row[name] = math.nan
    row.update(is_final=True, status=status, error=error, finished_at=finished_at or utcnow())
    row[FROM_CACHE] = None
    row["complete"] = bool(row.get("tasks_done") == row.get("n_tasks")) and status == "complete"
    return row


def judge_row(row: Mapping[str, Any], constraints: Sequence[Constraint]) -> dict[str, Any]:
    """``row`` with the study's ``constraints``, its ``feasible`` verdict and largest ``violation``."""
    found = violations(constraints, row)
    worst = max(found, key=lambda v: math.inf if math.isnan(v) else v) if found else None
    return {**row, "constraints": format_constraints(constraints), "feasible": all(met(v) for v in found),
            "violation": worst}


def rows_from_run(result: RunResult, *, study: str, trial_id: str, params: Mapping[str, Any] | None = None,
                  status: str | None = None, started_at: datetime | None = None) -> list[dict[str, Any]]:
    """Rows of a finished ``incremental.run`` (outside Ray): one per task plus the final row."""
    started = started_at or utcnow()
    cfg = result.config
    rows = [task_row(t, study=study, trial_id=trial_id, method=cfg.method, benchmark=cfg.benchmark.name,
                     seed=cfg.seed, config_json=cfg.to_json(), params=params or {}, started_at=started)
            for t in result.tasks]
    final_status = status or ("complete" if result.complete else "pruned")
    return rows + [final_row(rows, status=final_status)]


def _schema_for(rows: Sequence[Mapping[str, Any]]) -> pa.Schema:
    schema = RESULTS_SCHEMA
    extra = sorted({k for row in rows for k in row if k not in RESULTS_SCHEMA.names})
    for name in extra:
        values = [row.get(name) for row in rows if row.get(name) is not None]
        kind = pa.array(values).type if values else pa.null()
        if pa.types.is_integer(kind):
            kind = pa.int64()
        schema = schema.append(pa.field(name, kind))
    return schema


def write_trial_file(storage: str, rows: Sequence[Mapping[str, Any]], schema: pa.Schema | None = None) -> str:
    """Atomically (re)write one trial's file with ``rows`` (sorted: tasks, then the final row).

    ``schema``: the study's file schema (``study_file_schema``); columns the rows hold beyond it
    (an undeclared diagnostic) are appended. None: inferred from the rows."""
    if not rows:
        raise ValueError("write_trial_file: no rows")
    first = rows[0]
    fs, root = resolve_storage(storage)
    path = trial_path(root, first["study"], first["method"], first["trial_id"])
    ordered = sorted(rows, key=lambda r: (bool(r["is_final"]), r["task"]))
    schema = _with_extras(schema, ordered) if schema is not None else file_schema(_schema_for(ordered))
    table = pa.Table.from_pylist([{f.name: _as_column(row.get(f.name), f.type) for f in schema} for row in ordered],
                                 schema=schema)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.{first['trial_id']}.{uuid.uuid4().hex}.tmp"
    with fs.open_output_stream(tmp) as sink:
        pq.write_table(table, sink)
    if isinstance(fs, pafs.LocalFileSystem):
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    else:
        fs.move(tmp, path)
    return path


# An object store's reader learns an object's size, then reads ranges of it; a writer replacing the
# object in between (a trial rewrites its file after every task) tears the read. Measured against a
# local S3 (moto) with a file rewritten back to back: 73 torn reads in 456. A new read sees one whole
# version, so torn reads are retried, with back-off summing to ~2.5 s, before a file counts as corrupt.
_READ_ATTEMPTS = 8
_READ_BACKOFF_S = 0.02


def _as_column(value: Any, kind: pa.DataType) -> Any:
    """A parameter of mixed-type choices is a string column: other values are stored as JSON."""
    if value is not None and pa.types.is_string(kind) and not isinstance(value, str):
        return json.dumps(value)
    return value


def _with_extras(schema: pa.Schema, rows: Sequence[Mapping[str, Any]]) -> pa.Schema:
    known = set(schema.names) | set(PARTITION_KEYS)
    # typing the rows' columns is only needed for undeclared ones (rare); typing them all on every
    # write was ~30% of the sink's (py-spy of benchmarks/study_scale.py), on the loop each next task waits for
    if all(k in known for row in rows for k in row):
        return schema
    extra = [f for f in _schema_for(rows) if f.name not in known]
    if extra:
        log.warning("results columns %s are not in the study's schema (a method diagnostic not in its "
                    "task_stat_names?); appended to this trial's file only", [f.name for f in extra])
    return pa.schema([*schema, *extra])


def _read_rows(fs: pafs.FileSystem, path: str, keys: Mapping[str, str]) -> list[dict[str, Any]]:
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    with fs.open_input_file(path) as f:
        rows = pq.read_table(f, partitioning=None).to_pylist()
    return [{**keys, **row} for row in rows]  # partition keys from the path (older files hold them too)


def read_trial_file(storage: str, study: str, method: str, trial_id: str, *,
                    compacted: bool = True) -> list[dict[str, Any]]:
    """The rows stored for a trial ([] when it has none yet): its own file, else (``compacted``)
    the compacted file holding it. Reading many trials: ``read_study_rows``, which reads each file once."""
    fs, root = resolve_storage(storage)
    path = trial_path(root, study, method, trial_id)
    rows = _read_trial_rows(fs, path, study, method)
    if rows or not compacted:
        return rows
    for m, name, part in _method_files(fs, root, study):
        if m == method and name.startswith(COMPACTED_PREFIX) and trial_id in _part_trials(fs, part):
            return [r for r in _read_rows(fs, part, {"study": study, "method": method}) if r["trial_id"] == trial_id]
    return []


def _read_trial_rows(fs: pafs.FileSystem, path: str, study: str, method: str) -> list[dict[str, Any]]:
    # os.replace swaps local files atomically and an open file keeps its version: no retries there.
    retries = 0 if isinstance(fs, pafs.LocalFileSystem) else _READ_ATTEMPTS - 1
    for attempt in range(retries):
        try:
            return _read_rows(fs, path, {"study": study, "method": method})
        except (OSError, pa.ArrowInvalid):
            log.debug("torn read of %s (attempt %d), retrying", path, attempt + 1)
            time.sleep(_READ_BACKOFF_S * 2**attempt)
    try:
        return _read_rows(fs, path, {"study": study, "method": method})
    except (pa.ArrowInvalid, KeyError, TypeError) as exc:
        # a damaged file must not crash status or resume; nothing is rewritten until it is moved away
        raise _unreadable(path, type(exc).__name__) from None


def set_aside(storage: str, study: str, method: str, trial_id: str) -> str:
    """Rename a damaged trial file to a hidden name beside it (no reader lists it; nothing is deleted)."""
    fs, root = resolve_storage(storage)
    path = trial_path(root, study, method, trial_id)
    aside = f"{path.rsplit('/', 1)[0]}/.{trial_id}.damaged-{uuid.uuid4().hex[:8]}.parquet"
    fs.move(path, aside)
    return aside


def _method_files(fs: pafs.FileSystem, root: str, study: str) -> list[tuple[str, str, str]]:
    """(method, file name without .parquet, path) of every visible results file of ``study``."""
    base = f"{root}/results/study={study}"
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return []
    found = []
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True)):
        name = info.path.rsplit("/", 1)[-1]
        parent = info.path.rsplit("/", 2)[-2]
        if (info.type == pafs.FileType.File and name.endswith(".parquet") and parent.startswith("method=")
                and not name.startswith(".")):  # hidden: the sink's temporaries and damaged files set aside
            found.append((parent[len("method="):], name[: -len(".parquet")], info.path))
    return sorted(found)


def _part_trials(fs: pafs.FileSystem, path: str) -> list[str]:
    """The trial ids a compacted file holds, from its footer (no row is read)."""
    with fs.open_input_file(path) as f:
        meta = pq.read_schema(f).metadata or {}
    return list(json.loads(meta.get(COMPACTED_TRIALS_KEY, b"[]")))


def list_trial_files(storage: str, study: str) -> Iterable[tuple[str, str]]:
    """(method, trial_id) of every trial of ``study`` under ``storage`` with stored rows: its own
    file, or a compacted file holding it (``compact_trial_files``)."""
    fs, root = resolve_storage(storage)
    found: set[tuple[str, str]] = set()
    for method, name, path in _method_files(fs, root, study):
        if name.startswith(COMPACTED_PREFIX):
            found.update((method, t) for t in _part_trials(fs, path))
        else:
            found.add((method, name))
    return sorted(found)


@dataclass
class StudyRows:
    """Every stored row of a study, read once: ``table`` (each trial from one file, its own file
    first), and the trial files that could not be read (``(method, trial_id)`` -> why)."""

    table: pa.Table | None
    damaged: dict[tuple[str, str], DataFormatError]

    def by_trial(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        """(method, trial_id) -> its rows, as ``read_trial_file`` gives them."""
        out: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for row in self.table.to_pylist() if self.table is not None else []:
            out.setdefault((row["method"], row["trial_id"]), []).append(row)
        return out


# Files read at once by read_study_rows: Parquet decoding releases the GIL, so a pool overlaps one
# file's decoding with the next one's opening. The 199 files of a 10,000-trial study (35 MB of rows)
# took 1.21 s one after another and 0.45 s with 4 threads on this 2-core machine, measured while a study
# ran beside them (benchmarks/results/study_scale.txt).
READ_THREADS = 4


def read_study_rows(storage: str, study: str, skip: Sequence[str] = ()) -> StudyRows:
    """All rows of ``study``, each file read once (what status, resume and confirm read; one file
    per trial read trial by trial would cost ~3 ms a file: benchmarks/results/analysis_scale.txt).
    ``skip``: columns not read (``study status`` skips ``config_json``, three quarters of the bytes).
    A trial file that vanished while this read ran was compacted meanwhile: read again."""
    from concurrent.futures import ThreadPoolExecutor

    fs, root = resolve_storage(storage)

    def read(f: tuple[str, str, str]) -> pa.Table | Exception:
        method, _, path = f
        try:
            return _read_table(fs, path, {"study": study, "method": method}, skip)
        except (FileNotFoundError, DataFormatError) as exc:
            return exc

    for _ in range(3):
        tables: list[pa.Table] = []
        damaged: dict[tuple[str, str], DataFormatError] = {}
        seen: set[str] = set()
        # own files first: after a kill between a compaction's rename and its deletions a trial is in
        # both, with the same rows
        files = sorted(_method_files(fs, root, study), key=lambda f: f[1].startswith(COMPACTED_PREFIX))
        with ThreadPoolExecutor(READ_THREADS) as pool:
            results = list(pool.map(read, files))
        vanished = any(isinstance(r, FileNotFoundError) for r in results)
        for (method, name, _), table in zip(files, results):
            compacted = name.startswith(COMPACTED_PREFIX)
            if isinstance(table, FileNotFoundError):
                continue
            if isinstance(table, DataFormatError):
                if compacted:
                    raise table
                damaged[(method, name)] = table
                continue
            assert isinstance(table, pa.Table)
            ids = table["trial_id"].to_pylist()
            if compacted and not seen.isdisjoint(ids):  # rare: the leftovers of a kill mid-compaction
                keep = pc.invert(pc.is_in(table["trial_id"], value_set=pa.array(sorted(seen), pa.string())))
                table = table.filter(keep)
                ids = table["trial_id"].to_pylist()
            seen.update(ids)
            tables.append(table)
        if not vanished:
            break
    table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    return StudyRows(table=table, damaged=damaged)


def _unreadable(path: str, why: str) -> DataFormatError:
    return DataFormatError(f"results file {path} is not readable Parquet of incsweep's schema ({why}); move it "
                           "out of the study directory to go on (that trial's rows are lost, the rest stay)")


def _read_table(fs: pafs.FileSystem, path: str, keys: Mapping[str, str], skip: Sequence[str] = ()) -> pa.Table:
    """One results file as a table with its partition keys as columns, less the ``skip`` columns
    (FileNotFoundError: gone; DataFormatError: not incsweep's Parquet)."""
    try:
        with fs.open_input_file(path) as f:
            if skip:
                names = pq.ParquetFile(f).schema_arrow.names
                table = pq.read_table(f, partitioning=None, columns=[c for c in names if c not in skip])
            else:
                table = pq.read_table(f, partitioning=None)
    except FileNotFoundError:
        raise
    except (OSError, pa.ArrowInvalid) as exc:
        if fs.get_file_info(path).type == pafs.FileType.NotFound:
            raise FileNotFoundError(path) from None
        raise _unreadable(path, type(exc).__name__) from None
    if "trial_id" not in table.column_names:
        raise _unreadable(path, "no trial_id")
    for key, value in keys.items():  # partition keys from the path (older files hold them too)
        if key in table.column_names:
            table = table.drop_columns([key])
        table = table.append_column(key, pa.array([value] * table.num_rows, pa.string()))
    return table


# A study's trials are compacted in groups of this many finished trials: one file per trial costs a
# reader ~3 ms a file (benchmarks/results/analysis_scale.txt), so 10,000 trials would take 30 s to
# read; in groups of 100 a 10,000-trial study is ~100 files plus, while a driver runs, at most 99 of
# running or recent trials (it compacts those when it ends: compact_leftovers), and a study under 100
# trials keeps one file per trial (benchmarks/study_scale.py).
COMPACT_EVERY = 100
COMPACTED_PREFIX = "compacted-"
COMPACTED_TRIALS_KEY = b"incsweep.compacted_trials"


def compact_trial_files(storage: str, study: str, trials: Sequence[tuple[str, str]]) -> list[str]:
    """Merge finished trials' own files into one compacted file per method, then remove them.

    The compacted file appears whole (a temporary name, then a rename), listing its trials in its
    footer; only then are the trials' own files removed. A kill between the two leaves a trial in
    both (the same rows): every reader counts it once, and ``tidy_compacted`` removes the leftovers
    at the next start. Trials without a final row (still running) are left alone. Returns the
    compacted files written."""
    fs, root = resolve_storage(storage)
    by_method: dict[str, list[str]] = {}
    for method, trial_id in trials:
        by_method.setdefault(method, []).append(trial_id)
    written = []
    for method, ids in sorted(by_method.items()):
        tables, done = [], []
        for trial_id in sorted(set(ids)):
            path = trial_path(root, study, method, trial_id)
            try:
                with fs.open_input_file(path) as f:
                    table = pq.read_table(f, partitioning=None)
            except (OSError, pa.ArrowInvalid):
                continue  # gone or damaged: left where it is, for the readers to report
            if "is_final" not in table.column_names or not any(table["is_final"].to_pylist()):
                continue
            tables.append(table)
            done.append(trial_id)
        if len(tables) < 2:
            continue
        merged = pa.concat_tables(tables, promote_options="permissive")
        meta = {**(tables[0].schema.metadata or {}), COMPACTED_TRIALS_KEY: json.dumps(done).encode()}
        merged = merged.replace_schema_metadata(meta)
        parent = trial_path(root, study, method, "x").rsplit("/", 1)[0]
        name = f"{COMPACTED_PREFIX}{uuid.uuid4().hex[:12]}"
        tmp, path = f"{parent}/.{name}.tmp", f"{parent}/{name}.parquet"
        with fs.open_output_stream(tmp) as sink:
            pq.write_table(merged, sink)
        if isinstance(fs, pafs.LocalFileSystem):
            os.replace(tmp, path)
        else:
            fs.move(tmp, path)
        for trial_id in done:
            fs.delete_file(trial_path(root, study, method, trial_id))
        written.append(path)
    return written


def compact_leftovers(storage: str, study: str) -> list[str]:
    """At a driver's end, merge the finished trials' own files that a compacting study still has: the
    fewer than COMPACT_EVERY this driver finished last, and those a killed driver finished but never
    compacted (a 10,000-trial study killed once kept ~100 of each: 296 files, status 1.8-2.0 s and
    analyze 5.6-6.3 s, against 196 files, 1.4-1.6 s and 5.2-5.4 s compacted; benchmarks/results/
    study_scale.txt). A study that never reached COMPACT_EVERY finished trials (no compacted file)
    keeps one file per trial. Returns the compacted files written."""
    fs, root = resolve_storage(storage)

    def own_files() -> tuple[list[tuple[str, str]], int]:
        files = _method_files(fs, root, study)
        return [(m, name) for m, name, _ in files if not name.startswith(COMPACTED_PREFIX)], len(files)

    own, total = own_files()
    if not own or len(own) == total:
        return []
    if tidy_compacted(storage, study):  # an interrupted compaction's trials must not be merged twice
        own, _ = own_files()
    return compact_trial_files(storage, study, own)


def tidy_compacted(storage: str, study: str) -> int:
    """Remove trials' own files that a compacted file already holds (a kill between a compaction's
    rename and its deletions); returns how many. Run by the driver before it writes anything."""
    fs, root = resolve_storage(storage)
    files = _method_files(fs, root, study)
    held = {(method, t) for method, name, path in files if name.startswith(COMPACTED_PREFIX)
            for t in _part_trials(fs, path)}
    removed = 0
    for method, name, path in files:
        if not name.startswith(COMPACTED_PREFIX) and (method, name) in held:
            fs.delete_file(path)
            removed += 1
    return removed


def config_params(config_json: str) -> dict[str, Any]:
    """The resolved config of a row, decoded (convenience for readers)."""
    return json.loads(config_json)


def migrate_trial_files(storage: str, study: str, schema: pa.Schema, *, dry_run: bool = False) -> tuple[int, int]:
    """Rewrite every trial file of ``study`` whose schema is not ``schema`` (the study's one file
    schema) in that schema: files of the earlier layout held the partition keys as columns and only
    their own method's parameters, which standard Parquet readers cannot combine. Rows are
    read and written whole (columns beyond the schema are kept), one file at a time, atomically. A
    compacted file in an older schema is split back into its trials' own files (rewritten), then
    removed; the next compaction merges them again. Returns (rewritten, already current)."""
    fs, root = resolve_storage(storage)
    rewritten = current = 0
    for method, name, path in _method_files(fs, root, study):
        with fs.open_input_file(path) as fh:
            stored = pq.read_schema(fh)
        if stored.names[: len(schema)] == schema.names and all(
                stored.field(n).type == schema.field(n).type for n in schema.names):
            current += 1
            continue
        rewritten += 1
        if dry_run:
            continue
        if not name.startswith(COMPACTED_PREFIX):
            write_trial_file(storage, read_trial_file(storage, study, method, name, compacted=False), schema)
            continue
        by_trial: dict[str, list[dict[str, Any]]] = {}
        for row in _read_rows(fs, path, {"study": study, "method": method}):
            by_trial.setdefault(row["trial_id"], []).append(row)
        for rows in by_trial.values():  # own files first: until the compacted file goes, they win
            write_trial_file(storage, rows, schema)
        fs.delete_file(path)
    return rewritten, current
