"""A study's constraints (``total_mb <= 1.2``) and Optuna's feasibility rule, in one place.

The searcher tells Optuna each constraint's violation, the sink stores the verdict in every results
row, and the analysis judges every row by the same rule, so a study's front (``incsweep analyze``,
``study status``, the progress line, ``export``, ``confirm``) equals Optuna's ``best_trials``.

Optuna's rule (``optuna.study._constrained_optimization``): a trial is feasible when every
constraint value is <= 0; a NaN value is not <= 0, so a missing metric is infeasible.
Torch-free: the analysis imports it without the engine.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from incsweep.core.errors import ConfigError
from incsweep.core.vocabulary import OPTIMISABLE

__all__ = ["Constraint", "parse_constraints", "format_constraints", "violations", "feasible", "met",
           "CONSTRAINT_SEPARATOR"]

_OPS = ("<=", ">=")
CONSTRAINT_SEPARATOR = "; "  # between constraints in the results' ``constraints`` column
_PATTERN = re.compile(r"\s*([a-z_]+)\s*(<=|>=)\s*([-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?)\s*")


@dataclass(frozen=True)
class Constraint:
    """``metric op bound`` on a metric every task reports (vocabulary.OPTIMISABLE)."""

    metric: str
    op: str
    bound: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ConfigError(f"constraint operator {self.op!r}: allowed {list(_OPS)}")
        if not math.isfinite(self.bound):
            raise ConfigError(f"constraint {self.metric} {self.op} {self.bound}: the bound must be a finite number")

    @classmethod
    def parse(cls, text: str) -> "Constraint":
        m = _PATTERN.fullmatch(str(text))
        if not m:
            raise ConfigError(f"constraint {text!r}: write METRIC <= NUMBER or METRIC >= NUMBER, e.g. 'total_mb <= 8'")
        metric, op, bound = m.group(1), m.group(2), float(m.group(3))
        if metric not in OPTIMISABLE:
            raise ConfigError(f"constraint {text!r}: unknown metric {metric!r}; choose from {list(OPTIMISABLE)}")
        return cls(metric, op, bound)

    def violation(self, value: Any) -> Any:
        """Optuna's convention: <= 0 is feasible (NaN for a missing value: infeasible). ``value``: a
        number, or a numpy array of them (the analysis judges a column at once)."""
        return value - self.bound if self.op == "<=" else self.bound - value

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


def parse_constraints(value: Any) -> tuple[Constraint, ...]:
    """Constraints from a spec or the command line: one string (``;``-separated), a list of strings,
    or Constraint objects; None or empty: no constraint."""
    if value is None:
        return ()
    if isinstance(value, Constraint):
        return (value,)
    items: Iterable[Any] = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"constraints: give a list of 'METRIC <= NUMBER' strings, got {type(value).__name__}")
    out: list[Constraint] = []
    for item in items:
        if isinstance(item, Constraint):
            out.append(item)
        elif isinstance(item, str):
            out += [Constraint.parse(part) for part in item.split(";") if part.strip()]
        else:
            raise ConfigError(f"constraint {item!r}: write it as a string, e.g. 'total_mb <= 8'")
    return tuple(out)


def format_constraints(constraints: Sequence[Constraint]) -> str:
    """The text stored in the results' ``constraints`` column ("" for none); parse_constraints reads it back."""
    return CONSTRAINT_SEPARATOR.join(str(c) for c in constraints)


def _value(metrics: Mapping[str, Any], name: str) -> float:
    value = metrics.get(name)
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def violations(constraints: Sequence[Constraint], metrics: Mapping[str, Any]) -> list[float]:
    """Each constraint's violation on ``metrics`` (a missing or non-numeric value gives NaN)."""
    return [c.violation(_value(metrics, c.metric)) for c in constraints]


def met(violation: Any) -> Any:
    """Optuna's rule for one violation (a number, or a numpy array of them): <= 0; NaN is not."""
    return violation <= 0


def feasible(constraints: Sequence[Constraint], metrics: Mapping[str, Any]) -> bool:
    """Every constraint met (Optuna's rule)."""
    return all(met(v) for v in violations(constraints, metrics))
