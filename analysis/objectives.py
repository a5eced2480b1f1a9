"""Objectives: which result columns to optimise and in which direction (``avg_acc:max,total_mb:min``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from incsweep.incremental.errors import ConfigError

__all__ = ["Objective", "parse_objectives", "split_column", "DEFAULT_OBJECTIVES", "SPLITS", "MEMORY_COLUMN"]

DEFAULT_OBJECTIVES = "avg_acc:max,total_mb:min"  # the study's question: accuracy against memory
SPLITS = ("val", "test")
SENSES = ("max", "min")
MEMORY_COLUMN = "total_mb"  # what MEMO's memory-aware measures integrate over (docs/protocols.md)
# Metrics the schema stores once per split: validation unprefixed, test as test_<name> (study/schema.py).
_SPLIT_METRICS = ("avg_acc", "last_acc", "forgetting", "bwt")


@dataclass(frozen=True)
class Objective:
    """One column to optimise; ``sense`` is ``max`` or ``min``."""

    column: str
    sense: str = "max"

    def __post_init__(self) -> None:
        if self.sense not in SENSES:
            raise ConfigError(f"objective {self.column}: direction {self.sense!r} is not allowed; use max or min")
        if not self.column:
            raise ConfigError("objective: empty column name")

    @property
    def sign(self) -> float:
        """Multiplier that turns this objective into one to minimise."""
        return -1.0 if self.sense == "max" else 1.0

    def __str__(self) -> str:
        return f"{self.column}:{self.sense}"


def split_column(name: str, split: str) -> str:
    """The column of metric ``name`` on ``split`` (``avg_acc`` -> ``test_avg_acc`` for test)."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r} is not allowed; use one of {list(SPLITS)}")
    if split == "test" and name in _SPLIT_METRICS:
        return f"test_{name}"
    return name


def parse_objectives(text: str | Sequence[str | Objective], split: str = "val") -> tuple[Objective, ...]:
    """``"avg_acc:max,total_mb:min"`` (or a list of such items) -> Objectives, metric names mapped to ``split``."""
    items: Iterable[str | Objective] = text.split(",") if isinstance(text, str) else text
    out: list[Objective] = []
    for item in items:
        if isinstance(item, Objective):
            out.append(Objective(split_column(item.column, split), item.sense))
            continue
        name, _, sense = item.strip().partition(":")
        if not name.strip():
            raise ConfigError(f"objectives={text!r}: empty item; write COLUMN:max or COLUMN:min, comma-separated")
        out.append(Objective(split_column(name.strip(), split), sense.strip() or "max"))
    if not out:
        raise ConfigError("objectives: none given; write e.g. avg_acc:max,total_mb:min")
    columns = [o.column for o in out]
    if len(set(columns)) != len(columns):
        raise ConfigError(f"objectives={text!r}: a column appears twice")
    return tuple(out)


def as_minimisation(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """(n, d) objective values -> (n, d) values where smaller is better in every column."""
    signs = np.array([o.sign for o in objectives], dtype=np.float64)
    return np.asarray(values, dtype=np.float64) * signs
