"""Optuna define-by-run search spaces: each method's default (``Method.search_space``), narrowed or
extended by a study spec.

The names below are imported on first use (PEP 562): method modules import ``.spaces`` and
``.params`` for their defaults, and the define-by-run module imports the method registry back.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["default_space", "StudySpace", "build_space", "optuna_name", "Float", "Int", "Choice", "Fixed", "Param",
           "parse_param", "describe"]

_HOME = {"default_space": "spaces", "StudySpace": "define_by_run", "build_space": "define_by_run",
         "optuna_name": "define_by_run", "Float": "params", "Int": "params", "Choice": "params", "Fixed": "params",
         "Param": "params", "parse_param": "params", "describe": "params"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
