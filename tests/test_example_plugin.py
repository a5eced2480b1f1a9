"""The out-of-tree example package (examples/incsweep_example, pip-installed by `make test`): its
entry-point method and .npz benchmark run through the product path with no edit to incsweep:
`incsweep run`, `incsweep budget`, `incsweep check-method`, a study on the embedded local Ray with
two trials at once, `incsweep analyze`, `incsweep export`, and an exported config re-run exactly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

pytestmark = pytest.mark.skipif(importlib.util.find_spec("incsweep_example") is None,
                                reason="examples/incsweep_example is not installed (make test installs it)")

BIN = Path(sys.executable).parent
NET = ["--set", "backbone=tiny", "--set", "width=8", "--set", "epochs=3", "--set", "batch_size=32"]


def incsweep(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "incsweep"), *args], capture_output=True, text=True, timeout=timeout)


def test_run_and_budget_name_the_plugin_like_a_built_in():
    listed = incsweep("list")
    assert "frozen_ncm" in listed.stdout and "[incsweep_example.method]" in listed.stdout and "toy-shapes" in listed.stdout
    ran = incsweep("run", "--method", "frozen_ncm", "--benchmark", "toy-shapes", *NET)
    assert ran.returncode == 0, ran.stderr
    avg = float(ran.stdout.rsplit("average incremental accuracy ", 1)[1].split(",")[0])
    assert avg > 0.5  # 6 classes of drawn shapes, class-IL: far above a guess (1/6 at the end)
    budget = incsweep("budget", "--method", "frozen_ncm", "--benchmark", "toy-shapes", "--json", *NET)
    report = json.loads(budget.stdout)
    # 16x16 greyscale exemplars; 6 float32 prototypes of the tiny net's 2 x width = 16 features
    assert report["bytes_per_exemplar"] == 16 * 16 and report["extra_bytes"] == 6 * 16 * 4
    checked = incsweep("check-method", "frozen_ncm")
    assert checked.returncode == 0 and "7/7 checks passed" in checked.stdout, checked.stdout


def test_a_study_over_the_plugin_on_local_ray_analyses_and_reruns_exactly(tmp_path):
    spec = {
        "name": "plug", "methods": ["frozen_ncm", "lwf"], "scenario": "class_il",
        "benchmark": {"name": "toy-shapes", "val_fraction": 0.25},
        "search": {
            "frozen_ncm": {"backbone": "tiny", "width": 8, "batch_size": 32, "epochs": {"low": 1, "high": 4}},
            "lwf": {"backbone": "tiny", "width": 8, "batch_size": 32, "epochs": 2},
        },
        "objectives": ["avg_acc:max", "total_mb:min"], "trials": 4, "concurrency": 2,
        "resources": {"cpu": 1, "gpu": 0}, "seed": 0,
    }
    path = tmp_path / "plug.yaml"
    path.write_text(yaml.safe_dump(spec))
    storage = tmp_path / "s"
    study = incsweep("study", "run", str(path), "--storage", str(storage), timeout=900)
    assert study.returncode == 0, study.stdout[-2000:] + study.stderr[-2000:]
    # the TensorBoard path the driver prints holds every trial's event files
    logdir = study.stdout.split("tensorboard --logdir ")[-1].split()[0]
    assert logdir == str(storage / "tune") and len(list(Path(logdir).glob("trial_*/events.out.tfevents*"))) == 4
    table = pq.read_table(storage / "results").to_pylist()
    finals = [r for r in table if r["is_final"]]
    assert len(finals) == 4 and {r["method"] for r in finals} <= {"frozen_ncm", "lwf"}
    assert all(json.loads(r["config_json"])["benchmark"]["name"] == "toy-shapes" for r in finals)
    # two trials at once: some two trials' run intervals overlap (the spec's concurrency 2 on 2 CPUs)
    spans = sorted((r["started_at"], r["finished_at"]) for r in finals)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:])), spans

    analysis = incsweep("analyze", str(storage), "--out", str(tmp_path / "a"))
    assert analysis.returncode == 0, analysis.stderr
    assert (tmp_path / "a" / "report.html").is_file()
    export = incsweep("export", str(storage), "--select", "front", "--out", str(tmp_path / "best"))
    assert export.returncode == 0, export.stderr
    exported = sorted((tmp_path / "best").glob("*.yaml"))
    assert exported
    data = yaml.safe_load(exported[0].read_text())
    rerun = incsweep("run", "--config", str(exported[0]), "--out", str(tmp_path / "r.json"))
    assert rerun.returncode == 0, rerun.stderr
    tasks = json.loads((tmp_path / "r.json").read_text())["tasks"]
    recorded = data["provenance"]["tasks"]
    assert [t["acc_row"] for t in tasks] == [t["acc_row"] for t in recorded]  # exact, not approximately


def test_the_replay_plugin_is_built_on_the_public_api_alone():
    """examples/incsweep_example's cosine_replay imports nothing of incsweep but incsweep.incremental.api."""
    import ast

    import incsweep_example.cosine_replay as module

    tree = ast.parse(Path(module.__file__).read_text())
    used = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    used |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert {m for m in used if m.startswith("incsweep")} == {"incsweep.incremental.api"}
    checked = incsweep("check-method", "cosine_replay")
    assert checked.returncode == 0 and "7/7 checks passed" in checked.stdout, checked.stdout


def test_a_study_over_the_replay_plugin_runs_and_its_memory_is_checked(tmp_path):
    spec = {"name": "cosine", "methods": ["cosine_replay"], "scenario": "task_il",
            "benchmark": {"name": "toy-shapes", "val_fraction": 0.25},
            "search": {"cosine_replay": {"backbone": "tiny", "width": 8, "batch_size": 32, "epochs": 2,
                                         "memory_size": {"low": 6, "high": 60, "log": True}}},
            "trials": 2, "concurrency": 2, "resources": {"cpu": 1, "gpu": 0}, "seed": 0}
    path = tmp_path / "cosine.yaml"
    path.write_text(yaml.safe_dump(spec))
    study = incsweep("study", "run", str(path), "--storage", str(tmp_path / "s"), timeout=900)
    assert study.returncode == 0, study.stdout[-2000:] + study.stderr[-2000:]
    finals = [r for r in pq.read_table(tmp_path / "s" / "results").to_pylist() if r["is_final"]]
    assert len(finals) == 2 and all(r["status"] == "complete" for r in finals)
    # task-IL on 3 tasks of 2 shapes: each task's own head is far above a coin flip
    assert all(r["test_avg_acc"] > 0.6 for r in finals), [r["test_avg_acc"] for r in finals]
    # memory: the census passed every task, and exemplars are what the budget bought (<= memory_size)
    assert all(r["n_exemplars"] <= r["param_memory_size"] and r["exemplar_bytes"] == 256 * r["n_exemplars"]
               for r in finals)
