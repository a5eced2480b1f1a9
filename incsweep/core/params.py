"""Search-space parameters: typed, frozen, each able to suggest itself on an Optuna trial."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Union

from incsweep.core.errors import ConfigError

__all__ = ["Float", "Int", "Choice", "Fixed", "Param", "parse_param", "describe"]


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        _check_bounds(self.low, self.high, self.log)

    def suggest(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)

    def admits(self, value: Any) -> bool:
        """Whether ``value`` is one this parameter can take (an enqueued trial's, a re-run's)."""
        return _real(value) and self.low <= float(value) <= self.high

    def candidates(self) -> tuple[Any, ...]:
        return (self.low, self.high)


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        _check_bounds(self.low, self.high, self.log)

    def suggest(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)

    def admits(self, value: Any) -> bool:
        return _real(value) and float(value) == int(value) and self.low <= int(value) <= self.high

    def candidates(self) -> tuple[Any, ...]:
        return (self.low, self.high)


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ConfigError("choices: give at least one value")

    def suggest(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def admits(self, value: Any) -> bool:
        return any(_same(value, v) for v in self.values)

    def candidates(self) -> tuple[Any, ...]:
        return self.values


@dataclass(frozen=True)
class Fixed:
    value: Any

    def suggest(self, trial: Any, name: str) -> Any:  # noqa: ARG002 - a constant is not searched
        return self.value

    def admits(self, value: Any) -> bool:
        return _same(value, self.value)

    def candidates(self) -> tuple[Any, ...]:
        return (self.value,)


Param = Union[Float, Int, Choice, Fixed]
_KEYS = {"low", "high", "log", "choices", "value"}


def _same(a: Any, b: Any) -> bool:
    """Equal values; a bool equals only a bool (True == 1 in Python), a number any equal number (results
    store an integer choice of a numeric column as a float)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return bool(a == b)


def _real(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_bounds(low: float, high: float, log: bool) -> None:
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ConfigError(f"low={low!r}, high={high!r}: need finite bounds with low <= high")
    if log and low <= 0:
        raise ConfigError(f"log=true needs low > 0 (got low={low!r})")


def _number(value: Any, what: str) -> float:
    """A finite number from a spec value (PyYAML reads 5e-4 as a string); bools, lists, inf and NaN are not."""
    if isinstance(value, bool):
        raise ConfigError(f"{what}={value!r} is not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}={value!r} is not a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{what}={value!r} is not a finite number")
    return number


def parse_param(name: str, raw: Any, default: Param | None = None) -> Param:
    """A parameter from a study spec entry.

    ``{low, high[, log]}``: a range (integer when the default space's parameter is ``Int`` or both
    bounds are integers); ``{choices: [...]}``; ``{value: X}`` or a bare value (lists included, for
    tuple fields such as milestones): fixed. Omitted keys of a range default to the default space's.
    """
    if isinstance(raw, (Float, Int, Choice, Fixed)):
        return raw
    if not isinstance(raw, Mapping):
        return Fixed(tuple(raw) if isinstance(raw, list) else raw)
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"search parameter {name!r}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    if "value" in raw:
        value = raw["value"]
        return Fixed(tuple(value) if isinstance(value, list) else value)
    if "choices" in raw:
        if not isinstance(raw["choices"], list):
            raise ConfigError(f"search parameter {name!r}: choices must be a list")
        return Choice(tuple(raw["choices"]))
    base = default if isinstance(default, (Float, Int)) else None
    low = raw.get("low", base.low if base else None)
    high = raw.get("high", base.high if base else None)
    if low is None or high is None:
        raise ConfigError(f"search parameter {name!r}: a range needs low and high")
    log = raw.get("log", base.log if base else False)
    if not isinstance(log, bool):
        raise ConfigError(f"search parameter {name!r}: log={log!r}; allowed: true or false")
    integer = isinstance(base, Int) or (base is None and isinstance(low, int) and isinstance(high, int)
                                        and not isinstance(low, bool))
    try:
        lo, hi = _number(low, f"{name}.low"), _number(high, f"{name}.high")
        if integer:
            if lo != int(lo) or hi != int(hi):
                raise ConfigError(f"search parameter {name!r} is an integer; got low={low!r}, high={high!r}")
            return Int(int(lo), int(hi), log)
        return Float(lo, hi, log)
    except ConfigError as exc:
        raise ConfigError(f"search parameter {name!r}: {exc}") from None


def describe(param: Param) -> str:
    """One short human-readable line for ``incsweep study status`` and docs."""
    if isinstance(param, (Float, Int)):
        return f"[{param.low}, {param.high}]" + (" log" if param.log else "")
    if isinstance(param, Choice):
        return "{" + ", ".join(map(str, param.values)) + "}"
    return f"= {param.value}"
