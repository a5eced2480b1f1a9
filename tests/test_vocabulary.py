"""One vocabulary, one Objective, one dominance module, typed boundaries, scoped process state (issue 16)."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from incsweep.incremental.errors import ConfigError
from incsweep.incremental.memory_report import MemoryReport
from incsweep.incremental.metrics import Metrics
from incsweep.incremental.vocabulary import (
    ACCURACY_METRICS,
    AVG_ACC,
    LAST_ACC,
    MEMORY_COLUMNS,
    MEMORY_METRIC,
    OPTIMISABLE,
    REPORTED,
    TEST_METRICS,
    WALL_TIME,
)

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("study", "analysis", "trainables", "search_spaces")


def _task_result(task: int = 1, n_tasks: int = 3):
    from incsweep.incremental.run import TaskResult

    m = Metrics(avg_acc=0.5, last_acc=0.4, forgetting=0.1, bwt=-0.1)
    return TaskResult(task=task, n_tasks=n_tasks, scenario="class_il", acc_row=(0.5, 0.4), val_acc_row=(0.6, 0.5),
                      seen_acc=0.45, val_seen_acc=0.55, test=m, val=m,
                      memory=MemoryReport(model_bytes=1000, exemplar_bytes=200, extra_bytes=30, n_exemplars=2,
                                          train_state_bytes=7),
                      wall_s=1.5, elapsed_s=3.0, method_stats={"working_acc": 0.9})


def test_vocabulary_is_derived_from_the_engine_dataclasses():
    assert ACCURACY_METRICS == tuple(f.name for f in dataclasses.fields(Metrics))
    assert TEST_METRICS == tuple("test_" + n for n in ACCURACY_METRICS)
    stored = [f.name for f in dataclasses.fields(MemoryReport)]
    assert list(MEMORY_COLUMNS) == stored + list(MemoryReport.DERIVED)
    assert MEMORY_COLUMNS["total_mb"] is float and all(MEMORY_COLUMNS[n] is int for n in stored)
    report = MemoryReport(model_bytes=3, exemplar_bytes=4, extra_bytes=5)
    assert list(report.as_dict()) == list(MEMORY_COLUMNS) and report.as_dict()["total_bytes"] == 12
    # the names code reads by meaning are fields of the dataclasses
    assert {AVG_ACC, LAST_ACC} <= set(ACCURACY_METRICS) and MEMORY_METRIC in MEMORY_COLUMNS
    assert set(OPTIMISABLE) <= set(REPORTED) and WALL_TIME in OPTIMISABLE


def test_schema_rows_reports_and_export_follow_the_vocabulary():
    from incsweep.analysis.export import _METRICS
    from incsweep.study.results import task_row
    from incsweep.study.schema import RESULTS_SCHEMA
    from incsweep.trainables.trial import task_metrics

    names = RESULTS_SCHEMA.names
    assert set(REPORTED) <= set(names)
    # every numeric schema column is either a vocabulary name, one of the row's bookkeeping integers or
    # the constraint verdict (incremental/constraints.py): a metric added to the schema by hand (and
    # nowhere else) fails here
    numeric = {f.name for f in RESULTS_SCHEMA if f.type in ("double", "int64", "int32")}
    assert numeric - set(REPORTED) == {"task", "n_tasks", "tasks_done", "seed", "violation"}
    result = _task_result()
    row = task_row(result, study="s", trial_id="t", method="replay", benchmark="b", seed=0, config_json="{}",
                   params={}, started_at=None, version="v")
    assert set(row) == set(names) | {"stat_working_acc"}
    assert row["total_bytes"] == 1230 and row["train_state_bytes"] == 7 and row["test_bwt"] == -0.1
    from incsweep.incremental.run import RunConfig

    cfg = RunConfig.from_dict({"method": "finetune", "benchmark": {"name": "synthetic"}})
    reported = task_metrics(result, cfg, "2026-01-01T00:00:00+00:00")
    assert set(OPTIMISABLE) <= set(reported)
    assert tuple(_METRICS) == REPORTED


@pytest.mark.parametrize("metric", OPTIMISABLE)
def test_every_optimisable_metric_is_a_valid_objective_and_constraint(metric):
    from incsweep.study.spec import StudySpec

    base = {"name": "v", "methods": ["finetune"], "benchmark": {"name": "synthetic"},
            "search": {"finetune": {"backbone": "tiny", "width": 4}}}
    spec = StudySpec.from_dict({**base, "objectives": [f"{metric}:min"], "constraints": [f"{metric} <= 1e9"]})
    assert spec.objectives[0].column == metric and spec.constraints[0].metric == metric


def _string_constants(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def test_no_library_module_spells_out_a_metric_name():
    """The vocabulary names are written in incremental/vocabulary.py (and the dataclasses) only."""
    files = [p for d in LIBRARY for p in (ROOT / d).rglob("*.py")] + [ROOT / "incremental" / "run.py"]
    found = [f"{p.relative_to(ROOT)}:{line} {value!r}" for p in files for line, value in _string_constants(p)
             if value in REPORTED]
    assert not found, "metric names spelled out outside incremental/vocabulary.py: " + ", ".join(found)


def test_one_objective_type_and_one_dominance_module():
    from incsweep.analysis.objectives import Objective
    from incsweep.study import spec

    assert spec.Objective is Objective
    defined: dict[str, list[str]] = {}
    for p in [p for d in (*LIBRARY, "incremental", "benchmarks") for p in (ROOT / d).rglob("*.py")]:
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.ClassDef, ast.FunctionDef)) and (
                    node.name == "Objective" or "dominat" in node.name or node.name in ("hypervolume", "_front")):
                defined.setdefault(node.name, []).append(str(p.relative_to(ROOT)))
    assert defined.pop("Objective") == ["analysis/objectives.py"]
    assert defined.pop("hypervolume") == ["analysis/hypervolume.py"]
    # the scheduler's rules are built on dominance.py's primitives, not their own comparisons
    assert defined.pop("keep_by_dominators") == ["study/scheduler.py"]
    assert all(where == ["analysis/dominance.py"] for where in defined.values()), defined


def test_trial_config_is_the_typed_ray_boundary():
    from incsweep.trainables.boundary import TrialConfig

    base = {"benchmark": {"name": "synthetic"}, "seed": 3, "scenario": "class_il"}
    shared = TrialConfig.shared(study="s", base=base, device="cpu", prefix_cache=None, prefix_cache_max_bytes=None,
                                threads=2)
    tune_config = {**shared, "method": "replay", "params": {"lr": 0.1}, "replay.lr": 0.1}  # OptunaSearch's flat copy
    trial = TrialConfig.from_tune(tune_config)
    assert (trial.method, trial.benchmark, trial.seed, trial.threads, dict(trial.params)) == (
        "replay", "synthetic", 3, 2, {"lr": 0.1})
    assert TrialConfig.from_tune(trial.to_tune()) == trial
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['colour'\]"):
        TrialConfig.from_tune({**tune_config, "colour": 1})
    with pytest.raises(ConfigError, match=r"missing key\(s\) \['method'\]"):
        TrialConfig.from_tune(shared)
    with pytest.raises(ConfigError, match="threads=0"):
        TrialConfig.shared(study="s", base=base, device="cpu", prefix_cache=None, prefix_cache_max_bytes=None,
                           threads=0)


def test_budget_plan_carries_typed_fields():
    from incsweep.incremental.benchmarks import BenchmarkConfig
    from incsweep.incremental.methods import METHODS

    bench = BenchmarkConfig(name="synthetic")
    replay = METHODS["replay"]
    plan = replay.plan(replay.config_cls(memory_size=40), bench)
    assert plan.exemplar_total == 40 and plan.backbone_params and "exemplar_total" not in plan.details
    assert plan.report().total_bytes == plan.total_bytes
    bmkp = METHODS["bmkp"].plan(METHODS["bmkp"].config_cls(), bench)
    assert bmkp.train_state_bytes > 0 and bmkp.report().train_state_bytes == bmkp.train_state_bytes


def test_shared_field_ranges_are_declared_once():
    from incsweep.incremental import ranges
    from incsweep.incremental.methods import METHODS
    from incsweep.incremental.training import Schedule

    for cls in [Schedule, *(m.config_cls for m in METHODS.values())]:
        for f in dataclasses.fields(cls):
            if f.name == "batch_size":
                assert f.metadata["range"] is ranges.BATCH_SIZE, cls
            if f.name in ("lr", "init_lr"):
                assert f.metadata["range"] is ranges.LR, cls


def test_a_run_leaves_the_process_state_as_it_found_it():
    from incsweep.incremental.run import RunConfig, build_method, run

    torch.manual_seed(123)
    np.random.seed(123)
    threads = torch.get_num_threads()
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    cfg = RunConfig.from_dict({"method": "finetune", "threads": 1 if threads != 1 else 2,
                               "benchmark": {"name": "synthetic", "n_classes": 4, "increment": 2, "image_size": 8,
                                             "train_per_class": 8, "test_per_class": 4},
                               "method_config": {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 8}})
    build_method(cfg, torch.device("cpu"))
    run(cfg)
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], numpy_state)


def test_study_helpers_scope_optuna_verbosity_and_the_environment():
    import optuna

    from incsweep.study.runner import _env_default, _optuna_quiet

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.DEBUG)
    try:
        with _optuna_quiet(optuna):
            assert optuna.logging.get_verbosity() == optuna.logging.WARNING
        assert optuna.logging.get_verbosity() == optuna.logging.DEBUG
    finally:
        optuna.logging.set_verbosity(before)
    name = "INCSWEEP_TEST_ENV_DEFAULT"
    with _env_default(name, "0"):
        assert os.environ[name] == "0"
    assert name not in os.environ
    os.environ[name] = "user"
    try:
        with _env_default(name, "0"):
            assert os.environ[name] == "user"
        assert os.environ[name] == "user"
    finally:
        del os.environ[name]


def test_pareto_asha_state_is_json_and_a_planted_pickle_is_refused(tmp_path):
    from incsweep.study.scheduler import ParetoASHA

    def make():
        return ParetoASHA(metrics=["avg_acc", "total_mb"], modes=["max", "min"], max_t=8, grace_period=2)

    a = make()
    a._recorded[2].append([-0.5, 1.0])
    a._seen["t1"] = {2}
    a.stopped.add("t0")
    path = tmp_path / "sched.json"
    a.save(str(path))
    json.loads(path.read_text())  # plain JSON on disk
    b = make()
    b.restore(str(path))
    assert (b._recorded, b._seen, b.stopped) == (a._recorded, a._seen, a.stopped)

    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path.write_bytes(pickle.dumps(Planted()))
    with pytest.raises(ConfigError, match="scheduler state .* is unreadable"):
        make().restore(str(path))
    assert not marker.exists()
