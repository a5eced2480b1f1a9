"""The contract every registered method keeps, checked for EVERY entry of METHODS by real tiny runs.

A method added to the registry is picked up automatically. It runs with the generic tiny settings
below unless FAST has an entry for it; a method for which neither gives a valid, small config
fails loudly (add an entry to FAST).
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Any

import pytest
import torch
from conftest import TINY_BENCHMARK as BENCH  # 3 tasks x 2 classes, with a validation split

from incsweep.incremental.benchmarks import load_benchmark
from incsweep.incremental.errors import ConfigError
from incsweep.incremental.memory import MB
from incsweep.incremental.methods import METHODS, ExemplarConfig
from incsweep.incremental.run import CHECKPOINT_FILE, RunConfig, RunResult, build_method, evaluate, load_checkpoint, run

N_TASKS = 3

# Generic "tiny and fast" method-config fields; each is used only if the method's config has it.
GENERIC = {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 16, "memory_size": 12}
# Methods whose defaults the generic fields cannot make tiny (another network, extra cost knobs).
FAST: dict[str, dict[str, Any]] = {
    "bmkp": {"width": 4, "epochs": 1, "retrain_epochs": 1, "batch_size": 16, "example_num": 16},
    "separate": {"width": 4, "epochs": 1, "batch_size": 16},
    # memo/der default to the paper's 200-epoch first task: make it 1 epoch too.
    "memo": {**GENERIC, "init_epochs": 1},
    "der": {**GENERIC, "init_epochs": 1},
}
MAX_PLAN_MB = 1.0  # a tiny config stores well under 1 MB; more means the settings are not tiny

TIMING = ("wall_s", "elapsed_s")


def tiny_config(name: str, **overrides: Any) -> RunConfig:
    method_cls = METHODS[name]
    if name in FAST:
        fields = dict(FAST[name])
    else:
        names = {f.name for f in dataclasses.fields(method_cls.config_cls)}
        fields = {k: v for k, v in GENERIC.items() if k in names}
    fields.update(overrides)
    try:
        cfg = RunConfig.from_dict({"method": name, "benchmark": BENCH, "method_config": fields})
    except ConfigError as err:
        pytest.fail(f"method {name!r} has no workable tiny settings ({err}); add an entry for it to FAST "
                    "in tests/test_methods_contract.py")
    plan = method_cls.plan(cfg.method_config, cfg.benchmark)
    if plan.total_bytes > MAX_PLAN_MB * MB:
        pytest.fail(f"method {name!r}: the tiny settings {fields} plan {plan.total_bytes / MB:.2f} MB "
                    f"(> {MAX_PLAN_MB} MB): not tiny; add an entry for it to FAST in tests/test_methods_contract.py")
    return cfg


def comparable(result: RunResult) -> list[dict[str, Any]]:
    """Everything a run reports except the timings."""
    return [{k: v for k, v in t.as_dict().items() if k not in TIMING} for t in result.tasks]


@pytest.fixture(scope="module")
def bench():
    return load_benchmark(tiny_config("finetune").benchmark)


@pytest.fixture(scope="module", params=sorted(METHODS))
def reference(request, bench, tmp_path_factory):
    """One uninterrupted run per method, with the checkpoint it leaves behind."""
    cfg = tiny_config(request.param)
    ckpt = tmp_path_factory.mktemp(f"ref-{request.param}")
    return cfg, run(cfg, benchmark=bench, checkpoint_dir=ckpt), ckpt


def test_registry_is_covered():
    assert {"finetune", "replay", "icarl", "joint"} <= set(METHODS)
    for name, cls in METHODS.items():
        assert cls.scenarios, f"{name} declares no scenario"
        assert set(cls.scenarios) <= {"class_il", "task_il"}


def test_every_task_reports_required_values(reference):
    cfg, result, _ = reference
    assert result.complete and len(result.tasks) == N_TASKS
    for t, task in enumerate(result.tasks):
        assert task.task == t and task.n_tasks == N_TASKS and task.scenario == cfg.scenario
        assert len(task.acc_row) == len(task.val_acc_row) == t + 1
        assert all(0.0 <= a <= 1.0 for a in task.acc_row + task.val_acc_row)
        flat = task.flat()
        for key in ("avg_acc", "last_acc", "forgetting", "bwt", "test_avg_acc", "test_last_acc", "test_forgetting",
                    "test_bwt", "model_bytes", "exemplar_bytes", "extra_bytes", "total_bytes", "total_mb",
                    "n_exemplars", "train_state_bytes", "wall_s"):
            assert key in flat, key
            assert math.isfinite(flat[key]), (key, flat[key])
        mem = task.memory
        assert mem.model_bytes > 0
        assert min(mem.exemplar_bytes, mem.extra_bytes, mem.n_exemplars, mem.train_state_bytes) >= 0
        assert mem.total_bytes == mem.model_bytes + mem.exemplar_bytes + mem.extra_bytes
        assert task.test.last_acc == task.seen_acc and task.wall_s > 0
        if t == 0:
            assert task.test.forgetting == 0.0 and task.test.bwt == 0.0


def test_memory_after_last_task_equals_plan(reference):
    cfg, result, _ = reference
    method_cls = METHODS[cfg.method]
    plan = method_cls.plan(cfg.method_config, cfg.benchmark)
    mem = result.final.memory
    got = (mem.model_bytes, mem.extra_bytes, mem.n_exemplars, mem.exemplar_bytes, mem.total_bytes)
    want = (plan.model_bytes, plan.extra_bytes, plan.n_exemplars, plan.n_exemplars * plan.image_bytes, plan.total_bytes)
    if method_cls.plan_is_exact:
        assert got == want
    else:  # an upper bound, part by part
        assert all(g <= w for g, w in zip(got, want)), (got, want)


def final_state(ckpt) -> dict[str, Any]:
    return load_checkpoint(ckpt / CHECKPOINT_FILE)["method"]


def test_same_seed_same_metrics_and_state(reference, bench, tmp_path):
    cfg, result, ckpt = reference
    assert comparable(run(cfg, benchmark=bench, checkpoint_dir=tmp_path)) == comparable(result)
    _assert_same_state(final_state(tmp_path), final_state(ckpt))  # bit for bit, not only the metrics


def test_resume_equals_uninterrupted(reference, bench, tmp_path):
    cfg, result, ckpt = reference
    first = run(cfg, benchmark=bench, checkpoint_dir=tmp_path, stop_after=1)
    assert len(first.tasks) == 1 and not first.complete
    resumed = run(cfg, benchmark=bench, checkpoint_dir=tmp_path)  # finds state.pt and continues
    assert resumed.complete
    assert comparable(resumed) == comparable(result)
    _assert_same_state(final_state(tmp_path), final_state(ckpt))


def test_state_dict_round_trip(reference, bench):
    """The final checkpoint, loaded into a fresh method, predicts exactly what the run reported; its
    state_dict survives torch.save/load(weights_only=True) unchanged."""
    cfg, result, ckpt = reference
    state = final_state(ckpt)
    method = build_method(cfg, torch.device("cpu"))
    method.load_state_dict(state)
    row, seen = evaluate(method, bench.tasks, "test", cfg.scenario)
    assert tuple(row) == result.final.acc_row and seen == result.final.seen_acc
    assert method.memory() == result.final.memory

    buf = io.BytesIO()
    torch.save(method.state_dict(), buf)
    buf.seek(0)
    again = build_method(cfg, torch.device("cpu"))
    again.load_state_dict(torch.load(buf, weights_only=True))
    x = bench.tasks[-1].test.x
    task_id = N_TASKS - 1 if cfg.scenario == "task_il" else None
    assert torch.equal(again.predict(x, task_id), method.predict(x, task_id))
    _assert_same_state(again.state_dict(), method.state_dict())


EXEMPLAR_METHODS = sorted(n for n, c in METHODS.items() if issubclass(c.config_cls, ExemplarConfig))


@pytest.mark.parametrize("budget", ["per_class", "total_mb", "aligned"])
@pytest.mark.parametrize("name", EXEMPLAR_METHODS)
def test_every_budget_kind_ends_at_its_plan(name, budget, bench):
    """``count`` is covered above; the other budget kinds end exactly at plan() as well."""
    if budget == "total_mb":  # room for the final model and extras plus 10 images
        base = tiny_config(name)
        plan = METHODS[name].plan(base.method_config, base.benchmark)
        fields = {"memory_mb": (plan.model_bytes + plan.extra_bytes + 10 * plan.image_bytes) / MB}
    else:
        fields = {"memory_per_class": 3} if budget == "per_class" else {"aligned_base": 6}
    cfg = tiny_config(name, budget=budget, **fields)
    plan = METHODS[name].plan(cfg.method_config, cfg.benchmark)
    assert plan.n_exemplars > 0
    if budget == "total_mb":
        assert plan.total_bytes <= fields["memory_mb"] * MB
    mem = run(cfg, benchmark=bench).final.memory
    if METHODS[name].plan_is_exact:
        assert (mem.n_exemplars, mem.total_bytes) == (plan.n_exemplars, plan.total_bytes)
    else:
        assert mem.n_exemplars <= plan.n_exemplars and mem.total_bytes <= plan.total_bytes


def test_untiny_or_invalid_settings_fail_loudly():
    with pytest.raises(pytest.fail.Exception, match="not tiny"):
        tiny_config("finetune", backbone="resnet32", width=64)
    with pytest.raises(pytest.fail.Exception, match="no workable tiny settings"):
        tiny_config("finetune", no_such_field=1)


def test_other_scenario_runs(bench):
    """Methods offering a second scenario report valid values in it too (one tiny run each)."""
    for name in sorted(METHODS):
        if len(METHODS[name].scenarios) < 2:
            continue
        other = METHODS[name].scenarios[1]
        cfg = dataclasses.replace(tiny_config(name), scenario=other)
        result = run(cfg, benchmark=bench, stop_after=2)
        for task in result.tasks:
            assert task.scenario == other
            assert all(0.0 <= a <= 1.0 for a in task.acc_row)
            assert math.isfinite(task.test.avg_acc)


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


@pytest.mark.parametrize("name", sorted(METHODS))
def test_fields_for_tasks_is_sound_after_task_0(name, bench, tmp_path):
    """Fields a method declares irrelevant to task 0 (the prefix cache shares states on that
    promise) really leave the state and results after task 0 bit-identical when changed."""
    cfg = tiny_config(name)
    declared = METHODS[name].fields_for_tasks(cfg.method_config, 1)
    if declared is None:
        return  # nothing promised: every field counts
    alternatives = {}
    for f in dataclasses.fields(cfg.method_config):
        if f.name in declared:
            continue
        other = _other_value(getattr(cfg.method_config, f.name), f)
        if other is None:
            continue
        try:
            tiny_config(name, **{f.name: other})
        except pytest.fail.Exception:
            continue  # no valid different value for this field alone
        alternatives[f.name] = other
    changed = tiny_config(name, **alternatives)
    a = run(cfg, benchmark=bench, checkpoint_dir=tmp_path / "a", stop_after=1)
    b = run(changed, benchmark=bench, checkpoint_dir=tmp_path / "b", stop_after=1)
    assert comparable(a) == comparable(b), f"{name}: changing {alternatives} changed task 0's results"
    _assert_same_state(load_checkpoint(tmp_path / "a" / CHECKPOINT_FILE)["method"],
                       load_checkpoint(tmp_path / "b" / CHECKPOINT_FILE)["method"])


def _assert_same_state(a: Any, b: Any, where: str = "state") -> None:
    assert type(a) is type(b), where
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_state(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, where
