"""The study spec: a YAML file -> a typed, validated, frozen ``StudySpec``.

Example (configs/studies/demo.yaml)::

    name: demo
    methods: [memo, bmkp]
    scenario: task_il
    benchmark: {name: seq-fashionmnist, train_per_class: 60, val_fraction: 0.2}
    search:
      bmkp: {width: 8, epochs: 1, gamma: {low: 0.85, high: 0.99}}
    objectives: [avg_acc:max, total_mb:min]
    constraints: ["total_mb <= 8"]
    trials: 12
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from incsweep.analysis.objectives import DEFAULT_OBJECTIVES, Objective, parse_objectives
from incsweep.core.configs import coerce, config_path, from_mapping, read_yaml_file, spec, to_mapping, validate
from incsweep.core.constraints import Constraint, parse_constraints
from incsweep.core.errors import ConfigError
from incsweep.core.params import describe
from incsweep.core.ranges import EVAL_BATCH_SIZE, SEED
from incsweep.core.vocabulary import OPTIMISABLE
from incsweep.incremental.benchmarks import BenchmarkConfig
from incsweep.incremental.methods import get_method
from incsweep.search_spaces import StudySpace, build_space, optuna_name
from incsweep.study.kinds import SAMPLERS, SCHEDULERS, sampler_option_owners
from incsweep.study.summary import DEFAULT_TRIALS, StudyView, _parse_objectives, stored_view
from incsweep.study.trackers import TrackerSpec, parse_trackers

__all__ = ["StudySpec", "StudyView", "stored_view", "Objective", "Constraint", "SchedulerSpec", "SamplerSpec",
           "Resources", "load_spec", "METRICS"]

# Metrics a trial reports on every task (trainables.task_metrics); objectives and constraints pick
# from these. Test metrics are recorded but never optimised (docs/protocols.md: tune on validation).
METRICS = OPTIMISABLE
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # a path segment and an Optuna study name
# docs/study.md, "Tuning protocols": the first is the default.
PROTOCOLS = ("end_of_training", "two_phase", "first_task")


@dataclass(frozen=True)
class SchedulerSpec:
    # fifo runs every trial to the end; asha stops trials at rungs on the task axis (tasks done).
    name: str = spec("fifo", choices=tuple(SCHEDULERS))
    # tasks before the first rung (sweep_efficiency.py: 1 rung compares identical task-0 prefixes)
    grace_period: int = spec(2, range=(1, 1000))
    reduction_factor: float = spec(2.0, range=(1.01, 100.0))  # half of the trials at a rung go on (sweep_efficiency.py)
    # Several objectives: which trials stop at a rung (study/scheduler.py RULES). "dominated": those a
    # (1 - 1/rf) share of the rung dominates; "layer": all but the top 1/rf in non-dominated order.
    rule: str = spec("dominated", choices=("dominated", "layer"))

    def __post_init__(self) -> None:
        validate(self)


@dataclass(frozen=True)
class SamplerSpec:
    """Which Optuna sampler proposes trials; the defaults are Optuna 5's own."""

    # gp: Optuna's Gaussian-process sampler (logEHVI for several objectives: it aims at the
    # hypervolume itself); each proposal fits a GP, ~0.3 CPU-s at 50 trials (measured here).
    name: str = spec("tpe", choices=tuple(SAMPLERS))
    # TPE and GP: random trials before the model takes over (Optuna's default 10). Studies of a few dozen
    # trials spend a large share of their budget there; sweep_efficiency.py measured 5 +
    # multivariate against 10 + independent (docs/efficiency.md).
    startup_trials: int = spec(10, range=(0, 100_000))
    # TPE: model the searched fields jointly (Optuna defaults to independent TPE for several
    # objectives). Sampled with group=True, so the conditional spaces of a multi-method study work.
    multivariate: bool = False
    population_size: int = spec(50, range=(2, 100_000))  # NSGA-II's generation size (Optuna's default 50)
    # TPE: model only the latest `window` finished trials plus the front (study/windowed_tpe.py); None: all.
    # TPE's cost a proposal grows with the trials it models (~19 ms at 1,000, ~190 ms at 10,000 here); at
    # least 50, which is twice the most trials TPE's good side ever holds (Optuna's gamma: 25).
    window: int | None = spec(None, range=(50, None))

    def __post_init__(self) -> None:
        validate(self)
        if not isinstance(self.multivariate, bool):
            raise ConfigError(f"sampler.multivariate={self.multivariate!r} must be true or false")
        if self.window is not None and self.window < self.startup_trials:
            raise ConfigError(f"sampler.window={self.window} is smaller than sampler.startup_trials="
                              f"{self.startup_trials}; TPE would never leave its random start-up")
        # an option set away from its default on a sampler that does not take it is a mistake
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for option in sorted(set(defaults) - {"name"} - SAMPLERS[self.name].options):
            if getattr(self, option) != defaults[option]:
                raise ConfigError(f"sampler.{option} applies to {' and '.join(sampler_option_owners(option))}, "
                                  f"not {self.name}")


@dataclass(frozen=True)
class Resources:
    cpu: float = spec(1.0, range=(0.0, 1024.0))
    # A trial's GPU share: a fraction packs several trials on one GPU (docs/gpu.md). At most 1: a run
    # trains on one device (incremental.run), so a second GPU reserved for it would sit idle.
    gpu: float = spec(0.0, range=(0.0, 1.0))

    def __post_init__(self) -> None:
        if self.gpu > 1:
            raise ConfigError(f"resources.gpu={self.gpu:g}: a trial trains on one GPU, so at most 1 is allowed "
                              "(a fraction such as 0.25 packs several trials on one GPU)")
        validate(self)


@dataclass(frozen=True)
class StudySpec:
    """Everything a study needs; ``search`` stays a mapping until ``space()`` resolves it."""

    name: str
    methods: tuple[str, ...]
    benchmark: BenchmarkConfig
    search: Mapping[str, Any]
    scenario: str | None = None
    objectives: tuple[Objective, ...] = parse_objectives(DEFAULT_OBJECTIVES)
    constraints: tuple[Constraint, ...] = ()
    sampler: SamplerSpec = dataclasses.field(default_factory=SamplerSpec)
    scheduler: SchedulerSpec = dataclasses.field(default_factory=SchedulerSpec)
    trials: int = spec(DEFAULT_TRIALS, range=(1, 100_000))
    concurrency: int | None = spec(None, range=(1, 10_000))  # None: as many as the resources allow
    resources: Resources = dataclasses.field(default_factory=Resources)
    # the run seed of every trial (comparable trials, shared prefixes) and the sampler's
    seed: int = spec(0, range=SEED)
    max_failures: int = spec(2, range=(0, 100))  # Tune retries a failing trial from its last checkpoint
    storage: str | None = None
    optuna_storage: str | None = None  # None: a journal file in the storage directory
    prefix_cache: bool = True
    prefix_cache_max_gb: float = spec(2.0, range=(1e-3, None))  # incremental.prefix_cache.DEFAULT_MAX_BYTES
    eval_batch_size: int = spec(1024, range=EVAL_BATCH_SIZE)  # RunConfig's default
    device: str = spec("auto", choices=("auto", "cpu"))  # auto: the GPU Ray assigns a trial, else cpu
    callbacks: tuple[TrackerSpec, ...] = ()  # experiment trackers (study/trackers.py)
    # Configurations to evaluate first, each {method: M, params: {field: value}} over M's searched
    # fields (Optuna's enqueue_trial): known good settings to start from, or `incsweep confirm`'s list.
    enqueue: tuple[Mapping[str, Any], ...] = ()
    # How the study's answer is measured (docs/study.md, "Tuning protocols"): end_of_training (tune
    # and report on this benchmark); two_phase (GTEP, Cha & Cho 2024: tune here, then the front is
    # run on `evaluate_on`, benchmark fields that replace this one's, e.g. another class order);
    # first_task (Lee et al. 2024: trials run task 0 only and are judged there, then the front runs
    # the whole stream with those values fixed).
    protocol: str = spec("end_of_training", choices=PROTOCOLS)
    evaluate_on: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"name={self.name!r}: use letters, digits, '_', '.', '-' (at most 100)")
        if not self.methods:
            raise ConfigError("methods: name at least one method")
        for m in self.methods:
            cls = get_method(m)
            if self.scenario is not None and self.scenario not in cls.scenarios:
                raise ConfigError(f"scenario={self.scenario!r} is not supported by {m}; it supports {list(cls.scenarios)}")
        if len(set(self.methods)) != len(self.methods):
            raise ConfigError(f"methods: {list(self.methods)} repeats a method")
        if not self.objectives:
            raise ConfigError("objectives: give at least one, e.g. [avg_acc:max, total_mb:min]")
        if len({o.column for o in self.objectives}) != len(self.objectives):
            raise ConfigError("objectives: a metric appears twice")
        validate(self)  # the declared ranges and choices above (RunConfig shares SEED, EVAL_BATCH_SIZE)
        if self.benchmark.val_fraction <= 0 and self.benchmark.val_per_class is None:
            raise ConfigError("benchmark.val_fraction must be > 0 (or benchmark.val_per_class set): study objectives "
                              "are measured on the validation split")
        if self.protocol == "first_task" and SCHEDULERS[self.scheduler.name].stops_early:
            raise ConfigError("scheduler: asha stops trials between tasks, but protocol first_task runs one task per "
                              "trial; use scheduler: {name: fifo}")
        if SCHEDULERS[self.scheduler.name].stops_early and self.scheduler.grace_period >= self.n_tasks:
            raise ConfigError(f"scheduler.grace_period={self.scheduler.grace_period} must be below the "
                              f"benchmark's {self.n_tasks} tasks")
        if (self.protocol == "two_phase") != (self.evaluate_on is not None):
            raise ConfigError("protocol: two_phase needs evaluate_on (benchmark fields to evaluate the front on, e.g. "
                              "{class_order: seed7}); evaluate_on applies to protocol two_phase only")
        if self.evaluate_on is not None:
            evaluation = self.evaluation_benchmark()
            if evaluation == self.benchmark:
                raise ConfigError("evaluate_on: the evaluation benchmark equals the tuning one; change its name, "
                                  "class_order or data (two_phase tunes on one and evaluates on another)")
        space = self.space()  # validate the search section now, not inside trials
        for k, entry in enumerate(self.enqueue):
            where = f"enqueue[{k}]"
            if not isinstance(entry, Mapping) or set(entry) - {"method", "params"} or "method" not in entry:
                raise ConfigError(f"{where}: {entry!r} is not allowed; give {{method: M, params: {{field: value}}}}")
            if entry["method"] not in self.methods:
                raise ConfigError(f"{where}: method {entry['method']!r} is not one of this study's {list(self.methods)}")
            params = entry.get("params") or {}
            if not isinstance(params, Mapping):
                raise ConfigError(f"{where}: params={params!r} is not allowed; give a mapping of field: value")
            searched = space.searched(entry["method"])
            stray = sorted(set(params) - set(searched))
            if stray:
                raise ConfigError(f"{where}: {stray} are not searched for {entry['method']}; allowed: {searched}")
            # the same ranges as the search: an enqueued trial outside them would only fail inside Ray
            for name, value in params.items():
                param = space.params(entry["method"])[name]
                if not param.admits(value):
                    raise ConfigError(f"{where}: {name}={value!r} is outside the search's {describe(param)}")

    @property
    def n_tasks(self) -> int:
        """The tasks each search trial runs: the whole stream, or task 0 alone under first_task."""
        return 1 if self.protocol == "first_task" else len(self.benchmark.task_sizes)

    @property
    def trial_tasks(self) -> int | None:
        """What trials are told to stop after (None: the whole stream)."""
        return 1 if self.protocol == "first_task" else None

    @property
    def evaluates_front(self) -> bool:
        """Whether the search is followed by an evaluation phase (the front run again, study/confirm.py)."""
        return self.protocol in ("two_phase", "first_task")

    def space(self) -> StudySpace:
        return build_space(list(self.methods), self.search)

    def evaluation_benchmark(self) -> BenchmarkConfig:
        """The benchmark the evaluation phase runs the front on: this one with ``evaluate_on``'s fields
        (two_phase), or this one (first_task: the whole stream)."""
        if self.evaluate_on is None:
            return self.benchmark
        if not isinstance(self.evaluate_on, Mapping):
            raise ConfigError(f"evaluate_on: {self.evaluate_on!r} is not allowed; give benchmark fields, e.g. "
                              "{class_order: seed7}")
        return from_mapping(BenchmarkConfig, {**to_mapping(self.benchmark), **self.evaluate_on}, where="evaluate_on")

    def enqueued_params(self) -> list[dict[str, Any]]:
        """``enqueue`` in Optuna's parameter names (what the define-by-run space suggests)."""
        out = []
        for entry in self.enqueue:
            method = entry["method"]
            named = {optuna_name(method, k): v for k, v in (entry.get("params") or {}).items()}
            out.append({"method": method, **named} if len(self.methods) > 1 else named)
        return out

    def base_run(self) -> dict[str, Any]:
        """The RunConfig fields every trial shares (the method and its fields come per trial)."""
        return {"benchmark": to_mapping(self.benchmark), "scenario": self.scenario, "seed": self.seed,
                "eval_batch_size": self.eval_batch_size}

    def to_dict(self) -> dict[str, Any]:
        """Every field as YAML-ready data (what ``study.yaml`` stores and ``from_dict`` reads back)."""
        return {f.name: _serialised(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StudySpec":
        if not isinstance(data, Mapping):
            raise ConfigError("a study spec must be a YAML mapping")
        allowed = {f.name for f in dataclasses.fields(cls)} | {"method"}
        unknown = set(data) - allowed
        if unknown:
            raise ConfigError(f"study spec: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
        d = dict(data)
        if "method" in d:
            if "methods" in d:
                raise ConfigError("study spec: give either method or methods, not both")
            d["methods"] = [d.pop("method")]
        if "name" not in d or "methods" not in d:
            raise ConfigError("study spec: 'name' and 'methods' are required")
        methods = d["methods"]
        if not isinstance(methods, (str, list, tuple)) or not all(isinstance(m, str) for m in
                                                                   ([methods] if isinstance(methods, str) else methods)):
            raise ConfigError(f"methods: {methods!r} is not allowed; give a method name or a list of them")
        d["methods"] = tuple([methods] if isinstance(methods, str) else methods)
        bench = d.get("benchmark") or {}
        if isinstance(bench, str):
            bench = {"name": bench}  # `benchmark: seq-cifar10`, like `scheduler: asha`
        if not isinstance(bench, Mapping):
            raise ConfigError(f"benchmark: {bench!r} is not allowed; give a benchmark name or a mapping like "
                              "{name: seq-fashionmnist, train_per_class: 60}")
        bench = dict(bench)
        if "val_per_class" not in bench:
            bench = {"val_fraction": 0.1, **bench}  # 10% validation unless set (objectives need it)
        d["benchmark"] = from_mapping(BenchmarkConfig, bench, where="benchmark")
        search = d.get("search") or {}
        if not isinstance(search, Mapping):
            raise ConfigError(f"search: {search!r} is not allowed; give a mapping of method -> fields, e.g. "
                              "{replay: {lr: {low: 0.01, high: 0.1}}} (an empty mapping searches the defaults)")
        d["search"] = dict(search)
        if "objectives" in d:
            objs = d["objectives"]
            d["objectives"] = _parse_objectives(objs)
        if "constraints" in d:
            d["constraints"] = parse_constraints(d["constraints"])
        if "scheduler" in d:
            sched = d["scheduler"]
            d["scheduler"] = from_mapping(SchedulerSpec, {"name": sched} if isinstance(sched, str) else sched,
                                          where="scheduler")
        if "sampler" in d:
            smp = d["sampler"]
            d["sampler"] = from_mapping(SamplerSpec, {"name": smp} if isinstance(smp, str) else smp,
                                        where="sampler")
        if "resources" in d:
            d["resources"] = from_mapping(Resources, d["resources"] or {}, where="resources")
        if "callbacks" in d:
            d["callbacks"] = parse_trackers(d["callbacks"])
        if "enqueue" in d:
            entries = d["enqueue"] or []
            if not isinstance(entries, (list, tuple)):
                raise ConfigError(f"enqueue: {entries!r} is not allowed; give a list of {{method: M, params: {{...}}}}")
            d["enqueue"] = tuple(dict(e) if isinstance(e, Mapping) else e for e in entries)
        # Scalars through the config machinery RunConfig uses: strict types, no coercion
        # (coerced, trials 2.7 ran 2 trials and seed true ran seed 1).
        for key in _SCALARS:
            if key in d:
                d[key] = coerce(cls, key, d[key])
        return cls(**d)

    def with_storage(self, storage: str | None) -> "StudySpec":
        return self if storage is None else dataclasses.replace(self, storage=storage)


# StudySpec fields that are plain scalars (the rest are parsed by their own types above)
_SCALARS = ("trials", "concurrency", "seed", "max_failures", "storage", "optuna_storage", "prefix_cache",
            "prefix_cache_max_gb", "eval_batch_size", "device", "scenario", "name", "protocol")


def _serialised(value: Any) -> Any:
    """A spec field's value as plain data: objectives and constraints in their spec syntax, trackers
    by their own ``to_dict``, config dataclasses as mappings, collections element by element."""
    if isinstance(value, (Objective, Constraint)):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_mapping(value)
    if isinstance(value, (list, tuple)):
        return [_serialised(v) for v in value]
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def stored_spec(storage: str) -> tuple[dict[str, Any], StudySpec]:
    """The spec a study keeps in its storage (``study.yaml``), as stored and parsed (storage set)."""
    from incsweep.core.layout import StudyLayout

    data = StudyLayout(storage).read_spec()
    if data is None:
        raise FileNotFoundError(f"{storage} holds no study (no study.yaml); start one with `incsweep study run SPEC.yaml`")
    return data, StudySpec.from_dict({**data, "storage": storage})


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a study spec: a file, or the name of a spec incsweep ships (``demo``, ``tiny``)."""
    return StudySpec.from_dict(read_yaml_file(config_path(path, "study spec"), "study spec") or {})
