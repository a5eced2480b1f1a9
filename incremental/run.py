"""One full incremental run: ``run(config, on_task_end) -> RunResult``.

The loop owns seeding, evaluation, metrics and checkpoints, once; methods only learn. A run is a
pure function of its config: every task reseeds from (seed, task), so a run resumed from the
checkpoint after task k continues exactly as the uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from incsweep.core.configs import (
    apply_overrides,
    config_path,
    from_mapping,
    parse_override,
    read_yaml_file,
    spec,
    to_mapping,
    validate,
)
from incsweep.core.errors import ConfigError
from incsweep.core.metrics import Metrics, compute_metrics
from incsweep.core.provenance import code_version
from incsweep.core.ranges import EVAL_BATCH_SIZE, SEED
from incsweep.core.vocabulary import CPU_TIME, TEST_PREFIX, WALL_TIME
from incsweep.incremental.augment import AUGMENTATIONS, Augmenter, check_policy
from incsweep.incremental.benchmarks import Benchmark, BenchmarkConfig, Task, load_benchmark
from incsweep.incremental.census import MemoryMisreport, audit_memory, check_plan
from incsweep.incremental.image_sets import loader_workers
from incsweep.incremental.memory import MemoryReport
from incsweep.incremental.methods import Method, RunContext, get_method
from incsweep.incremental.methods.base import BudgetPlan, ExemplarConfig, MethodConfig, derive_seed
from incsweep.incremental.process_state import run_process_state, scoped_global_rng

__all__ = ["RunConfig", "TaskResult", "RunResult", "run", "run_plan", "build_method", "load_run_config",
           "CHECKPOINT_FILE", "code_version", "PHASES",
           "PHASE_LABELS"]

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "state.pt"
CHECKPOINT_FORMAT = 1
# A task's wall time by phase, with what people read for it: training (begin_task + train_task),
# consolidation (end_task: exemplar selection, weight aligning, BMKP's projection), evaluation (test
# and validation of every seen task), the engine's memory census (census.py).
PHASE_LABELS = {"train": "training", "consolidate": "consolidation (exemplar selection, aligning)",
                "evaluate": "evaluation", "census": "memory census (what the method holds, checked)"}
PHASES = tuple(PHASE_LABELS)


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run. ``method_config`` is the method's own config class."""

    method: str = spec("finetune", choices=None)
    benchmark: BenchmarkConfig = dataclasses.field(default_factory=BenchmarkConfig)
    method_config: MethodConfig = dataclasses.field(default_factory=MethodConfig)
    scenario: str | None = spec(None, choices=("class_il", "task_il"))  # None: the method's default
    seed: int = spec(0, range=SEED)
    device: str = "cpu"
    eval_batch_size: int = spec(1024, range=EVAL_BATCH_SIZE)  # large: evaluation is pure inference
    augment_policy: str | None = spec(None, choices=tuple(AUGMENTATIONS))  # None: the benchmark's
    # CPU kernels reduce in a thread-count-dependent order, so bit-exact re-runs need the same count;
    # None leaves torch's setting alone (trials set it to the CPUs Ray gives them).
    threads: int | None = spec(None, range=(1, 1024))
    # torch.compile each training step's forward and loss (evaluation stays eager: its batch sizes
    # vary). Off by default: on the 2-core CPU here it gained 1.27-1.36x a step after 19-38 s of
    # compiling per network (benchmarks/results/step_speed.txt), more than a trial of a few seconds
    # saves; meant for long schedules.
    compile: bool = False
    # Matrix precision of training and evaluation on CUDA. fp32 by default: on an H100 at the papers'
    # batch size (128) bf16 autocast made a ResNet-32 step 0.91-0.96x and a reduced ResNet-18 step
    # 0.74-0.79x as fast (small, launch-bound kernels; benchmarks/results/step_speed_h100.txt, docs/gpu.md);
    # at batch 512 it gave the reduced ResNet-18 1.32x. bf16 is CUDA-only: CPU runs stay exact fp32.
    precision: str = spec("fp32", choices=("fp32", "bf16"))

    def __post_init__(self) -> None:
        validate(self)
        cls = get_method(self.method)
        if not isinstance(self.method_config, cls.config_cls):
            raise ConfigError(f"method_config is a {type(self.method_config).__name__}, "
                              f"{self.method} needs {cls.config_cls.__name__}")
        if self.scenario is None:
            object.__setattr__(self, "scenario", cls.scenarios[0])
        elif self.scenario not in cls.scenarios:
            raise ConfigError(f"scenario={self.scenario!r} is not supported by {self.method}; allowed: {list(cls.scenarios)}")
        _check_device(self.device)
        policy = self.augment_policy or (self.benchmark.spec.augmentation if self.benchmark.augment else "none")
        check_policy(AUGMENTATIONS[policy], self.benchmark.spec.view, f"augment_policy={policy!r}")
        if self.precision == "bf16" and not self.device.startswith("cuda"):
            raise ConfigError(f"precision='bf16' needs device=cuda (got device={self.device!r}); use precision=fp32 on CPU")

    @property
    def task_scenario(self) -> str:
        """The scenario the run uses: never None once built (None resolves to the method's default)."""
        assert self.scenario is not None
        return self.scenario

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        """Build from plain data (YAML/JSON); a ``provenance`` key (exported configs) is ignored."""
        data = {k: v for k, v in data.items() if k != "provenance"}
        method = data.get("method", "finetune")
        method_cls = get_method(method)
        top = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - top)
        if unknown:
            raise ConfigError(f"RunConfig: unknown field(s) {unknown}; allowed: {sorted(top)}")
        mc = from_mapping(method_cls.config_cls, data.get("method_config") or {}, where=f"{method}.method_config")
        bc = from_mapping(BenchmarkConfig, data.get("benchmark") or {}, where="benchmark")
        rest = {k: v for k, v in data.items() if k not in ("method_config", "benchmark")}
        return from_mapping(cls, {**rest, "benchmark": bc, "method_config": mc})

    def to_dict(self) -> dict[str, Any]:
        return to_mapping(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def with_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``--set key=value`` overrides; a bare key that is not top-level means ``method_config.key``."""
    top = {f.name for f in dataclasses.fields(RunConfig)}
    out = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        if path[0] not in top:
            path = ["method_config", *path]
        out = apply_overrides(out, path, value)
    return out


def load_run_config(path: str | None, overrides: Sequence[str] = (), **top: Any) -> RunConfig:
    """Config file (YAML/JSON) + explicit top-level values + ``--set`` overrides -> RunConfig."""

    data: dict[str, Any] = {}
    if path:
        loaded = read_yaml_file(config_path(path, "config file"), "config file")
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping, got {type(loaded).__name__}")
        data = loaded
    for key, value in top.items():
        if value is None:
            continue
        if key == "benchmark":
            data = apply_overrides(data, ["benchmark", "name"], value)
        else:
            if key == "method" and data.get("method") not in (None, value):
                data = {k: v for k, v in data.items() if k != "method_config"}  # another method's fields
            data = {**data, key: value}
    return RunConfig.from_dict(with_overrides(data, overrides))


def _check_device(device: str) -> None:
    if device == "cpu":
        return
    if device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"device={device!r} but CUDA is not available here; use device=cpu")
        if ":" in device and int(device[5:]) >= torch.cuda.device_count():
            raise ConfigError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return
    raise ConfigError(f"device={device!r} is not allowed; use cpu, cuda or cuda:N")


@dataclass(frozen=True)
class TaskResult:
    """What the run knows after task ``task``: accuracy rows, metrics so far, memory, time."""

    task: int
    n_tasks: int
    scenario: str
    acc_row: tuple[float, ...]  # test acc[task][j], j <= task
    val_acc_row: tuple[float, ...]
    seen_acc: float  # test acc_task
    val_seen_acc: float
    test: Metrics
    val: Metrics
    memory: MemoryReport
    wall_s: float  # this task, training + evaluation
    elapsed_s: float  # run so far (excluding time before a resume)
    method_stats: Mapping[str, float] = dataclasses.field(default_factory=dict)  # Method.task_stats()
    cpu_s: float = math.nan  # CPU seconds of this process on the task (NaN: a result recorded before it existed)
    # Wall seconds of the task by phase (PHASES); empty in results recorded before it existed.
    phase_s: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["acc_row"], d["val_acc_row"] = list(self.acc_row), list(self.val_acc_row)
        d["method_stats"] = dict(self.method_stats)
        d["phase_s"] = dict(self.phase_s)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TaskResult":
        return cls(**{**d, "acc_row": tuple(d["acc_row"]), "val_acc_row": tuple(d["val_acc_row"]),
                      "method_stats": dict(d.get("method_stats") or {}),  # absent in older checkpoints
                      "phase_s": dict(d.get("phase_s") or {}),
                      "test": Metrics(**d["test"]), "val": Metrics(**d["val"]), "memory": MemoryReport(**d["memory"])})

    def flat(self) -> dict[str, Any]:
        """Flat metrics: val metrics unprefixed (the study objectives), test ones ``test_``-prefixed."""
        return {"task": self.task, "n_tasks": self.n_tasks, **self.val.as_dict(), **self.test.as_dict(TEST_PREFIX),
                **self.memory.as_dict(), WALL_TIME: self.wall_s, CPU_TIME: self.cpu_s}


@dataclass(frozen=True)
class RunResult:
    config: RunConfig
    tasks: tuple[TaskResult, ...]

    @property
    def final(self) -> TaskResult:
        return self.tasks[-1]

    @property
    def complete(self) -> bool:
        return bool(self.tasks) and len(self.tasks) == self.tasks[0].n_tasks

    def acc_matrix(self) -> list[list[float]]:
        return [list(t.acc_row) for t in self.tasks]

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "tasks": [t.as_dict() for t in self.tasks],
                "complete": self.complete, "code_version": code_version()}


def _seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


@torch.no_grad()
def evaluate(method: Method, tasks: Sequence[Task], split: str, scenario: str) -> tuple[list[float], float]:
    """Accuracy on each seen task's ``split`` and acc_i (class-IL: pooled; task-IL: mean over tasks)."""
    accs, correct, total = [], 0, 0
    for task in tasks:
        data = getattr(task, split)
        if len(data) == 0:
            accs.append(float("nan"))
            continue
        y = data.y.to(method.ctx.device)
        if scenario == "task_il":
            logits = method.predict(data.x, task.index)
            lo, hi = task.classes[0], task.classes[-1] + 1
            pred = logits[:, lo:hi].argmax(1) + lo
        else:
            pred = method.predict(data.x, None).argmax(1)
        hits = int((pred == y).sum())
        accs.append(hits / len(y))
        correct, total = correct + hits, total + len(y)
    if total == 0:
        return accs, float("nan")
    seen = correct / total if scenario == "class_il" else float(np.mean(accs))
    return accs, seen


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a killed writer leaves the previous checkpoint intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def run_plan(config: RunConfig) -> BudgetPlan:
    """``plan()`` of the run's method for its config and benchmark: built on the meta device, leaving
    the global RNGs as they were (methods/planning.py)."""
    return get_method(config.method).plan(config.method_config, config.benchmark)


def build_method(config: RunConfig, device: torch.device, plan: BudgetPlan | None = None) -> Method:
    """The run's method, built as the run loop builds it. ``plan``: ``run_plan(config)`` when the
    caller has it (it fixes an exemplar budget's M); computed here when that needs it."""
    bench_cfg = config.benchmark
    policy = config.augment_policy or (bench_cfg.spec.augmentation if bench_cfg.augment else "none")
    augmenter = Augmenter(AUGMENTATIONS[policy], bench_cfg.spec.mean, bench_cfg.spec.std, device,
                          compile_step=config.compile, bf16=config.precision == "bf16", view=bench_cfg.spec.view)
    cls = get_method(config.method)
    # M is fixed once for the run, from the plan's final memory (docs/protocols.md). Only an
    # exemplar budget has an M.
    if plan is None and isinstance(config.method_config, ExemplarConfig):
        plan = run_plan(config)
    total = plan.exemplar_total if plan is not None and isinstance(config.method_config, ExemplarConfig) else None
    ctx = RunContext(device=device, scenario=config.task_scenario, benchmark=bench_cfg, augmenter=augmenter,
                     eval_batch_size=config.eval_batch_size, seed=config.seed, exemplar_total=total)
    with scoped_global_rng(device):  # the caller's global RNGs are left as they were
        _seed_all(derive_seed(config.seed, -1))  # model construction
        return cls(config.method_config, ctx)


def run(
    config: RunConfig,
    on_task_end: Callable[[TaskResult], None] | None = None,
    *,
    checkpoint_dir: str | os.PathLike | None = None,
    initial_state: Mapping[str, Any] | None = None,
    benchmark: Benchmark | None = None,
    stop_after: int | None = None,
    memory_findings: list[MemoryMisreport] | None = None,
) -> RunResult:
    """Train task after task; after each, evaluate, checkpoint (if asked) and call ``on_task_end``.

    ``checkpoint_dir``: ``state.pt`` there is rewritten after every task, and a run finding one
    continues from it. ``initial_state``: a checkpoint already loaded (from Tune or the prefix
    cache) to continue from. ``benchmark``: preloaded data for ``config.benchmark``.
    ``stop_after``: stop once this many tasks are done (the result is then incomplete).

    After every task the engine counts what the method holds and checks its ``memory()`` (and, after
    the last task, its ``plan()``) against it (census.py): a mismatch raises MemoryMisreport.
    ``memory_findings``: for the contract checks, which judge the rest of the run on its own: each
    mismatch is appended there instead and the run goes on.
    """
    device = torch.device(config.device)
    # Threads, deterministic cuDNN and the global RNGs are the run's only while it runs.
    with run_process_state(config.threads, device):
        return _run(config, device, on_task_end, checkpoint_dir, initial_state, benchmark, stop_after, memory_findings)


def _run(config: RunConfig, device: torch.device, on_task_end: Callable[[TaskResult], None] | None,
         checkpoint_dir: str | os.PathLike | None, initial_state: Mapping[str, Any] | None,
         benchmark: Benchmark | None, stop_after: int | None,
         memory_findings: list[MemoryMisreport] | None) -> RunResult:
    if config.benchmark.spec.view is not None:
        loader_workers()  # a bad $INCSWEEP_LOADER_WORKERS is one line now, not after the first task
    bench = benchmark if benchmark is not None else load_benchmark(config.benchmark)
    if bench.config != config.benchmark:
        raise ConfigError("run(): the preloaded benchmark does not match config.benchmark")
    plan = run_plan(config) if isinstance(config.method_config, ExemplarConfig) else None
    method = build_method(config, device, plan)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    state = initial_state
    if state is None and ckpt_path is not None and ckpt_path.exists():
        state = load_checkpoint(ckpt_path)
    results: list[TaskResult] = []
    if state is not None:
        if state.get("format") != CHECKPOINT_FORMAT or not same_config(state.get("config"), config):
            raise ConfigError("checkpoint was written by a different config (or format); refusing to resume from it")
        method.load_state_dict(state["method"])
        results = [TaskResult.from_dict(r) for r in state["results"]]
        log.info("resuming %s after task %d", config.method, len(results) - 1)

    start = time.perf_counter()
    last = bench.n_tasks if stop_after is None else min(bench.n_tasks, stop_after)
    for task in bench.tasks[len(results):last]:
        tic, cpu_tic = time.perf_counter(), time.process_time()
        _seed_all(derive_seed(config.seed, task.index))
        method.begin_task(task)
        method.train_task(task)
        trained = time.perf_counter()
        method.end_task(task)
        consolidated = time.perf_counter()
        seen = bench.tasks[: task.index + 1]
        row, seen_acc = evaluate(method, seen, "test", config.task_scenario)
        val_row, val_seen = evaluate(method, seen, "val", config.task_scenario)
        evaluated = time.perf_counter()
        prev = results
        test_m = compute_metrics([list(r.acc_row) for r in prev] + [row], [r.seen_acc for r in prev] + [seen_acc])
        val_m = compute_metrics([list(r.val_acc_row) for r in prev] + [val_row], [r.val_seen_acc for r in prev] + [val_seen])
        # The method's report is a claim: the engine counts what it holds (census.py) before
        # anything records it, and the last task's memory must keep what plan() promised.
        memory = method.memory()
        try:
            audit_memory(method, memory, image_bytes=bench.image_bytes, where=f"after task {task.index}")
            if task.index == bench.n_tasks - 1:
                plan = plan or run_plan(config)
                check_plan(config.method, memory, plan, exact=type(method).plan_is_exact)
        except MemoryMisreport as finding:
            if memory_findings is None:
                raise
            memory_findings.append(finding)
        audited = now = time.perf_counter()
        result = TaskResult(
            task=task.index, n_tasks=bench.n_tasks, scenario=config.task_scenario, acc_row=tuple(row),
            val_acc_row=tuple(val_row), seen_acc=seen_acc, val_seen_acc=val_seen, test=test_m, val=val_m,
            memory=memory, wall_s=now - tic, elapsed_s=now - start, method_stats=method.task_stats(),
            cpu_s=time.process_time() - cpu_tic,
            phase_s=dict(zip(PHASES, (trained - tic, consolidated - trained, evaluated - consolidated,
                                      audited - evaluated))),
        )
        results.append(result)
        log.info("%s task %d/%d: acc %.4f avg %.4f memory %.3f MB (%.1f s)", config.method, task.index + 1,
                 bench.n_tasks, seen_acc, test_m.avg_acc, result.memory.total_mb, result.wall_s)
        if ckpt_path is not None:
            save_checkpoint(ckpt_path, make_state(config, method, results))
        if on_task_end is not None:
            on_task_end(result)
    return RunResult(config, tuple(results))


def same_config(stored: object, config: RunConfig) -> bool:
    """Whether a checkpoint's stored config JSON is ``config``: compared as configs, so a field added
    to the code later (its default filled in) does not orphan checkpoints written before it."""
    if stored == config.to_json():
        return True
    try:
        return RunConfig.from_dict(json.loads(str(stored))) == config
    except (ConfigError, ValueError, TypeError, KeyError):
        return False


def make_state(config: RunConfig, method: Method, results: Sequence[TaskResult]) -> dict[str, Any]:
    """A checkpoint: plain data and tensors only, loadable with ``weights_only=True``."""
    return {"format": CHECKPOINT_FORMAT, "config": config.to_json(), "method": method.state_dict(),
            "results": [r.as_dict() for r in results]}
