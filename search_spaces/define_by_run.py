"""The Optuna define-by-run function of a study: method first (when several), then its parameters.

It is a frozen dataclass instance, not a closure, so Ray pickles it by reference to this module
(docs/ray-optuna.md trap 9) and it holds no state between calls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from incsweep.core.configs import from_mapping
from incsweep.core.errors import ConfigError
from incsweep.core.params import Fixed, Param, parse_param
from incsweep.search_spaces.spaces import default_space

__all__ = ["StudySpace", "build_space", "optuna_name"]


def optuna_name(method: str, param: str) -> str:
    """Optuna parameter names carry the method: ranges of e.g. ``lr`` differ between methods."""
    return f"{method}.{param}"


@dataclass(frozen=True)
class StudySpace:
    """method -> (parameter name -> Param), in a fixed order."""

    spaces: tuple[tuple[str, tuple[tuple[str, Param], ...]], ...]

    @property
    def methods(self) -> tuple[str, ...]:
        return tuple(m for m, _ in self.spaces)

    def params(self, method: str) -> dict[str, Param]:
        return dict(dict(self.spaces)[method])

    def searched(self, method: str) -> list[str]:
        return [name for name, p in self.params(method).items() if not isinstance(p, Fixed)]

    def __call__(self, trial: Any) -> dict[str, Any]:
        methods = self.methods
        method = methods[0] if len(methods) == 1 else trial.suggest_categorical("method", list(methods))
        values = {name: param.suggest(trial, optuna_name(method, name)) for name, param in self.params(method).items()}
        return {"method": method, "params": values}


def build_space(methods: list[str], overrides: Mapping[str, Mapping[str, Any]] | None = None) -> StudySpace:
    """Each method's default space with the spec's overrides applied; any field of the method's
    config may be searched or fixed, and ``null`` drops a parameter from the default space."""
    overrides = dict(overrides or {})
    stray = set(overrides) - set(methods)
    if stray:
        raise ConfigError(f"search: section(s) {sorted(stray)} name no method of this study; methods: {methods}")
    from incsweep.incremental.methods import get_method  # not at import: the registry imports torch (~1 s)

    spaces = []
    for method in methods:
        config_cls = get_method(method).config_cls
        fields = {f.name for f in dataclasses.fields(config_cls)}
        space = default_space(method)
        section = overrides.get(method) or {}
        if not isinstance(section, Mapping):
            raise ConfigError(f"search.{method}: {section!r} is not allowed; give a mapping of field -> value or range")
        for name, raw in dict(section).items():
            if name not in fields:
                raise ConfigError(f"search.{method}: unknown parameter {name!r}; allowed: {sorted(fields)}")
            if raw is None:
                space.pop(name, None)
            else:
                space[name] = parse_param(name, raw, space.get(name))
        _check_candidates(method, config_cls, space)
        spaces.append((method, tuple(space.items())))
    return StudySpace(tuple(spaces))


def _check_candidates(method: str, config_cls: type, space: Mapping[str, Param]) -> None:
    """Fail at launch, not inside trials: every bound and choice must be a valid config value."""
    fixed = {name: p.value for name, p in space.items() if isinstance(p, Fixed)}
    try:
        from_mapping(config_cls, fixed, where=f"search.{method}")
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"search.{method}: {exc}") from None
    for name, param in space.items():
        for value in param.candidates():
            try:
                from_mapping(config_cls, {**fixed, name: value}, where=f"search.{method}")
            except ConfigError as exc:
                raise ConfigError(f"search.{method}.{name}={value!r}: {exc}") from None
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"search.{method}.{name}={value!r}: {exc}") from None
