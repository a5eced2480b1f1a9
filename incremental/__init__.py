"""The Ray-free engine: one full incremental run of a method on a benchmark."""

from .benchmarks import BENCHMARKS, BenchmarkConfig, load_benchmark
from .memory import MemoryReport
from .methods import METHODS
from .run import RunConfig, RunResult, TaskResult, run

__all__ = ["run", "RunConfig", "RunResult", "TaskResult", "BenchmarkConfig", "load_benchmark", "BENCHMARKS",
           "METHODS", "MemoryReport"]
