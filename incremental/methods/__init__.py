"""Incremental-learning methods behind one contract (``base.Method``), in one registry.

The registry is the built-in classes below, what installed packages declare under the entry-point
group ``incsweep.methods`` (``incremental.plugins``) and ``module:Class`` references. A method class
is its whole entry: config class, scenarios, default search space (``search_space``; ``None`` is
the explicit "no default space"), trainable, memory plan.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
from typing import Iterator, Mapping

from incsweep.core.builtin_methods import BUILTIN_METHODS
from incsweep.core.errors import ConfigError
from incsweep.core.plugins import METHOD_GROUP, entry_point_names, is_reference, load_entry_point, load_reference
from incsweep.incremental.methods.base import SCENARIOS, BudgetPlan, ExemplarConfig, Method, MethodConfig, RunContext

__all__ = ["METHODS", "get_method", "method_names", "check_method_class", "Method", "MethodConfig",
           "ExemplarConfig", "RunContext", "BudgetPlan"]


class _BuiltIns(Mapping[str, type[Method]]):
    """The built-in methods by name, each module imported on first use: LwF and EWC import the
    public API (``incremental.api``), which imports this package, so nothing here imports them eagerly."""

    def __getitem__(self, name: str) -> type[Method]:
        module, cls, _ = BUILTIN_METHODS[name]
        return getattr(importlib.import_module(f".{module}", __name__), cls)

    def __iter__(self) -> Iterator[str]:
        return iter(BUILTIN_METHODS)

    def __len__(self) -> int:
        return len(BUILTIN_METHODS)


METHODS: Mapping[str, type[Method]] = _BuiltIns()


def method_names() -> tuple[str, ...]:
    """Every method a config may name without a ``module:Class`` reference (built-in, then installed)."""
    return tuple(METHODS) + tuple(n for n in entry_point_names(METHOD_GROUP) if n not in METHODS)


def get_method(name: str) -> type[Method]:
    """The method class ``name`` names: a built-in, an installed entry point or ``module:Class``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"method={name!r} must be a method name or a module:Class reference")
    if name in METHODS:
        return METHODS[name]
    if is_reference(name):
        return check_method_class(load_reference(name, "method"), name)
    found = load_entry_point(METHOD_GROUP, name, "method")
    if found is None:
        raise ConfigError(f"unknown method {name!r}; registered: {list(method_names())}, or give a "
                          "module:Class reference (e.g. mypkg.methods:MyMethod)")
    return check_method_class(found, name)


def check_method_class(obj: object, name: str) -> type[Method]:
    """``obj`` if it is a complete method class; else a one-line ConfigError saying what is missing."""
    if not (inspect.isclass(obj) and issubclass(obj, Method)):
        raise ConfigError(f"method {name!r} is {obj!r}, not a subclass of incsweep.incremental.methods.Method")
    if inspect.isabstract(obj):
        missing = sorted(getattr(obj, "__abstractmethods__", ()))
        raise ConfigError(f"method {name!r} ({obj.__qualname__}) does not implement {missing}")
    if not (inspect.isclass(obj.config_cls) and issubclass(obj.config_cls, MethodConfig)):
        raise ConfigError(f"method {name!r}: config_cls must be a MethodConfig subclass, got {obj.config_cls!r}")
    bad = [s for s in obj.scenarios if s not in SCENARIOS]
    if not obj.scenarios or bad:
        raise ConfigError(f"method {name!r}: scenarios={obj.scenarios!r}; allowed: a non-empty subset of {list(SCENARIOS)}")
    if not hasattr(obj, "search_space"):
        raise ConfigError(f"method {name!r} ({obj.__qualname__}) declares no search_space; set it to a mapping "
                          "of config field -> Float/Int/Choice, or to None for no default space")
    space = obj.search_space
    if space is not None:
        fields = {f.name for f in dataclasses.fields(obj.config_cls)}
        stray = sorted(set(space) - fields)
        if stray:
            raise ConfigError(f"method {name!r}: search_space names {stray}, not fields of "
                              f"{obj.config_cls.__name__}; allowed: {sorted(fields)}")
    if obj.trainable is not None and not is_reference(obj.trainable):
        raise ConfigError(f"method {name!r}: trainable={obj.trainable!r} must be a module:function reference or None")
    return obj
