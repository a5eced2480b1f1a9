"""One vocabulary, one Objective, one dominance module, typed boundaries, scoped process state."""

from __future__ import annotations

import ast
import dataclasses
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from incsweep.core.errors import ConfigError
from incsweep.core.memory_report import MemoryReport
from incsweep.core.metrics import Metrics
from incsweep.core.vocabulary import (
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

ROOT = Path(__file__).resolve().parents[2]
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
    from incsweep.core.schema import RESULTS_SCHEMA
    from incsweep.study.results import task_row
    from incsweep.trainables.trial import task_metrics

    names = RESULTS_SCHEMA.names
    assert set(REPORTED) <= set(names)
    # every numeric schema column is either a vocabulary name, one of the row's bookkeeping integers or
    # the constraint verdict (incsweep/core/constraints.py): a metric added to the schema by hand (and
    # nowhere else) fails here
    numeric = {f.name for f in RESULTS_SCHEMA if f.type in ("double", "int64", "int32")}
    assert numeric - set(REPORTED) == {"task", "n_tasks", "tasks_done", "seed", "violation", "trial_number"}
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
    """The vocabulary names are written in incsweep/core/vocabulary.py (and the dataclasses) only."""
    files = [p for d in LIBRARY for p in (ROOT / d).rglob("*.py")] + [ROOT / "incremental" / "run.py"]
    found = [f"{p.relative_to(ROOT)}:{line} {value!r}" for p in files for line, value in _string_constants(p)
             if value in REPORTED]
    assert not found, "metric names spelled out outside incsweep/core/vocabulary.py: " + ", ".join(found)


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
    from incsweep.core import ranges
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


def test_pareto_asha_is_seeded_from_task_rows_and_keeps_earlier_decisions():
    """A resumed study seeds the rungs with its earlier trials' task rows (study/resume.py): a
    continued trial is not judged again at a rung it passed, and newcomers meet the old records."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from incsweep.study.scheduler import ParetoASHA

    a = ParetoASHA(metrics=["avg_acc", "total_mb"], modes=["max", "min"], max_t=8, grace_period=2)
    rows = {"old": [{"task": 0, "avg_acc": 0.9, "total_mb": 1.0}, {"task": 1, "avg_acc": 0.9, "total_mb": 1.0}],
            "old2": [{"task": 1, "avg_acc": 0.8, "total_mb": 0.9}, {"task": 3, "avg_acc": 0.8, "total_mb": 0.9}],
            "nan": [{"task": 1, "avg_acc": None, "total_mb": 1.0}]}
    assert a.seed(rows) == 3  # rung 2 (task 1) twice, rung 4 (task 3) once; the NaN point is not recorded
    assert len(a._recorded[2]) == 2 and len(a._recorded[4]) == 1
    # "old" continued under a new Tune trial (config key): rung 2 was decided before the kill
    cont = SimpleNamespace(trial_id="new-tune-id", config={"key": "old"})
    assert a.on_trial_result(None, cont, {"tasks_done": 2, "avg_acc": 0.0, "total_mb": 99.0}) == TrialScheduler.CONTINUE
    assert len(a._recorded[2]) == 2
    # a newcomer dominated by both recorded points stops at rung 2
    fresh = SimpleNamespace(trial_id="fresh", config={})
    assert a.on_trial_result(None, fresh, {"tasks_done": 2, "avg_acc": 0.1, "total_mb": 5.0}) == TrialScheduler.STOP
    assert "fresh" in a.stopped


@pytest.mark.parametrize("mode", ["max", "min"])
def test_one_objective_asha_decides_as_rays_asha(mode):
    """With one objective the study's scheduler takes Ray's ASHA's decisions (so it can be seeded on
    resume, which Ray's cannot): every report of 60 trials until all stop or end, every decision equal."""
    import random
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler

    from incsweep.study.scheduler import ParetoASHA

    ours = ParetoASHA(metrics=["avg_acc"], modes=[mode], max_t=9, grace_period=1, reduction_factor=3)
    ray_asha = ASHAScheduler(time_attr="tasks_done", metric="avg_acc", mode=mode, max_t=9, grace_period=1,
                             reduction_factor=3)
    rng = random.Random(0)
    trials = [SimpleNamespace(trial_id=f"t{i}", config={}) for i in range(60)]
    for t in trials:
        ray_asha.on_trial_add(None, t)
    progress = {t.trial_id: 0 for t in trials}
    stopped: set[str] = set()
    decisions = 0
    while active := [t for t in trials if t.trial_id not in stopped and progress[t.trial_id] < 8]:
        t = rng.choice(active)
        progress[t.trial_id] += 1
        result = {"tasks_done": progress[t.trial_id], "avg_acc": rng.random()}
        mine, theirs = ours.on_trial_result(None, t, result), ray_asha.on_trial_result(None, t, result)
        assert mine == theirs, (t.trial_id, result)
        if mine == "STOP":
            stopped.add(t.trial_id)
        decisions += 1
    assert decisions > 100 and 10 < len(stopped) < 60  # the rule did stop trials: not a vacuous comparison
