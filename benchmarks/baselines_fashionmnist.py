"""LwF and EWC against finetune and replay on seq-fashionmnist (class-IL, 5 x 2), each at its own memory, CPU.

The zero-exemplar end of an accuracy/memory front: LwF keeps only its network, EWC its network plus a
Fisher diagonal and anchor weights, finetune its network; replay buys exemplars on top. Every run goes
through the product path, `incsweep run --config FILE --out FILE` (one subprocess per run, one torch
thread each, two at a time), and the table is read from the JSON results. Usage:
    .venv/bin/python benchmarks/baselines_fashionmnist.py [--seeds 0,1,2] [--jobs 2] [--only lwf,ewc]
The figures in benchmarks/results/baselines_fashionmnist.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent
# The same data and schedule as benchmarks/memo_fashionmnist.py (300 training / 500 test images per
# class, seed1993 class order, ResNet-14 width 8, 4 epochs of SGD 0.05 + momentum, cosine, batch 64),
# so the two tables can be read together.
BENCH = {"name": "seq-fashionmnist", "train_per_class": 300, "test_per_class": 500}
SGD = {"backbone": "resnet14", "width": 8, "epochs": 4, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
       "batch_size": 64, "schedule": "cosine"}
RUNS: list[tuple[str, str, dict]] = [
    ("finetune", "finetune", {}),
    ("lwf", "lwf (T=2, kd_weight=3: PyCIL)", {}),
    ("lwf", "lwf (kd_weight=10)", {"kd_weight": 10.0}),
    ("ewc", "ewc (lambda=100)", {}),
    ("ewc", "ewc (lambda=10000)", {"ewc_lambda": 10000.0}),
    ("replay", "replay (20 exemplars)", {"memory_size": 20}),
    ("replay", "replay (200 exemplars)", {"memory_size": 200}),
]


def one_run(index: int, method: str, fields: dict, seed: int, workdir: Path) -> dict:
    config = {"method": method, "scenario": "class_il", "seed": seed, "threads": 1, "benchmark": BENCH,
              "method_config": {**SGD, **fields}}
    tag = f"{index:02d}-{method}-seed{seed}"
    cfg_path, out_path = workdir / f"{tag}.yaml", workdir / f"{tag}.json"
    cfg_path.write_text(yaml.safe_dump(config))
    tic = time.perf_counter()
    proc = subprocess.run([str(BIN / "incsweep"), "run", "--config", str(cfg_path), "--out", str(out_path)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{tag}: {proc.stderr.strip().splitlines()[-1]}")
    result = json.loads(out_path.read_text())
    final = result["tasks"][-1]
    mem = final["memory"]
    return {"avg_acc": final["test"]["avg_acc"], "last_acc": final["test"]["last_acc"],
            "forgetting": final["test"]["forgetting"], "acc_row": final["acc_row"],
            "model_mb": mem["model_bytes"] / 2**20, "extra_mb": mem["extra_bytes"] / 2**20,
            "exemplar_mb": mem["exemplar_bytes"] / 2**20,
            "total_mb": (mem["model_bytes"] + mem["exemplar_bytes"] + mem["extra_bytes"]) / 2**20,
            "n_exemplars": mem["n_exemplars"], "seconds": time.perf_counter() - tic}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time (each uses one thread)")
    ap.add_argument("--only", default="", help="comma-separated methods")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    only = set(filter(None, args.only.split(",")))
    todo = [(i, m, label, f, s) for i, (m, label, f) in enumerate(RUNS) if not only or m in only for s in seeds]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        futures = [(m, label, s, pool.submit(one_run, i, m, f, s, Path(tmp))) for i, m, label, f, s in todo]
        print("| run | seed | avg_acc | last_acc | forgetting | model MB | extra MB | exemplar MB | total MB "
              "| time s | acc per task after the last |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        by_label: dict[str, list[dict]] = {}
        for _, label, seed, fut in futures:
            r = fut.result()
            by_label.setdefault(label, []).append(r)
            print(f"| {label} | {seed} | {r['avg_acc']:.4f} | {r['last_acc']:.4f} | {r['forgetting']:.4f} "
                  f"| {r['model_mb']:.3f} | {r['extra_mb']:.3f} | {r['exemplar_mb']:.3f} | {r['total_mb']:.3f} "
                  f"| {r['seconds']:.0f} | {' '.join(f'{a:.2f}' for a in r['acc_row'])} |", flush=True)
    print()
    print("| run | seeds | avg_acc mean (sd) | last_acc mean (sd) | total MB |")
    print("|---|---|---|---|---|")
    for label, rs in by_label.items():
        avg = [r["avg_acc"] for r in rs]
        last = [r["last_acc"] for r in rs]
        sd = (lambda xs: statistics.stdev(xs) if len(xs) > 1 else 0.0)  # noqa: E731
        print(f"| {label} | {len(rs)} | {statistics.mean(avg):.4f} ({sd(avg):.4f}) | "
              f"{statistics.mean(last):.4f} ({sd(last):.4f}) | {rs[0]['total_mb']:.3f} |")


if __name__ == "__main__":
    main()
