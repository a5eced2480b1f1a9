"""A study's constraints are part of its answer: a study whose sampled trials break its
memory constraint gives, in every place a front or a pick appears (analyze's front, knee, report,
export, study status, the progress line, confirm), feasible runs only, and its front equals Optuna's
``best_trials``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
import yaml

from incsweep.analysis.load import load_results
from incsweep.analysis.summary import summarize
from incsweep.core.constraints import Constraint, feasible, parse_constraints
from incsweep.core.errors import ConfigError

pytestmark = [pytest.mark.ray, pytest.mark.slow]

BOUND_MB = 0.02  # tiny replay: ~5.5 KB of network + 768 bytes an exemplar: 4 exemplars fit, 60 do not
BENCH = {"name": "synthetic", "n_classes": 4, "image_size": 16, "train_per_class": 16, "test_per_class": 4,
         "val_fraction": 0.25}
NET = {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 16}


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "incsweep.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    tmp = tmp_path_factory.mktemp("constrained")
    spec = {"name": "constrained", "methods": ["replay", "finetune"], "trials": 6, "concurrency": 2, "seed": 3,
            "benchmark": BENCH, "search": {"replay": {**NET, "memory_size": {"choices": [4, 60]}}, "finetune": NET},
            "objectives": ["avg_acc:max", "total_mb:min"], "constraints": [f"total_mb <= {BOUND_MB}"],
            "sampler": {"name": "random"}, "resources": {"cpu": 1},
            # one trial each side of the budget, whatever the sampler draws
            "enqueue": [{"method": "replay", "params": {"memory_size": 60}},
                        {"method": "replay", "params": {"memory_size": 4}}]}
    path = tmp / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    storage = tmp / "study"
    out = _cli("study", "run", str(path), "--storage", str(storage))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return storage, out


def _optuna_front(storage: Path) -> set[str]:
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(storage / "optuna.journal")))
    best = optuna.load_study(study_name="constrained", storage=journal).best_trials
    return {t.user_attrs["tune_trial_id"] for t in best}


def test_rows_carry_the_constraint_and_the_verdict(study):
    storage, _ = study
    rows = [r for f in storage.glob("results/**/*.parquet") for r in pq.read_table(f).to_pylist() if r["is_final"]]
    assert {r["constraints"] for r in rows} == {f"total_mb <= {BOUND_MB:g}"}
    assert all(r["feasible"] == (r["total_mb"] <= BOUND_MB) for r in rows)
    assert all((r["violation"] <= 0) == r["feasible"] for r in rows)
    assert any(not r["feasible"] for r in rows) and any(r["feasible"] for r in rows)


def test_analyze_front_equals_optunas_best_trials_and_holds_only_feasible_runs(study, tmp_path):
    storage, _ = study
    out = _cli("analyze", str(storage), "--by", "none", "--json", "--out", str(tmp_path / "an"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    front = {r["trial_id"] for r in data["overall"]["front"]}
    assert front == _optuna_front(storage)
    assert all(r["metrics"]["total_mb"] <= BOUND_MB for r in data["overall"]["front"])
    assert data["infeasible_runs"] >= 1 and data["constraints"] == {"constrained": f"total_mb <= {BOUND_MB:g}"}
    knee = data["overall"]["knee"]
    assert knee in front
    csv = (tmp_path / "an" / "front.csv").read_text()
    assert len(csv.strip().splitlines()) == 1 + len(front)
    report = (tmp_path / "an" / "report.html").read_text()
    assert "break the constraints" in report and f"total_mb &lt;= {BOUND_MB:g}" in report


def test_text_output_counts_the_infeasible_runs(study):
    storage, _ = study
    out = _cli("analyze", str(storage))
    assert out.returncode == 0, out.stderr
    assert re.search(r"\d+ more break the constraints", out.stdout)
    assert f"constraints: total_mb <= {BOUND_MB:g}, on every run" in out.stdout
    assert "that meet the constraints" in out.stdout


def test_export_status_and_progress_count_feasible_runs_only(study, tmp_path):
    storage, run_out = study
    n_front = len(_optuna_front(storage))
    out = _cli("export", str(storage), "--select", "front", "--out", str(tmp_path / "best"))
    assert out.returncode == 0, out.stderr
    exported = [yaml.safe_load(p.read_text()) for p in sorted((tmp_path / "best").glob("*.yaml"))]
    assert len(exported) == n_front
    assert all(e["provenance"]["metrics"]["total_mb"] <= BOUND_MB for e in exported)
    status = _cli("study", "status", str(storage))
    assert f"front: {n_front} configuration(s)" in status.stdout, status.stdout
    assert re.search(r"constraints: total_mb <= 0.02; [1-9]\d* complete run\(s\) break them", status.stdout)
    # the last progress line's front is the feasible front
    fronts = re.findall(r"front (\d+)", run_out.stdout + run_out.stderr)
    assert fronts and int(fronts[-1]) == n_front


def test_confirm_reruns_only_feasible_front_configurations(study):
    storage, _ = study
    out = _cli("confirm", str(storage), "--seeds", "1")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    confirmed = [r for r in load_results(str(storage / "confirm")).to_pylist() if r["is_final"]]
    front = summarize(load_results(str(storage / "results")), by=())
    wanted = sorted((front.row(int(i))["method"], front.row(int(i)).get("param_memory_size")) for i in front.overall.front)
    assert sorted((r["method"], r.get("param_memory_size")) for r in confirmed) == wanted
    assert all(r.get("param_memory_size") != 60 for r in confirmed)


def test_ad_hoc_and_ignored_constraints(study):
    storage, _ = study
    table = load_results(str(storage / "results"))
    everything = summarize(table, by=(), ignore_constraints=True)
    assert everything.infeasible.num_rows == 0 and not everything.constrained
    tighter = summarize(table, by=(), constraints=["total_mb <= 0.009"])
    assert all(r <= 0.009 for r in tighter.runs["total_mb"].to_pylist())
    assert tighter.constraints == {"constrained": "total_mb <= 0.02; total_mb <= 0.009"}
    with pytest.raises(ConfigError, match="none of the .* meets the constraints"):
        summarize(table, by=(), constraints=["total_mb <= 0.000001"])
    out = _cli("analyze", str(storage), "--constraint", "total_mb <= abc")
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "METRIC <= NUMBER" in out.stderr


def test_several_studies_each_judged_by_their_own(study, tmp_path):
    """A copy of the study's rows under another name with no constraint: its rows are all feasible."""
    storage, _ = study
    import pyarrow as pa
    import pyarrow.compute as pc

    table = load_results(str(storage / "results"))
    other = table.set_column(table.column_names.index("study"), "study",
                             pa.array(["free"] * table.num_rows).dictionary_encode())
    other = other.set_column(other.column_names.index("constraints"), "constraints", pa.array([""] * other.num_rows))
    both = pa.concat_tables([table, other.cast(table.schema)], promote_options="permissive")
    s = summarize(both, by=("study",))
    assert s.constraints == {"constrained": f"total_mb <= {BOUND_MB:g}", "free": ""}
    assert s.groups[("free",)].infeasible == 0 and s.groups[("constrained",)].infeasible >= 1
    assert pc.all(pc.equal(s.infeasible["study"].cast(pa.string()), "constrained")).as_py()


def test_the_rule_is_optunas():
    c = parse_constraints("total_mb <= 1.5; avg_acc >= 0.5")
    assert c == (Constraint("total_mb", "<=", 1.5), Constraint("avg_acc", ">=", 0.5))
    assert feasible(c, {"total_mb": 1.5, "avg_acc": 0.5})  # a violation of exactly 0 is feasible
    assert not feasible(c, {"total_mb": 1.5, "avg_acc": float("nan")})  # NaN is not <= 0
    assert not feasible(c, {"total_mb": 1.0})  # a missing metric: infeasible
    for bad in ("total_mb <= inf", "total_mb < 3", "nope <= 3", 3):
        with pytest.raises(ConfigError):
            parse_constraints(bad if not isinstance(bad, int) else [bad])


def test_the_plot_draws_the_budget_and_the_infeasible_runs(study):
    import matplotlib

    matplotlib.use("Agg")
    from incsweep.analysis.plots import accuracy_vs_memory_figure

    storage, _ = study
    summary = summarize(load_results(str(storage / "results")), by=("method",))
    ax = accuracy_vs_memory_figure(summary).axes[0]
    budget = [line for line in ax.get_lines() if line.get_label() == f"constraint total_mb <= {BOUND_MB:g}"]
    assert len(budget) == 1 and list(budget[0].get_xdata()) == [BOUND_MB, BOUND_MB]  # vertical, at the bound
    crosses = [c for c in ax.collections if str(c.get_label()).startswith("breaks the constraints")]
    assert len(crosses) == 1 and len(crosses[0].get_offsets()) == summary.infeasible.num_rows
