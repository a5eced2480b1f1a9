"""The Parquet results schema: the one contract between studies (writers) and analysis (readers).

A study writes one Parquet file per trial under
``<storage>/results/study=<study>/method=<method>/<trial_id>.parquet`` (hive partitioning). The
partition keys ``study`` and ``method`` live in the path only (PARTITION_KEYS), so pandas, pyarrow,
DuckDB and polars read the directory with their defaults; ``analysis.load_results`` and the sink
add them back from the path (files of studies before this layout also carry them inside).
Every file of a study has the same schema (``study_file_schema``): every searched parameter of
every method of the study and every method's declared diagnostics, typed nulls where a method
lacks one, so readers that take the first file's schema lose nothing.

Rows: one per finished task (``is_final`` False) plus one final row per trial (``is_final`` True)
that repeats the last task's metrics and carries the trial's terminal ``status``.
Searched hyperparameters get one extra column each, named ``param_<name>`` (their Python type), and
a method's per-task diagnostics (``Method.task_stats``) one float column each, named ``stat_<name>``
(BMKP: ``stat_working_acc``, ``stat_knowledge_acc``).
"""

from __future__ import annotations

import pyarrow as pa

from incsweep.core.vocabulary import ACCURACY_METRICS, CPU_TIME, FROM_CACHE, MEMORY_COLUMNS, TEST_METRICS, WALL_TIME

__all__ = ["RESULTS_SCHEMA", "PARTITION_KEYS", "study_file_schema", "file_schema", "PARAM_PREFIX", "STAT_PREFIX",
           "FINAL_STATUSES", "TASK_STATUS", "param_column", "stat_column"]

PARAM_PREFIX = "param_"
STAT_PREFIX = "stat_"
TASK_STATUS = "task_done"
# complete: all tasks ran; pruned: stopped early by the scheduler (never on a Pareto front);
# error: the trial raised (text in `error`); diverged: a loss became NaN/inf.
FINAL_STATUSES = ("complete", "pruned", "error", "diverged")

_TS = pa.timestamp("us", tz="UTC")
_ARROW = {int: pa.int64(), float: pa.float64()}  # MemoryReport field types

RESULTS_SCHEMA = pa.schema(
    [
        pa.field("study", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        # Optuna's number of the trial: the order the study proposed it (0-based; a continued trial keeps
        # its number). Null in rows written outside a study, or by incsweep before it was recorded.
        pa.field("trial_number", pa.int64()),
        pa.field("method", pa.string(), nullable=False),
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("scenario", pa.string(), nullable=False),  # "class_il" | "task_il"
        pa.field("task", pa.int32(), nullable=False),  # 0-based index of the task this row is after
        pa.field("n_tasks", pa.int32(), nullable=False),
        pa.field("tasks_done", pa.int32(), nullable=False),
        pa.field("is_final", pa.bool_(), nullable=False),
        pa.field("complete", pa.bool_(), nullable=False),  # tasks_done == n_tasks
        pa.field("status", pa.string(), nullable=False),  # TASK_STATUS or one of FINAL_STATUSES
        pa.field("error", pa.string()),
        # The study's constraints ("total_mb <= 1.2; ..."; "" for none), whether this row meets them by
        # Optuna's rule (every violation <= 0) and the largest violation (null: no constraint):
        # incsweep/core/constraints.py. The analysis keeps infeasible runs off every front.
        pa.field("constraints", pa.string()),
        pa.field("feasible", pa.bool_()),
        pa.field("violation", pa.float64()),
        # validation-split metrics (the study's objectives; NaN when the run has no val split), then the
        # test-split ones (reported, never optimised): incsweep/core/vocabulary.py
        *(pa.field(name, pa.float64()) for name in ACCURACY_METRICS + TEST_METRICS),
        pa.field("acc_row", pa.list_(pa.float64())),  # test acc[task][0..task]
        pa.field("val_acc_row", pa.list_(pa.float64())),
        # MemoryReport's fields and totals (total_mb = total_bytes / 2**20; train_state_bytes: training only)
        *(pa.field(name, _ARROW[kind]) for name, kind in MEMORY_COLUMNS.items()),
        pa.field(WALL_TIME, pa.float64()),  # wall time of this task (final row: whole run)
        pa.field(CPU_TIME, pa.float64()),  # CPU seconds of this task (final row: whole run); NaN: not measured
        pa.field(FROM_CACHE, pa.bool_()),  # task reused from the prefix cache (its times were another trial's); final: null
        pa.field("seed", pa.int64()),
        pa.field("config_json", pa.string()),  # the full resolved RunConfig as JSON
        pa.field("code_version", pa.string()),
        pa.field("started_at", _TS),
        pa.field("finished_at", _TS),
    ]
)


PARTITION_KEYS = ("study", "method")  # hive path segments, not columns inside the files


def file_schema(schema: pa.Schema) -> pa.Schema:
    """``schema`` as stored in a file: without the partition keys."""
    return pa.schema([f for f in schema if f.name not in PARTITION_KEYS])


def study_file_schema(params: dict[str, pa.DataType], stats: tuple[str, ...] | list[str]) -> pa.Schema:
    """The one file schema of a study: RESULTS_SCHEMA's columns (less the partition keys), then
    ``param_<name>`` per searched parameter (``params``: name -> type) and ``stat_<name>`` per
    declared method diagnostic, both sorted."""
    extra = [pa.field(param_column(n), t) for n, t in sorted(params.items())]
    extra += [pa.field(stat_column(n), pa.float64()) for n in sorted(set(stats))]
    return pa.schema([*file_schema(RESULTS_SCHEMA), *extra])


def param_column(name: str) -> str:
    """Column name for a searched hyperparameter."""
    return PARAM_PREFIX + name


def stat_column(name: str) -> str:
    """Column name for a method's per-task diagnostic (``Method.task_stats``)."""
    return STAT_PREFIX + name
