"""Hyperparameter studies: a spec, Ray Tune trials over incremental runs, an Optuna search, Parquet
results; started and inspected from Python as from the CLI.

    from incsweep.study import load_spec, run_study, resume_study, open_study, StudySpec
    study = run_study("configs/studies/tiny.yaml", storage="runs/tiny")
    study.front(); study.results(); study.report()

docs/notebook.md is a worked example (the suite runs it). The names are imported on first use
(PEP 562): the CLI imports this package's commands without torch, Ray or Optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["StudySpec", "load_spec", "run_study", "resume_study", "open_study", "Study"]

_HOME = {"StudySpec": "spec", "load_spec": "spec", "run_study": "api", "resume_study": "api", "open_study": "api",
         "Study": "api"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"incsweep.study.{_HOME[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
