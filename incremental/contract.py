"""The method contract, as executable checks: what every built-in method passes (tests/
test_methods_contract.py runs these for each) and what ``incsweep check-method`` runs for any
method, a user's included, on a tiny synthetic benchmark.

Each check trains real tiny runs and raises :class:`ContractViolation` with what differed:
- ``reports``: every task reports finite metrics in [0, 1] and a consistent MemoryReport;
- ``same_seed_same_state``: two runs of one config end in bit-identical metrics and state;
- ``resume_equals_uninterrupted``: stopping after task 1 and resuming from the checkpoint gives
  the uninterrupted run's metrics and state, bit for bit;
- ``memory_equals_plan``: after every task memory() accounts for every tensor the method holds, by
  the engine's census (census.py), and after the last task it equals plan() (or is at most it, part
  by part, where ``plan_is_exact`` is False); the state loaded back is counted too;
- ``state_round_trip``: the final state, saved with torch.save and loaded with weights_only=True
  into a fresh method, predicts exactly what the run reported;
- ``prefix_fields_sound``: changing the fields ``fields_for_tasks`` says task 0 ignores leaves
  task 0's results and state bit-identical (the prefix cache shares states on that promise);
- ``other_scenario``: a method offering a second scenario runs in it too.
"""

from __future__ import annotations

import dataclasses
import io
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from incsweep.core.configs import apply_overrides
from incsweep.core.errors import ConfigError
from incsweep.core.vocabulary import CPU_TIME, WALL_TIME
from incsweep.incremental.benchmarks import Benchmark, load_benchmark
from incsweep.incremental.census import MemoryMisreport, audit_memory, plan_mismatches
from incsweep.incremental.memory import MB
from incsweep.incremental.methods import Method, get_method
from incsweep.incremental.run import CHECKPOINT_FILE, RunConfig, RunResult, build_method, evaluate, load_checkpoint, run

__all__ = ["ContractViolation", "CheckResult", "CHECKS", "TINY_BENCHMARK", "TINY_FIELDS", "tiny_config",
           "Contract", "check_method", "assert_same_state"]

# 3 tasks x 2 classes of 16x16 RGB images, with a validation split: every check runs in seconds.
TINY_BENCHMARK: Mapping[str, Any] = {"name": "synthetic", "n_classes": 6, "image_size": 16, "train_per_class": 24,
                                     "test_per_class": 8, "val_fraction": 0.25}
# "Tiny and fast" method-config fields; each is used only where the method's config has it.
# init_epochs: MEMO/DER default to the paper's 200-epoch first task; retrain_epochs, example_num: BMKP's.
TINY_FIELDS: Mapping[str, Any] = {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 16, "memory_size": 12,
                                  "init_epochs": 1, "retrain_epochs": 1, "example_num": 16}
MAX_TINY_MB = 1.0  # a tiny config stores well under 1 MB; more means the settings are not tiny
TIMING = (WALL_TIME, "elapsed_s", CPU_TIME, "phase_s")


class ContractViolation(AssertionError):
    """A method broke the contract: the message says which promise and what differed."""


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    seconds: float


def tiny_config(method: str, overrides: Mapping[str, Any] | None = None, *,
                run_fields: Mapping[str, Any] | None = None, **fields: Any) -> RunConfig:
    """``method`` on TINY_BENCHMARK with TINY_FIELDS (those its config has), then ``overrides`` and
    ``fields`` (method-config fields) and ``run_fields`` (RunConfig fields such as ``threads``, or
    ``benchmark.<field>``). A config that is invalid or plans more than 1 MB is a ContractViolation."""
    cls = get_method(method)
    choices = {f.name: f.metadata.get("choices") for f in dataclasses.fields(cls.config_cls)}
    # A tiny value the field does not allow (BMKP has one backbone) leaves that field at its default.
    values = {k: v for k, v in TINY_FIELDS.items() if k in choices and v in (choices[k] or (v,))}
    values.update(overrides or {})
    values.update(fields)
    data: dict[str, Any] = {"method": method, "benchmark": dict(TINY_BENCHMARK), "method_config": values}
    for key, value in (run_fields or {}).items():
        data = apply_overrides(data, key.split("."), value)
    try:
        cfg = RunConfig.from_dict(data)
    except ConfigError as err:
        raise ContractViolation(f"{method}: no workable tiny settings ({err}); pass the fields that make it tiny "
                                "(incsweep check-method --set FIELD=VALUE)") from None
    plan = cls.plan(cfg.method_config, cfg.benchmark)
    if plan.total_bytes > MAX_TINY_MB * MB:
        raise ContractViolation(f"{method}: the tiny settings {values} plan {plan.total_bytes / MB:.2f} MB "
                                f"(> {MAX_TINY_MB} MB): not tiny; pass smaller settings with --set")
    return cfg


def comparable(result: RunResult) -> list[dict[str, Any]]:
    """Everything a run reports except the timings."""
    return [{k: v for k, v in t.as_dict().items() if k not in TIMING} for t in result.tasks]


def assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    """Bit-identical nested state (tensors by dtype and value), else a ContractViolation naming the key."""
    if type(a) is not type(b):
        raise ContractViolation(f"{where}: {type(a).__name__} vs {type(b).__name__}")
    if isinstance(a, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
            diff = (a.double() - b.double()).abs().max().item() if a.shape == b.shape else float("nan")
            raise ContractViolation(f"{where}: tensors differ (max |diff| {diff:.3g})")
    elif isinstance(a, dict):
        if a.keys() != b.keys():
            raise ContractViolation(f"{where}: keys differ ({sorted(map(str, a.keys() ^ b.keys()))})")
        for k in a:
            assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        if len(a) != len(b):
            raise ContractViolation(f"{where}: lengths {len(a)} vs {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif a != b and not (isinstance(a, float) and math.isnan(a) and math.isnan(b)):
        raise ContractViolation(f"{where}: {a!r} vs {b!r}")


def _same_results(a: RunResult, b: RunResult, what: str) -> None:
    ca, cb = comparable(a), comparable(b)
    for t, (x, y) in enumerate(zip(ca, cb)):
        if x != y:
            keys = sorted(k for k in x if x.get(k) != y.get(k))
            raise ContractViolation(f"{what}: task {t} reports differ in {keys}")
    if len(ca) != len(cb):
        raise ContractViolation(f"{what}: {len(ca)} vs {len(cb)} tasks")


class Contract:
    """The checks for one config: a reference run is trained once and shared by the checks."""

    def __init__(self, config: RunConfig, workdir: str | Path, benchmark: Benchmark | None = None):
        self.config = config
        self.workdir = Path(workdir)
        self.bench = benchmark if benchmark is not None else load_benchmark(config.benchmark)
        self._reference: tuple[RunResult, Path] | None = None
        self._runs = 0
        # What the engine's memory census found in the checks' runs (census.py): judged by
        # memory_equals_plan, so that the other checks judge the runs on their own promises.
        self.memory_findings: list[MemoryMisreport] = []

    def _dir(self, name: str) -> Path:
        self._runs += 1
        path = self.workdir / f"{self._runs:02d}-{name}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _run(self, config: RunConfig, **kwargs: Any) -> RunResult:
        """A run of the checks: the engine's census findings are recorded (memory_equals_plan judges
        them), so that each other check judges its own promise only."""
        return run(config, benchmark=self.bench, memory_findings=self.memory_findings, **kwargs)

    @property
    def reference(self) -> tuple[RunResult, Path]:
        """One uninterrupted run and the directory of its final checkpoint."""
        if self._reference is None:
            ckpt = self._dir("reference")
            self._reference = self._run(self.config, checkpoint_dir=ckpt), ckpt
        return self._reference

    def final_state(self, ckpt: Path) -> dict[str, Any]:
        return load_checkpoint(ckpt / CHECKPOINT_FILE)["method"]

    def final_method(self, ckpt: Path) -> Method:
        """A fresh method with the final state of the run checkpointed in ``ckpt`` loaded."""
        method = build_method(self.config, torch.device(self.config.device))
        method.load_state_dict(self.final_state(ckpt))
        return method

    def reports(self) -> None:
        result, _ = self.reference
        n = len(self.bench.tasks)
        if not result.complete or len(result.tasks) != n:
            raise ContractViolation(f"the run reported {len(result.tasks)} of {n} tasks")
        for t, task in enumerate(result.tasks):
            if len(task.acc_row) != t + 1 or len(task.val_acc_row) != t + 1:
                raise ContractViolation(f"task {t}: accuracy rows have {len(task.acc_row)} entries, want {t + 1}")
            bad = [a for a in task.acc_row + task.val_acc_row if not 0.0 <= a <= 1.0]
            if bad:
                raise ContractViolation(f"task {t}: accuracies {bad} outside [0, 1]")
            nonfinite = sorted(k for k, v in task.flat().items() if isinstance(v, float) and not math.isfinite(v))
            if nonfinite:
                raise ContractViolation(f"task {t}: non-finite {nonfinite}")
            mem = task.memory
            if mem.model_bytes <= 0 or min(mem.exemplar_bytes, mem.extra_bytes, mem.n_exemplars,
                                           mem.train_state_bytes) < 0:
                raise ContractViolation(f"task {t}: memory() is not positive model bytes and non-negative parts: {mem}")

    def same_seed_same_state(self) -> None:
        result, ckpt = self.reference
        again = self._dir("same-seed")
        _same_results(self._run(self.config, checkpoint_dir=again), result, "a second run of the same config")
        assert_same_state(self.final_state(again), self.final_state(ckpt))

    def resume_equals_uninterrupted(self) -> None:
        result, ckpt = self.reference
        path = self._dir("resume")
        first = self._run(self.config, checkpoint_dir=path, stop_after=1)
        if len(first.tasks) != 1 or first.complete:
            raise ContractViolation("stop_after=1 did not stop after one task")
        resumed = self._run(self.config, checkpoint_dir=path)
        _same_results(resumed, result, "the run resumed after task 1")
        assert_same_state(self.final_state(path), self.final_state(ckpt))

    def memory_equals_plan(self) -> None:
        result, ckpt = self.reference
        if self.memory_findings:  # the engine's census after each task, and the plan after the last
            raise ContractViolation(str(self.memory_findings[0]))
        cls = get_method(self.config.method)
        plan = cls.plan(self.config.method_config, self.config.benchmark)
        off = plan_mismatches(result.final.memory, plan, exact=cls.plan_is_exact)
        if off:
            raise ContractViolation("memory() after the last task vs plan(): " + "; ".join(off))
        # What load_state_dict rebuilds (a resumed run, the prefix cache) is counted too.
        method = self.final_method(ckpt)
        try:
            audit_memory(method, method.memory(), image_bytes=self.bench.image_bytes,
                         where="after load_state_dict of the final state")
        except MemoryMisreport as exc:
            raise ContractViolation(str(exc)) from None

    def state_round_trip(self) -> None:
        result, ckpt = self.reference
        cfg = self.config
        method = self.final_method(ckpt)
        row, seen = evaluate(method, self.bench.tasks, "test", cfg.task_scenario)
        if tuple(row) != result.final.acc_row or seen != result.final.seen_acc:
            raise ContractViolation(f"the loaded final state scores {row}, the run reported {result.final.acc_row}")
        if method.memory() != result.final.memory:
            raise ContractViolation(f"memory() of the loaded state {method.memory()} != the run's {result.final.memory}")
        buf = io.BytesIO()
        torch.save(method.state_dict(), buf)
        buf.seek(0)
        again = build_method(cfg, torch.device(cfg.device))
        try:
            again.load_state_dict(torch.load(buf, weights_only=True))
        except Exception as exc:  # noqa: BLE001 - the check's verdict is the message
            raise ContractViolation(f"state_dict() does not survive torch.load(weights_only=True): "
                                    f"{type(exc).__name__}: {exc}") from None
        x = self.bench.tasks[-1].test.x
        task_id = len(self.bench.tasks) - 1 if cfg.scenario == "task_il" else None
        if not torch.equal(again.predict(x, task_id), method.predict(x, task_id)):
            raise ContractViolation("after torch.save/load the method predicts differently")
        assert_same_state(again.state_dict(), method.state_dict())

    def prefix_fields_sound(self, make: Callable[..., RunConfig] | None = None) -> None:
        cfg = self.config
        cls = get_method(cfg.method)
        declared = cls.fields_for_tasks(cfg.method_config, 1)
        if declared is None:
            return  # nothing promised: every field counts
        known = {f.name for f in dataclasses.fields(cfg.method_config)}
        if not declared <= known:
            raise ContractViolation(f"fields_for_tasks names unknown fields {sorted(declared - known)}")
        alternatives = {}
        for f in dataclasses.fields(cfg.method_config):
            if f.name in declared:
                continue
            other = _other_value(getattr(cfg.method_config, f.name), f)
            if other is None:
                continue
            try:
                dataclasses.replace(cfg.method_config, **{f.name: other})
            except (ConfigError, TypeError, ValueError):
                continue  # no valid different value for this field alone
            alternatives[f.name] = other
        try:
            changed = dataclasses.replace(cfg, method_config=dataclasses.replace(cfg.method_config, **alternatives))
        except (ConfigError, TypeError, ValueError):
            return  # the alternatives are only valid one at a time
        a, b = self._dir("prefix-a"), self._dir("prefix-b")
        ra = self._run(cfg, checkpoint_dir=a, stop_after=1)
        rb = self._run(changed, checkpoint_dir=b, stop_after=1)
        _same_results(ra, rb, f"changing {alternatives} (declared irrelevant to task 0)")
        assert_same_state(self.final_state(a), self.final_state(b))

    def other_scenario(self) -> None:
        cls = get_method(self.config.method)
        if len(cls.scenarios) < 2:
            return
        other = next(s for s in cls.scenarios if s != self.config.scenario)
        result = self._run(dataclasses.replace(self.config, scenario=other), stop_after=2)
        for task in result.tasks:
            if task.scenario != other or not all(0.0 <= a <= 1.0 for a in task.acc_row):
                raise ContractViolation(f"in {other}: task {task.task} reports {task.acc_row}")


def _other_value(value: Any, field: dataclasses.Field) -> Any:
    """A different value for a config field, or None where no obvious one exists."""
    choices = field.metadata.get("choices")
    if isinstance(value, bool):
        return not value
    if choices:
        return next((c for c in choices if c != value), None)
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value else 0.1
    return None


CHECKS: tuple[str, ...] = ("reports", "same_seed_same_state", "resume_equals_uninterrupted", "memory_equals_plan",
                           "state_round_trip", "prefix_fields_sound", "other_scenario")


def check_method(method: str, overrides: Mapping[str, Any] | None = None, *, checks: tuple[str, ...] = CHECKS,
                 workdir: str | Path | None = None, run_fields: Mapping[str, Any] | None = None,
                 on_result: Callable[[CheckResult], None] | None = None) -> list[CheckResult]:
    """Run the contract checks for ``method`` on its tiny config (``overrides``: method-config fields;
    ``run_fields``: RunConfig fields, e.g. ``{"threads": 2}``); a failed check does not stop the rest."""
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ConfigError(f"unknown check(s) {unknown}; allowed: {list(CHECKS)}")
    cfg = tiny_config(method, overrides, run_fields=run_fields)
    with tempfile.TemporaryDirectory(prefix="incsweep-contract-") as tmp:
        contract = Contract(cfg, workdir or tmp)
        results = []
        for name in checks:
            tic = time.perf_counter()
            try:
                getattr(contract, name)()
                result = CheckResult(name, True, "", time.perf_counter() - tic)
            except ContractViolation as exc:
                result = CheckResult(name, False, str(exc), time.perf_counter() - tic)
            except Exception as exc:  # noqa: BLE001 - a method that crashes fails the check, with the reason
                result = CheckResult(name, False, f"raised {type(exc).__name__}: {exc}", time.perf_counter() - tic)
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results
