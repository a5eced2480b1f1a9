"""Code that comes from outside incsweep: ``module:attr`` references and installed entry points.

A method or benchmark is named in a config either by a registered name (built in, or declared by an
installed package under the entry-point group ``incsweep.methods`` / ``incsweep.benchmarks``) or by
a ``module:attr`` reference. Either way the *name* travels in the config, so every process that
reads the config (a Ray worker on another node included) resolves the same object by importing it;
nothing is registered at run time in one process's memory. Errors are one-line ``ConfigError`` s
naming the reference and what is registered. Torch-free.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from typing import Any

from incsweep.core.errors import ConfigError

__all__ = ["METHOD_GROUP", "BENCHMARK_GROUP", "is_reference", "load_reference", "entry_point_names",
           "load_entry_point"]

METHOD_GROUP = "incsweep.methods"
BENCHMARK_GROUP = "incsweep.benchmarks"


def is_reference(name: str) -> bool:
    """``module:attr`` (a colon) rather than a registered name."""
    return ":" in name


def load_reference(ref: str, what: str) -> Any:
    """The object ``module:attr`` names (``attr`` may be dotted), imported now."""
    module, _, attr = ref.partition(":")
    if not module or not attr or ":" in attr:
        raise ConfigError(f"{what} {ref!r} is not a module:attr reference, e.g. mypkg.methods:MyMethod")
    try:
        obj: Any = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{what} {ref!r}: module {exc.name!r} is not installed in this environment "
                          f"(pip install the package that provides {module!r} on every node, or add its folder "
                          "to PYTHONPATH)") from None
    except Exception as exc:  # the user's module raised while importing: say which and why, in one line
        raise ConfigError(f"{what} {ref!r}: importing {module!r} failed: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what} {ref!r}: module {module!r} has no attribute {attr!r}") from None
    return obj


def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=group))


def entry_point_names(group: str) -> tuple[str, ...]:
    """Names installed packages declare in ``group`` (sorted, without duplicates)."""
    return tuple(sorted({ep.name for ep in _entry_points(group)}))


def load_entry_point(group: str, name: str, what: str) -> Any | None:
    """The object entry point ``name`` of ``group`` points at; None when no package declares it."""
    found = [ep for ep in _entry_points(group) if ep.name == name]
    if not found:
        return None
    if len({ep.value for ep in found}) > 1:
        owners = sorted(f"{ep.value} ({ep.dist.name if ep.dist else '?'})" for ep in found)
        raise ConfigError(f"{what} {name!r} is declared by more than one installed package under "
                          f"{group!r}: {', '.join(owners)}; uninstall one or name it by module:attr")
    try:
        return found[0].load()
    except ModuleNotFoundError as exc:
        raise ConfigError(f"{what} {name!r} (entry point {found[0].value} in {group!r}): module {exc.name!r} "
                          "is not importable") from None
    except Exception as exc:
        raise ConfigError(f"{what} {name!r} (entry point {found[0].value} in {group!r}) failed to load: "
                          f"{type(exc).__name__}: {exc}") from None
