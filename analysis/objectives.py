"""Objectives: which result columns to optimise and in which direction (``avg_acc:max,total_mb:min``).

The one Objective type of incsweep: the study spec (study/spec.py), its searcher and scheduler, the
analysis and the benchmarks all parse and hold objectives with it. The direction is always written
out: a default would silently maximise memory for ``total_mb``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from incsweep.core.errors import ConfigError
from incsweep.core.vocabulary import AVG_ACC, MEMORY_METRIC, SPLITS, split_column

__all__ = ["Objective", "parse_objectives", "split_column", "as_minimisation", "DEFAULT_OBJECTIVES", "SPLITS",
           "SENSES", "MEMORY_COLUMN"]

SENSES = ("max", "min")
MEMORY_COLUMN = MEMORY_METRIC  # what MEMO's memory-aware measures integrate over (docs/protocols.md)
DEFAULT_OBJECTIVES = f"{AVG_ACC}:max,{MEMORY_COLUMN}:min"  # the study's question: accuracy against memory


@dataclass(frozen=True)
class Objective:
    """One column to optimise; ``sense`` is ``max`` or ``min``."""

    column: str
    sense: str

    def __post_init__(self) -> None:
        if not self.column:
            raise ConfigError("objective: empty column name")
        if self.sense not in SENSES:
            raise ConfigError(f"objective {self.column}: direction {self.sense!r} is not allowed; use max or min")

    @classmethod
    def parse(cls, text: str) -> "Objective":
        """``column:max`` or ``column:min``; the mode is required."""
        column, colon, sense = str(text).partition(":")
        column, sense = column.strip(), sense.strip()
        if not column:
            raise ConfigError(f"objectives: empty item in {str(text)!r}; write COLUMN:max or COLUMN:min")
        if not colon or not sense:
            raise ConfigError(f"objective {column!r} has no mode; write {column}:max or {column}:min")
        if sense not in SENSES:
            raise ConfigError(f"objective {str(text)!r}: direction {sense!r} is not allowed; use max or min")
        return cls(column, sense)

    @property
    def sign(self) -> float:
        """Multiplier that turns this objective into one to minimise."""
        return -1.0 if self.sense == "max" else 1.0

    def __str__(self) -> str:
        return f"{self.column}:{self.sense}"


def _items(objectives: Any) -> list[str | Objective]:
    if isinstance(objectives, str):
        return [o for o in objectives.split(",") if o.strip()] or [objectives]
    if isinstance(objectives, Mapping):
        items: list[str | Objective] = []
        for column, sense in objectives.items():
            if sense not in SENSES:
                raise ConfigError(f"objectives: {column}: {sense!r} is not a mode; allowed: max or min")
            items.append(Objective(str(column), sense))
        return items
    if isinstance(objectives, (list, tuple)) and all(isinstance(o, (str, Objective)) for o in objectives):
        return list(objectives)
    raise ConfigError(f"objectives: {objectives!r} is not allowed; give a list like [avg_acc:max, total_mb:min] "
                      "or a mapping like {avg_acc: max, total_mb: min}")


def parse_objectives(objectives: str | Sequence[str | Objective] | Mapping[str, str],
                     split: str = "val") -> tuple[Objective, ...]:
    """``"avg_acc:max,total_mb:min"``, a list of such items or Objectives, or ``{avg_acc: max, ...}``
    -> Objectives, accuracy metrics mapped to ``split``'s columns."""
    out = []
    for item in _items(objectives):
        o = item if isinstance(item, Objective) else Objective.parse(item)
        out.append(Objective(split_column(o.column, split), o.sense))
    if not out:
        raise ConfigError(f"objectives: none given; write e.g. {DEFAULT_OBJECTIVES}")
    columns = [o.column for o in out]
    if len(set(columns)) != len(columns):
        raise ConfigError(f"objectives={objectives!r}: a column appears twice")
    return tuple(out)


def as_minimisation(values: np.ndarray, objectives: Sequence[Objective] | Iterable[Objective]) -> np.ndarray:
    """(n, d) objective values -> (n, d) values where smaller is better in every column."""
    signs = np.array([o.sign for o in objectives], dtype=np.float64)
    return np.asarray(values, dtype=np.float64) * signs
