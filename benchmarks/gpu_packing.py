"""Trials per hour of a real ``incsweep study run`` on one GPU at 1, 2, 4 and 8 trials per GPU.

Each setting k is one study through the CLI a user runs (its own embedded local Ray): MEMO, ResNet-32,
on synthetic CIFAR-shaped data (no download: 20 classes of 3x32x32, 100/20 images a class, 5 tasks),
1 epoch a task, random search over lr and memory_size, ``resources: {cpu: C/k, gpu: 1/k}`` and
``concurrency: k``, with C the machine's cores (at most 16). Trials/hour = completed trials / the
command's wall time (Ray start-up included, as a user pays it). Usage, on a machine with a GPU:
    .venv/bin/python benchmarks/gpu_packing.py [--per-gpu 1,2,4,8] [--trials 16]
Its output goes to benchmarks/results/gpu_packing_<gpu>.txt. Without a GPU it stops with one line:
a logical GPU would measure CPU speed, which tests/study/test_gpu_packing.py already covers for scheduling.
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

import yaml

WORK = {"name": "synthetic", "n_classes": 20, "image_size": 32, "channels": 3, "train_per_class": 100,
        "test_per_class": 20, "val_fraction": 0.2, "init_classes": 4, "increment": 4}
MEMO = {"backbone": "resnet32", "epochs": 1, "init_epochs": 1, "batch_size": 128,
        "lr": {"low": 0.01, "high": 0.2, "log": True}, "memory_size": {"low": 40, "high": 400, "log": True}}


def incsweep_cli() -> str:
    found = shutil.which("incsweep", path=str(Path(sys.executable).parent)) or shutil.which("incsweep")
    if not found:
        raise SystemExit("incsweep is not installed in this environment (make install)")
    return found


def run_setting(per_gpu: int, trials: int, cores: int, tmp: Path) -> dict:
    spec = {"name": f"pack{per_gpu}", "methods": ["memo"], "benchmark": WORK, "search": {"memo": MEMO},
            "objectives": ["avg_acc:max", "total_mb:min"], "sampler": "random", "scheduler": "fifo",
            "trials": trials, "concurrency": per_gpu, "prefix_cache": False,
            "resources": {"cpu": max(1, cores // per_gpu), "gpu": 1 / per_gpu}, "seed": 0,
            "storage": str(tmp / f"pack{per_gpu}")}
    path = tmp / f"pack{per_gpu}.yaml"
    path.write_text(yaml.safe_dump(spec))
    tic = time.perf_counter()
    proc = subprocess.run([incsweep_cli(), "study", "run", str(path)], capture_output=True, text=True)
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        raise SystemExit(f"study with {per_gpu} trials per GPU failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    import pyarrow.compute as pc

    from incsweep.analysis import load_results

    table = load_results(spec["storage"])
    final = table.filter(pc.equal(table["is_final"], True))
    complete = sum(1 for s in final["status"].to_pylist() if s == "complete")
    return {"per_gpu": per_gpu, "trials": trials, "complete": complete, "wall_s": wall,
            "trials_per_hour": complete / wall * 3600}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-gpu", default="1,2,4,8")
    ap.add_argument("--trials", type=int, default=16)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_packing: no CUDA device here; run it on a machine with a GPU")
    gpu = torch.cuda.get_device_name(0)
    cores = min(16, os.cpu_count() or 1)
    print(f"MEMO ResNet-32, synthetic 20 classes 3x32x32, 5 tasks, 1 epoch a task, {args.trials} trials a setting, "
          f"random search, one {gpu}, {cores} CPU cores shared by the trials")
    print("| trials per GPU | resources per trial | complete | study wall s | trials/hour | vs 1 per GPU |")
    print("|---|---|---|---|---|---|")
    results = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        for k in (int(x) for x in args.per_gpu.split(",")):
            r = run_setting(k, args.trials, cores, Path(tmp_dir))
            results.append(r)
            base = results[0]["trials_per_hour"]
            print(f"| {k} | cpu {max(1, cores // k)}, gpu {1 / k:g} | {r['complete']}/{r['trials']} | {r['wall_s']:.0f} | "
                  f"{r['trials_per_hour']:.0f} | {r['trials_per_hour'] / base:.2f}x |", flush=True)
    print("JSON " + json.dumps({"gpu": gpu, "cores": cores, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
