"""incsweep's MEMO beside PyCIL's on PyCIL's short schedule (docs/memo.md), through the product path.

Runs ``incsweep run --method memo`` (the CLI a user runs) on real Fashion-MNIST class-IL 5 x 2
(seed-1993 class order, 500 training / 100 test images a class, ResNet-32, batch 128, 1 epoch per
task, 2000 exemplars, 2 torch threads), for each ``bn_stats`` mode and seed, and prints the accuracy
on the seen classes after each task, average incremental and last accuracy, wall time of the whole
command and its peak resident memory. PyCIL's figures are not re-run here: they are the ones
measured side by side on this 2-core machine (PyCIL commit 87cc411, its exps/memo.json
otherwise, 2 torch threads), quoted below with their source. Usage:
    .venv/bin/python benchmarks/pycil_parity.py [--seeds 0,1,2] [--modes recompute,running]
benchmarks/results/pycil_parity.md records its output.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Measured 2026-12-01: PyCIL's MEMO as it ships, same work, same machine, 2 torch threads.
PYCIL = {"per_task": [0.500, 0.308, 0.358, 0.456, 0.235], "avg": 0.371, "last": 0.235, "wall_s": 318.0,
         "source": "PyCIL commit 87cc411, measured on this 2-core CPU, 2026-12-01"}
WORK = ["--method", "memo", "--benchmark", "seq-fashionmnist", "--set", "benchmark.train_per_class=500",
        "--set", "benchmark.test_per_class=100", "--set", "backbone=resnet32", "--set", "epochs=1",
        "--set", "init_epochs=1", "--set", "memory_size=2000", "--set", "batch_size=128", "--set", "threads=2"]


def incsweep_cli() -> str:
    found = shutil.which("incsweep", path=str(Path(sys.executable).parent)) or shutil.which("incsweep")
    if not found:
        raise SystemExit("incsweep is not installed in this environment (make install)")
    return found


def run_once(mode: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        cmd = [incsweep_cli(), "run", *WORK, "--set", f"bn_stats={mode}", "--seed", str(seed), "--out", str(out)]
        tic = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not the max over children
        wall = time.perf_counter() - tic
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"{' '.join(cmd)} failed with exit code {os.waitstatus_to_exitcode(status)}")
        peak_kib = usage.ru_maxrss
        result = json.loads(out.read_text())
    tasks = result["tasks"]
    return {"per_task": [t["seen_acc"] for t in tasks], "avg": tasks[-1]["test"]["avg_acc"],
            "last": tasks[-1]["test"]["last_acc"], "wall_s": wall, "peak_mb": peak_kib / 1024}


def row(label: str, r: dict) -> str:
    peak = f"{r['peak_mb']:.0f}" if "peak_mb" in r else "n/a"
    return (f"| {label} | {' '.join(f'{a * 100:.1f}' for a in r['per_task'])} | {r['avg'] * 100:.1f} | "
            f"{r['last'] * 100:.1f} | {r['wall_s']:.0f} | {r['wall_s'] / PYCIL['wall_s']:.2f} | {peak} |")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--modes", default="recompute,running")
    args = ap.parse_args()
    print("MEMO, Fashion-MNIST class-IL 5x2, 500/100 images a class, ResNet-32, batch 128, 1 epoch a task, "
          "2000 exemplars, 2 threads")
    print("| run | accuracy on seen classes after each task (%) | avg inc. (%) | last (%) | wall s | / PyCIL wall "
          "| peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    print(row(f"PyCIL MEMO ({PYCIL['source']})", PYCIL), flush=True)
    means: dict[str, list[dict]] = {}
    for mode in args.modes.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            r = run_once(mode, seed)
            means.setdefault(mode, []).append(r)
            print(row(f"incsweep MEMO, bn_stats={mode}, seed {seed}", r), flush=True)
    for mode, runs in means.items():
        n = len(runs)
        avg = sum(r["avg"] for r in runs) / n
        last = sum(r["last"] for r in runs) / n
        wall = sum(r["wall_s"] for r in runs) / n
        print(f"bn_stats={mode}: mean over {n} seeds avg {avg * 100:.1f}% last {last * 100:.1f}% wall {wall:.0f} s "
              f"({wall / PYCIL['wall_s']:.2f} of PyCIL's); min avg {min(r['avg'] for r in runs) * 100:.1f}%, "
              f"min last {min(r['last'] for r in runs) * 100:.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
