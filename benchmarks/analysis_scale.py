"""Scale of `analysis`: Pareto fronts + hypervolume + AUC over 1,000,000 per-task rows in Parquet.

Synthetic results in the real schema (incsweep/core/schema.py): 100,000 trials x 10 tasks = 1,000,000
per-task rows plus 100,000 final rows, 5 methods, 80% complete / 15% pruned / 5% error, accuracy
rising with memory plus noise, a ~700-byte config_json per trial repeated on each of its rows (as
the sink writes it). The data is written as one file per method (many row groups); the sink's real
layout, one file per trial, is measured separately on 2,000 trial files to give the per-file cost.

Run: .venv/bin/python benchmarks/analysis_scale.py [--rows 1000000] [--out benchmarks/results/analysis_scale.txt]
Target: under 2 s for Pareto + hypervolume + AUC on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from incsweep.analysis import load_results, summarize
from incsweep.core.schema import RESULTS_SCHEMA

METHODS = ("finetune", "replay", "icarl", "memo", "bmkp")
N_TASKS = 10
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def synthetic_table(n_trials: int, method: str, seed: int, trial_offset: int = 0) -> pa.Table:
    """All rows (tasks then finals) of ``n_trials`` trials of one method, column by column."""
    rng = np.random.default_rng(seed)
    trials = np.arange(n_trials)
    mb = np.exp(rng.uniform(np.log(0.5), np.log(50.0), n_trials))  # budgets spanning two decades
    skill = 0.35 + 0.08 * np.log(mb) + rng.normal(0, 0.05, n_trials)  # accuracy rises with memory
    status = rng.choice(["complete", "pruned", "error"], n_trials, p=[0.8, 0.15, 0.05])
    task = np.tile(np.arange(N_TASKS), n_trials)
    tid = np.repeat(trials, N_TASKS)
    seen = np.clip(skill[tid] - 0.03 * task + rng.normal(0, 0.01, len(task)), 0, 1)
    # avg_acc after task t: running mean of seen accuracy within the trial
    csum = np.cumsum(seen.reshape(n_trials, N_TASKS), axis=1)
    avg = (csum / np.arange(1, N_TASKS + 1)).ravel()
    rows = len(task) + n_trials
    last = np.r_[np.flatnonzero(task == N_TASKS - 1)]
    pick = np.r_[np.arange(len(task)), last]  # final rows repeat the last task's metrics
    is_final = np.r_[np.zeros(len(task), bool), np.ones(n_trials, bool)]
    tid_all = np.r_[tid, trials]
    names = np.array([f"{method}-{trial_offset + i:07d}" for i in trials])
    config = {"method": method, "seed": 0, "device": "cpu", "benchmark": {"name": "seq-cifar100", "init_classes": 10,
              "increment": 10, "class_order": "seed1993", "val_fraction": 0.1}, "method_config": {
              "backbone": "resnet32", "epochs": 170, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
              "milestones": [80, 120, 150], "batch_size": 128, "memory_size": 2000}}
    base = json.dumps(config, sort_keys=True)
    cfg = np.array([base.replace('"lr": 0.1', f'"lr": {0.01 + 0.001 * (i % 97)}') for i in trials], dtype=object)
    total_bytes = (mb * 2**20).astype(np.int64)
    cols = {
        "study": pa.array(["scale"] * rows), "trial_id": pa.array(names[tid_all]), "method": pa.array([method] * rows),
        "benchmark": pa.array(["seq-cifar100"] * rows), "scenario": pa.array(["class_il"] * rows),
        "task": pa.array(np.r_[task, np.full(n_trials, N_TASKS - 1)].astype(np.int32)),
        "n_tasks": pa.array(np.full(rows, N_TASKS, np.int32)),
        "tasks_done": pa.array(np.r_[task + 1, np.full(n_trials, N_TASKS)].astype(np.int32)),
        "is_final": pa.array(is_final),
        "complete": pa.array(np.r_[task == N_TASKS - 1, status == "complete"]),
        "status": pa.array(np.r_[np.full(len(task), "task_done", dtype=object), status.astype(object)]),
        "error": pa.nulls(rows, pa.string()),
        "avg_acc": pa.array(avg[pick]), "last_acc": pa.array(seen[pick]),
        "forgetting": pa.array(np.full(rows, 0.1)), "bwt": pa.array(np.full(rows, -0.1)),
        "test_avg_acc": pa.array(avg[pick] - 0.01), "test_last_acc": pa.array(seen[pick] - 0.01),
        "test_forgetting": pa.array(np.full(rows, 0.1)), "test_bwt": pa.array(np.full(rows, -0.1)),
        "acc_row": pa.array([[0.5] * (t + 1) for t in np.r_[task, np.full(n_trials, N_TASKS - 1)]],
                            pa.list_(pa.float64())),
        "val_acc_row": pa.array([[0.5] * (t + 1) for t in np.r_[task, np.full(n_trials, N_TASKS - 1)]],
                                pa.list_(pa.float64())),
        "model_bytes": pa.array(total_bytes[tid_all] // 2),
        "exemplar_bytes": pa.array(total_bytes[tid_all] - total_bytes[tid_all] // 2),
        "extra_bytes": pa.array(np.zeros(rows, np.int64)), "total_bytes": pa.array(total_bytes[tid_all]),
        "total_mb": pa.array(total_bytes[tid_all] / 2**20), "train_state_bytes": pa.array(np.zeros(rows, np.int64)),
        "n_exemplars": pa.array(np.full(rows, 2000, np.int64)), "wall_s": pa.array(rng.uniform(10, 100, rows)),
        "seed": pa.array(np.zeros(rows, np.int64)), "config_json": pa.array(cfg[tid_all]),
        "code_version": pa.array(["0.1.0+gabcdef1234"] * rows),
        "started_at": pa.array([T0] * rows, pa.timestamp("us", tz="UTC")),
        "finished_at": pa.array([T0] * rows, pa.timestamp("us", tz="UTC")),
    }
    table = pa.table({f.name: cols[f.name].cast(f.type) for f in RESULTS_SCHEMA}, schema=RESULTS_SCHEMA)
    return table.append_column(f"param_{method}_lr", pa.array(rng.uniform(0.01, 0.1, rows)))


def write_dataset(root: Path, rows: int) -> int:
    n_trials = rows // N_TASKS // len(METHODS)
    for i, method in enumerate(METHODS):
        folder = root / "results" / "study=scale" / f"method={method}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(synthetic_table(n_trials, method, seed=i), folder / "part-0.parquet", row_group_size=100_000)
    return n_trials * len(METHODS)


def write_trial_files(root: Path, n_files: int) -> None:
    table = synthetic_table(n_files, "replay", seed=99)
    folder = root / "results" / "study=files" / "method=replay"
    folder.mkdir(parents=True, exist_ok=True)
    ids = table["trial_id"].to_numpy(zero_copy_only=False)
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.unique(ids))
    for start, stop in zip(bounds, np.r_[bounds[1:], len(ids)]):
        part = table.take(pa.array(order[start:stop]))
        pq.write_table(part, folder / f"{ids[order[start]]}.parquet")


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="per-task rows (default 1,000,000)")
    parser.add_argument("--files", type=int, default=2000, help="trial files for the per-file cost (default 2,000)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the figures to this file")
    args = parser.parse_args()
    lines = [f"analysis_scale: {platform.processor() or platform.machine()}, {os.cpu_count()} cores visible, "
             f"load average {os.getloadavg()[0]:.1f} (shared machine), pyarrow {pa.__version__}, "
             f"numpy {np.__version__}, best of {args.repeats}"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        trials = write_dataset(root, args.rows)
        size = sum(f.stat().st_size for f in root.rglob("*.parquet"))
        t_load, table = best_of(lambda: load_results(str(root)), args.repeats)
        lines.append(f"dataset: {table.num_rows:,} rows ({args.rows:,} per-task + {trials:,} final), "
                     f"{len(METHODS)} methods, {size / 2**20:.0f} MiB Parquet in {len(METHODS)} files")
        lines.append(f"load_results (read + schema unification): {t_load:.2f} s")
        t_sum, s = best_of(lambda: summarize(table, "avg_acc:max,total_mb:min", by=["method"], under_mb=[5.0]),
                           args.repeats)
        fronts = sum(len(g.front) for g in s.groups.values())
        lines.append(f"summarize 2 objectives (complete-run filter, {len(s.groups)} per-method + overall fronts, "
                     f"hypervolume, AUC-A/AUC-L, knee, best under 5 MB): {t_sum:.2f} s "
                     f"[{s.runs.num_rows:,} complete runs, fronts {fronts} + {len(s.overall.front)}]")
        t_3, s3 = best_of(lambda: summarize(table, "avg_acc:max,total_mb:min,wall_s:min", by=["method"]),
                          args.repeats)
        lines.append(f"summarize 3 objectives (+ wall_s:min, exact 3-D hypervolume): {t_3:.2f} s "
                     f"[overall front {len(s3.overall.front)}]")
        lines.append(f"TOTAL load + 2-objective analysis: {t_load + t_sum:.2f} s (target < 2 s on 2 cores: "
                     f"{'met' if t_load + t_sum < 2 else 'NOT met'})")
        write_trial_files(root / "files", args.files)
        t_files, ft = best_of(lambda: load_results(str(root / "files")), 1)
        lines.append(f"one file per trial (the sink's layout): {args.files:,} files, {ft.num_rows:,} rows load in "
                     f"{t_files:.2f} s = {1000 * t_files / args.files:.2f} ms per file")
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
