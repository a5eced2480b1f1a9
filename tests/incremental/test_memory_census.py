"""The engine's memory census (incremental/census.py): what a method holds is counted by the engine,
not taken from its memory(). Every built-in passes it exactly; every kind of misreport is caught by
``incsweep run``, by ``check-method`` and by a study."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import contract_fixtures as fixtures
import numpy as np
import pytest
import torch
import yaml

from incsweep.cli import main
from incsweep.incremental import contract
from incsweep.incremental.benchmarks import load_benchmark
from incsweep.incremental.census import LABEL_BYTES, MemoryMisreport, audit_memory, take_census
from incsweep.incremental.memory import MemoryReport, module_bytes
from incsweep.incremental.methods import method_names
from incsweep.incremental.run import build_method, run

TESTS = Path(__file__).parents[1]  # tests/: contract_fixtures.py
MISREPORTS = [cls.__name__ for cls in fixtures.MISREPORTS]


# -- the census itself ---------------------------------------------------------------------------

class _Holder:
    pass


def test_each_storage_counts_once_at_its_full_size():
    h = _Holder()
    big = torch.zeros(1000)
    h.views = [big[:10], big[500:]]  # two views of one storage: its 4,000 bytes, once
    h.again = {"same": big}
    assert take_census(h).total == 4000
    h.small = torch.zeros(100)[:1]  # a 1-element view keeps a 400-byte storage alive
    assert take_census(h).total == 4400


def test_modules_anywhere_plain_tensors_arrays_and_nested_objects_are_counted():
    h = _Holder()
    h.deep = _Holder()
    h.deep.bank = {"a": [(torch.ones(3, dtype=torch.float64),)]}  # 24 bytes in a tuple in a list in a dict
    h.deep.net = torch.nn.Linear(4, 2)  # 40 bytes
    h.arr = np.zeros(10, dtype=np.int32)  # 40 bytes
    h.arr_view = h.arr[2:]
    census = take_census(h)
    assert census.total == 24 + module_bytes(h.deep.net) + 40
    assert census.by_attribute() == {"deep": 24 + 40, "arr": 40}


def test_batchnorm_step_counter_and_what_the_engine_handed_in_are_not_the_methods():
    h = _Holder()
    h.bn = torch.nn.BatchNorm2d(4)  # weight, bias, running mean/var: 4 x 16 bytes; num_batches_tracked excluded
    h.ctx = _Holder()
    h.ctx.data = torch.zeros(100)
    h.alias = h.ctx.data  # the engine's tensor reached through the method's own attribute: still not the method's
    assert take_census(h).total == module_bytes(h.bn) == 64


def test_every_built_in_is_accounted_for_exactly_after_every_task():
    """held == model + exemplars + extra, up to the training-only state it reports (BMKP's working network)."""
    for name in method_names():
        cfg = contract.tiny_config(name)
        bench = load_benchmark(cfg.benchmark)
        method = build_method(cfg, torch.device("cpu"))
        for task in bench.tasks:
            method.begin_task(task)
            method.train_task(task)
            method.end_task(task)
            report = method.memory()
            census = audit_memory(method, report, image_bytes=bench.image_bytes, where=f"after task {task.index}")
            assert report.total_bytes <= census.total <= report.total_bytes + report.train_state_bytes, name


def test_the_census_is_fast():
    """About a millisecond for a tiny method: a task of real length (seconds) pays well under 1%
    (benchmarks/results/census_overhead.txt measures it on the demo's methods)."""
    cfg = contract.tiny_config("memo")
    bench = load_benchmark(cfg.benchmark)
    method = build_method(cfg, torch.device("cpu"))
    for task in bench.tasks:
        method.begin_task(task)
    import time

    tic = time.perf_counter()
    for _ in range(20):
        take_census(method)
    assert (time.perf_counter() - tic) / 20 < 0.05


def test_exemplar_labels_are_allowed_by_one_rule_and_no_more():
    cfg = contract.tiny_config("replay")
    bench = load_benchmark(cfg.benchmark)
    method = build_method(cfg, torch.device("cpu"))
    task = bench.tasks[0]
    method.begin_task(task)
    method.end_task(task)
    report = method.memory()
    assert report.n_exemplars > 0
    method.labels = torch.zeros(report.n_exemplars, dtype=torch.int64)  # one int64 label each: allowed
    audit_memory(method, report, image_bytes=bench.image_bytes, where="now")
    method.labels = torch.zeros(report.n_exemplars * LABEL_BYTES + 1, dtype=torch.uint8)  # one byte more: not
    with pytest.raises(MemoryMisreport, match="labels"):
        audit_memory(method, report, image_bytes=bench.image_bytes, where="now")


def test_claiming_bytes_not_held_and_inconsistent_exemplar_bytes_are_misreports():
    cfg = contract.tiny_config("finetune")
    bench = load_benchmark(cfg.benchmark)
    method = build_method(cfg, torch.device("cpu"))
    held = take_census(method).total
    with pytest.raises(MemoryMisreport, match="claimed that it does not keep"):
        audit_memory(method, MemoryReport(model_bytes=held, extra_bytes=4096), image_bytes=bench.image_bytes, where="x")
    with pytest.raises(MemoryMisreport, match="exemplar_bytes=10 but n_exemplars=1"):
        audit_memory(method, MemoryReport(model_bytes=held, exemplar_bytes=10, n_exemplars=1),
                     image_bytes=bench.image_bytes, where="x")


# -- every misreport, caught on every path ----------------------------------------------------------

@pytest.mark.parametrize("name", MISREPORTS)
def test_run_stops_a_misreporting_method_naming_the_attribute(name):
    cfg = contract.tiny_config(f"contract_fixtures:{name}")
    with pytest.raises(MemoryMisreport) as err:
        run(cfg)
    message = str(err.value)
    assert "\n" not in message and getattr(fixtures, name).ATTRIBUTE in message, message


@pytest.mark.parametrize("name", MISREPORTS)
def test_check_method_fails_memory_equals_plan_naming_the_attribute(name, tmp_path):
    results = {r.name: r for r in contract.check_method(f"contract_fixtures:{name}", workdir=tmp_path)}
    # every other promise is judged on its own: the misreport fails memory_equals_plan alone
    assert all(r.passed for n, r in results.items() if n != "memory_equals_plan"), results
    check = results["memory_equals_plan"]
    assert not check.passed and getattr(fixtures, name).ATTRIBUTE in check.detail, check.detail


TINY = ["--benchmark", "synthetic", "--set", "benchmark.n_classes=6", "--set", "benchmark.train_per_class=24",
        "--set", "benchmark.test_per_class=8", "--set", "backbone=tiny", "--set", "width=4",
        "--set", "batch_size=16", "--set", "memory_size=12"]


@pytest.mark.parametrize("name", MISREPORTS)
def test_incsweep_run_exits_2_with_one_line(name, capsys):
    rc = main(["run", "--method", f"contract_fixtures:{name}", *TINY])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and getattr(fixtures, name).ATTRIBUTE in err, err


def test_every_built_in_passes_memory_equals_plan_with_the_census(tmp_path):
    for name in method_names():
        results = contract.check_method(name, workdir=tmp_path / name, checks=("memory_equals_plan",))
        assert results[0].passed, (name, results[0].detail)


# -- in a study ------------------------------------------------------------------------------------

def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "incsweep.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _spec(tmp_path: Path, methods: list[str], trials: int) -> Path:
    spec = {"name": "census", "methods": methods, "trials": trials, "concurrency": 2, "seed": 1,
            "benchmark": {"name": "synthetic", "n_classes": 4, "image_size": 16, "train_per_class": 12,
                          "test_per_class": 4, "val_fraction": 0.25},
            "search": {m: {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 16,
                           **({"memory_size": 8} if "Raising" not in m else {})} for m in methods},
            "sampler": {"name": "random"}, "resources": {"cpu": 1}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.ray
@pytest.mark.slow
def test_a_study_catches_every_misreport_kind(tmp_path):
    """One trial of each misreporting method (enqueued, so each runs): every trial ends in error with the
    census's message naming its attribute, and the study exits non-zero."""
    methods = [f"contract_fixtures:{n}" for n in MISREPORTS]
    spec = yaml.safe_load(_spec(tmp_path, methods, len(methods)).read_text())
    spec["enqueue"] = [{"method": m, "params": {}} for m in methods]
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump(spec))
    storage = tmp_path / "study"
    out = _cli("study", "run", str(path), "--storage", str(storage), timeout=900)
    assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
    from incsweep.analysis.load import load_results

    finals = [r for r in load_results(str(storage)).to_pylist() if r["is_final"]]
    by_method = {r["method"].split(":")[1]: r for r in finals}
    assert sorted(by_method) == sorted(MISREPORTS), sorted(by_method)
    for name, row in by_method.items():
        assert row["status"] == "error" and "MemoryMisreport" in row["error"], (name, row["error"])
        assert getattr(fixtures, name).ATTRIBUTE in row["error"], (name, row["error"])


def test_a_raising_constructor_fails_the_launch_in_one_line_before_ray(tmp_path):
    storage = tmp_path / "study"
    out = _cli("study", "run", str(_spec(tmp_path, ["contract_fixtures:RaisingConstructor"], 2)),
               "--storage", str(storage), timeout=120)
    assert out.returncode == 2, out.stdout + out.stderr
    err = out.stderr.strip()
    assert err.count("\n") == 0 and "RuntimeError: my constructor is broken" in err, err
    assert "begin_task" not in err and "meta" not in err
    assert not storage.exists()  # nothing written
    assert "Ray" not in out.stdout + out.stderr  # Ray never started


@pytest.mark.ray
@pytest.mark.slow
def test_a_study_ends_a_misreporting_trial_in_error_and_says_why(tmp_path):
    storage = tmp_path / "study"
    out = _cli("study", "run", str(_spec(tmp_path, ["contract_fixtures:FeatureBank"], 2)), "--storage", str(storage))
    assert out.returncode != 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "MemoryMisreport" in out.stderr and "exactly what bank holds" in out.stderr, out.stderr[-3000:]
    status = _cli("study", "status", str(storage), timeout=120)
    assert "error" in status.stdout and "exactly what bank holds" in status.stdout, status.stdout
    import pyarrow.parquet as pq

    finals = [r for f in storage.glob("results/**/*.parquet") for r in pq.read_table(f).to_pylist() if r["is_final"]]
    assert len(finals) == 2 and all(r["status"] == "error" and "bank" in r["error"] for r in finals)
    # study status counts trials without importing the study's methods: one that no longer imports
    spec = yaml.safe_load((storage / "study.yaml").read_text())
    (storage / "study.yaml").write_text(yaml.safe_dump({**spec, "methods": ["no_such_module:Gone"]}))
    status = _cli("study", "status", str(storage), timeout=120)
    # (exit 1: no trial completed, as before; a method that failed to import would be exit 2)
    assert status.returncode == 1 and "2/2 trials finished" in status.stdout, status.stdout + status.stderr


def test_check_method_takes_run_fields_like_run(capsys):
    rc = main(["check-method", "replay", "--set", "threads=2", "--set", "scenario=task_il", "--check", "reports"])
    assert rc == 0 and "1/1 checks passed" in capsys.readouterr().out
    cfg = contract.tiny_config("replay", run_fields={"threads": 2, "scenario": "task_il"})
    assert (cfg.threads, cfg.scenario) == (2, "task_il")
    rc = main(["check-method", "replay", "--set", "threads=0"])
    captured = capsys.readouterr()
    assert rc == 2 and "threads=0" in captured.err and captured.err.strip().count("\n") == 0
    assert "checking" not in captured.out
