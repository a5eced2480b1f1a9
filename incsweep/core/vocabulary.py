"""The result vocabulary: every metric and memory name a run reports, derived from the engine's
``Metrics`` and ``MemoryReport`` dataclasses. The Parquet schema (incsweep/core/schema.py), the study's
objective and constraint check (study/spec.py), the trial reports (trainables/trial.py) and the
export (analysis/export.py) are built from these tuples; adding a field to either dataclass adds it
everywhere, and tests/core/test_vocabulary.py fails when a name is spelled out anywhere else.

Torch-free: analysis and the CLI import it without the engine.
"""

from __future__ import annotations

import dataclasses

from incsweep.core.errors import ConfigError
from incsweep.core.memory_report import MemoryReport
from incsweep.core.metrics import Metrics

__all__ = ["ACCURACY_METRICS", "TEST_PREFIX", "TEST_METRICS", "MEMORY_COLUMNS", "WALL_TIME", "CPU_TIME", "FROM_CACHE",
           "OPTIMISABLE", "REPORTED", "MEMORY_METRIC", "AVG_ACC", "LAST_ACC", "SPLITS", "split_column", "LABELS", "label"]

# Accuracy metrics, once per split: validation unprefixed (what studies optimise), test prefixed
# (recorded, never optimised: docs/protocols.md, "Validation and test").
ACCURACY_METRICS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Metrics))
TEST_PREFIX = "test_"
SPLITS = ("val", "test")
TEST_METRICS: tuple[str, ...] = tuple(TEST_PREFIX + name for name in ACCURACY_METRICS)
# name -> Python type (int or float), in MemoryReport's order
MEMORY_COLUMNS: dict[str, type] = MemoryReport.columns()
# The names code reads by meaning (each a field of Metrics or MemoryReport; tests/core/test_vocabulary.py).
AVG_ACC = "avg_acc"  # average incremental accuracy: the study's default accuracy objective
LAST_ACC = "last_acc"  # accuracy on all seen classes after the last task so far
WALL_TIME = "wall_s"  # seconds of the task (a run's final row: the whole run)
# CPU seconds of the process running the task, all its threads (a run's final row: the whole run):
# a study's compute, robust to other load on the machine (benchmarks/study_efficiency.py sums it).
CPU_TIME = "cpu_s"
# A results row whose task was reused from the prefix cache: its wall_s and cpu_s were spent by the
# trial that stored the prefix, not by this one (null on final rows).
FROM_CACHE = "from_cache"
MEMORY_METRIC = "total_mb"  # the memory axis of every accuracy/memory question (docs/protocols.md)
# What a trial reports on every task that a study may optimise or constrain.
OPTIMISABLE: tuple[str, ...] = ACCURACY_METRICS + tuple(MEMORY_COLUMNS) + (WALL_TIME, CPU_TIME)
# Every scalar result of a task, both splits (the export's metric columns).
REPORTED: tuple[str, ...] = ACCURACY_METRICS + TEST_METRICS + tuple(MEMORY_COLUMNS) + (WALL_TIME, CPU_TIME)


def split_column(name: str, split: str) -> str:
    """The column of metric ``name`` on ``split`` (``avg_acc`` -> ``test_avg_acc`` for test); names
    that are not accuracy metrics have one column for both splits."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is not allowed; use one of {list(SPLITS)}")
    return TEST_PREFIX + name if split == "test" and name in ACCURACY_METRICS else name


# What people read for each name (axis labels, table headings): from the dataclasses' field metadata.
LABELS: dict[str, str] = {**{f.name: f.metadata["label"] for f in dataclasses.fields(Metrics)},
                          **MemoryReport.labels(), WALL_TIME: "wall time (s)", CPU_TIME: "CPU time (s)"}
_SPLIT_NAMES = {"val": "validation", "test": "test"}


def label(column: str) -> str:
    """The human label of a result column: ``test_avg_acc`` -> "average incremental accuracy (test
    split)", ``avg_acc`` -> "... (validation split)", ``total_mb`` -> "total memory (MB, 2^20 bytes)";
    ``param_<name>`` -> its parameter name; anything else as it is."""
    if column.startswith(TEST_PREFIX) and column[len(TEST_PREFIX):] in ACCURACY_METRICS:
        return f"{LABELS[column[len(TEST_PREFIX):]]} ({_SPLIT_NAMES['test']} split)"
    if column in ACCURACY_METRICS:
        return f"{LABELS[column]} ({_SPLIT_NAMES['val']} split)"
    if column.startswith("param_"):
        return column[len("param_"):]
    return LABELS.get(column, column)
