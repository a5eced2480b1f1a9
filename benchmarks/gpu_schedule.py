"""What full schedules cost on a GPU, and real accuracies of short GPU runs on Fashion-MNIST.

Two parts, both through ``incremental.run`` exactly as a trial or ``incsweep run`` uses it:

1. ``paper``: the shipped paper configs (configs/memo/cifar100_b0_inc10.yaml, configs/bmkp/seq_cifar100.yaml)
   run all their tasks twice, once with 1 and once with 3 epochs in every phase, after a discarded
   warm-up task (CUDA context, cuDNN handles). Per task, half the difference is the cost of one
   epoch and the rest is the fixed cost (evaluation, herding, the
   projection), so a full schedule's time is projected as fixed + epochs x per-epoch for each task.
   The data are full-size CIFAR-100 files written in torchvision's on-disk format with random pixels
   (no CIFAR here): timing depends on the sizes, not on the content, and the accuracies of these
   runs mean nothing, so none is printed.
2. ``fmnist``: real Fashion-MNIST (the whole training set, 6,000 images a class), MEMO on ResNet-32
   and BMKP on its reduced ResNet-18 (nf 20), for ``--fmnist-epochs`` epochs a phase: per-task time, training
   images/s and accuracy.

Usage:  python benchmarks/gpu_schedule.py --device cuda [--parts paper,fmnist] [--data-root DIR]
        [--fmnist-epochs 5] [--out results.json]
Recorded in benchmarks/results/gpu_schedule_h100.txt and .json (run on an H100, docs/gpu.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from incsweep.incremental.run import RunConfig, load_run_config, run

ROOT = Path(__file__).resolve().parents[1]
PAPER_CONFIGS = {"memo": ROOT / "configs/memo/cifar100_b0_inc10.yaml", "bmkp": ROOT / "configs/bmkp/seq_cifar100.yaml"}
# The epoch fields each method's schedule has, every phase of a task counted (BMKP: training, then
# consolidation for retrain_epochs; MEMO: init_epochs on task 0, epochs after).
EPOCH_FIELDS = {"memo": ("init_epochs", "epochs"), "bmkp": ("epochs", "retrain_epochs")}


def write_random_cifar100(root: Path, seed: int = 0) -> None:
    """Full-size CIFAR-100 (500 train / 100 test images a class) in torchvision's pickled layout."""
    d = root / "cifar-100-python"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, per_class in (("train", 500), ("test", 100)):
        labels = np.repeat(np.arange(100), per_class)
        rng.shuffle(labels)
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        with open(d / name, "wb") as fh:
            pickle.dump({b"data": data, b"fine_labels": labels.tolist(), b"coarse_labels": (labels // 5).tolist()}, fh)
    with open(d / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [f"class{c}" for c in range(100)]}, fh)


def with_epochs(cfg: RunConfig, epochs: int) -> RunConfig:
    fields = {f: epochs for f in EPOCH_FIELDS[cfg.method]}
    return dataclasses.replace(cfg, method_config=dataclasses.replace(cfg.method_config, **fields))


def paper(device: str, data_root: Path, precision: str) -> list[dict]:
    rows = []
    for method, path in PAPER_CONFIGS.items():
        cfg = load_run_config(str(path), [f"device={device}", f"benchmark.data_root={data_root}",
                                             f"precision={precision}"])
        full = {f: getattr(cfg.method_config, f) for f in EPOCH_FIELDS[method]}
        run(with_epochs(cfg, 1), stop_after=1)  # warm-up: the first CUDA work pays one-off set-up costs
        walls = {}
        for epochs in (1, 3):
            t0 = time.perf_counter()
            result = run(with_epochs(cfg, epochs))
            walls[epochs] = [t.wall_s for t in result.tasks]
            print(f"paper {method}: {epochs} epoch(s) a phase, {len(result.tasks)} tasks in "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        projected = 0.0
        for task, (one, three) in enumerate(zip(walls[1], walls[3])):
            per_epoch = max(three - one, 0.0) / 2
            fixed = one - per_epoch
            # MEMO's task 0 runs init_epochs, later tasks epochs; BMKP runs epochs + retrain_epochs,
            # both counted in one "epoch a phase" step, so they share the slope (equal in its config).
            n = full["init_epochs"] if method == "memo" and task == 0 else full[EPOCH_FIELDS[method][-1]]
            task_s = fixed + n * per_epoch
            projected += task_s
            rows.append({"part": "paper", "method": method, "task": task, "epoch_s": per_epoch, "fixed_s": fixed,
                         "epochs": n, "projected_task_s": task_s})
        rows.append({"part": "paper", "method": method, "task": "all", "projected_h": projected / 3600,
                     "final_memory_mb": result.final.memory.total_bytes / 2**20})
    return rows


def fmnist(device: str, data_root: str | None, epochs: int, precision: str) -> list[dict]:
    bench = {"name": "seq-fashionmnist", "data_root": data_root}
    configs = {
        "memo": {"method": "memo", "method_config": {"backbone": "resnet32", "init_epochs": epochs, "epochs": epochs,
                                                     "init_milestones": [], "milestones": [], "batch_size": 128}},
        "bmkp": {"method": "bmkp", "method_config": {"epochs": epochs, "retrain_epochs": epochs, "batch_size": 128}},
    }
    rows = []
    for name, data in configs.items():
        cfg = RunConfig.from_dict({**data, "benchmark": bench, "device": device, "seed": 0,
                                    "precision": precision})
        result = run(cfg)
        for t in result.tasks:
            rows.append({"part": "fmnist", "method": name, "task": t.task, "wall_s": t.wall_s,
                         "seen_acc": t.seen_acc, "avg_acc": t.test.avg_acc, "memory_mb": t.memory.total_bytes / 2**20})
            print(f"fmnist {name} task {t.task}: {t.wall_s:.1f} s, acc {t.seen_acc:.4f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--parts", default="paper,fmnist", help="comma-separated, of paper, fmnist")
    ap.add_argument("--data-root", default=None, help="Fashion-MNIST's folder (default: the usual places)")
    ap.add_argument("--fmnist-epochs", type=int, default=5)
    ap.add_argument("--precision", default="fp32", help="RunConfig.precision: fp32 or bf16 (CUDA)")
    ap.add_argument("--out", default=None, help="also write every row as JSON here")
    args = ap.parse_args()
    parts = args.parts.split(",")
    bad = sorted(set(parts) - {"paper", "fmnist"})
    if bad:
        ap.error(f"--parts: unknown {bad}; allowed: ['paper', 'fmnist']")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch sees no CUDA device; use --device cpu (slow) or a GPU machine")
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device={args.device} ({name}) torch={torch.__version__} precision={args.precision}", flush=True)
    rows = []
    if "paper" in parts:
        with tempfile.TemporaryDirectory() as tmp:
            write_random_cifar100(Path(tmp))
            rows += paper(args.device, Path(tmp), args.precision)
    if "fmnist" in parts:
        rows += fmnist(args.device, args.data_root, args.fmnist_epochs, args.precision)
    print(f"\n{'part':7s} {'method':6s} {'task':>4s} {'s/epoch':>8s} {'fixed s':>8s} {'epochs':>6s} {'task s':>8s} "
          f"{'acc':>7s} {'MB':>6s}")
    for r in rows:
        if r["part"] == "paper" and r["task"] == "all":
            print(f"{'paper':7s} {r['method']:6s} {'all':>4s} projected full schedule: {r['projected_h']:.2f} h "
                  f"on this device ({r['final_memory_mb']:.2f} MB at the end)")
        elif r["part"] == "paper":
            print(f"{'paper':7s} {r['method']:6s} {r['task']:>4d} {r['epoch_s']:8.2f} {r['fixed_s']:8.2f} "
                  f"{r['epochs']:6d} {r['projected_task_s']:8.0f}")
        else:
            print(f"{'fmnist':7s} {r['method']:6s} {r['task']:>4d} {'':8s} {'':8s} {args.fmnist_epochs:6d} "
                  f"{r['wall_s']:8.1f} {r['seen_acc']:7.4f} {r['memory_mb']:6.2f}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
