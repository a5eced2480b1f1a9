"""The Ray-free engine: one full incremental run of a method on a benchmark.

The names below are imported on first use (PEP 562), so that importing a torch-free submodule such
as ``incsweep.core.errors`` (what analysis and the CLI need) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["run", "RunConfig", "RunResult", "TaskResult", "BenchmarkConfig", "load_benchmark", "BENCHMARKS",
           "METHODS", "MemoryReport"]

_HOME = {"run": "run", "RunConfig": "run", "RunResult": "run", "TaskResult": "run", "BenchmarkConfig": "benchmarks",
         "load_benchmark": "benchmarks", "BENCHMARKS": "benchmarks", "METHODS": "methods", "MemoryReport": "memory"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
