"""A whole trial's CPU time with NHWC (channels_last) batches against the engine's NCHW ones.

benchmarks/step_speed.py found oneDNN's NHWC convolutions 1.12-1.21x faster per training step on
this CPU. This runs the trial configurations of benchmarks/profile_trial.py (the sweep benchmark's
narrow networks) and ResNet-32 ones, each with both layouts, alternating repetitions so both see
the same load, and prints the median process CPU seconds of each and their ratio. The NHWC arm
replaces ``Augmenter._layout`` in this process only; the engine keeps NCHW on CPU because torch
2.14.1 corrupts the heap in the CPU backward of some NHWC convolutions (``--repro`` shows it in a
child process: a 1x1 stride-2 convolution from 4 channels on 16x16 input, the shortcut of a
width-4 reduced ResNet-18).

Usage:  .venv/bin/python benchmarks/trial_layout.py [--reps 3] [--methods finetune,...] [--repro]
Recorded in benchmarks/results/trial_layout.txt.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch
from profile_trial import BENCH, config  # the profiled trial configurations (same directory)

from incsweep.incremental.augment import Augmenter
from incsweep.incremental.benchmarks import load_benchmark
from incsweep.incremental.run import RunConfig, run

# ResNet-32 at full width, one epoch a task: the model the brief's CPU figures are about (100-150
# img/s a step), on Fashion-MNIST 5x2 and on CIFAR-shaped synthetic data (3x32x32, 10 classes in
# 5 tasks). A 1-channel NCHW batch is already channels_last in memory, so on Fashion-MNIST the
# layout cannot change anything: a control.
RESNET32 = {"backbone": "resnet32", "batch_size": 64, "epochs": 1, "schedule": "cosine", "milestones": []}
SYNTHETIC_RGB = {"name": "synthetic", "n_classes": 10, "image_size": 32, "channels": 3, "increment": 2,
                 "train_per_class": 60, "test_per_class": 20, "val_fraction": 0.25}
TRIALS = ("finetune", "bmkp", "memo", "resnet32", "resnet32-rgb")


def nhwc_layout(self, x: torch.Tensor) -> torch.Tensor:
    """channels_last on every device; empty_like gives 1-channel batches explicit NHWC strides
    (``contiguous`` would keep NCHW ones, which count as channels_last, and convolutions stay NCHW)."""
    return torch.empty_like(x, memory_format=torch.channels_last).copy_(x) if x.dim() == 4 else x


REPRO = """
import torch
torch.set_num_threads(1)
conv = torch.nn.Conv2d(4, 8, 1, stride=2, bias=False)
x = torch.randn(16, 4, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_()
for _ in range(20):
    conv(x).sum().backward()
print("no crash")
"""


def repro() -> str:
    """Run the NHWC crash case in a child process; its exit status and last line of output."""
    out = subprocess.run([sys.executable, "-c", REPRO], capture_output=True, text=True)
    last = (out.stdout + out.stderr).strip().splitlines()[-1:] or [""]
    return f"NHWC 1x1 stride-2 conv 4->8 on 16x16, CPU backward: exit {out.returncode}, {last[0]!r}"


def trial_config(name: str) -> RunConfig:
    if name.startswith("resnet32"):
        bench = SYNTHETIC_RGB if name.endswith("rgb") else BENCH
        return RunConfig.from_dict({"method": "finetune", "benchmark": bench, "method_config": RESNET32})
    return config(name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3, help="repetitions per layout (alternating), after one warm-up")
    ap.add_argument("--methods", default=",".join(TRIALS), help=f"comma-separated, of {list(TRIALS)}")
    ap.add_argument("--repro", action="store_true", help="also run the NHWC crash case (child process)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # a trial's CPU in a study: one thread per requested CPU
    engine_layout = Augmenter._layout
    print(f"torch={torch.__version__} threads=1 reps={args.reps} loadavg(1m) before={os.getloadavg()[0]:.2f}")
    print(f"{'trial':12s} {'NCHW CPU-s':>10s} {'NHWC CPU-s':>10s} {'speed-up':>8s}  test acc NCHW/NHWC")
    for name in args.methods.split(","):
        cfg = trial_config(name)
        bench = load_benchmark(cfg.benchmark)
        run(cfg, benchmark=bench, stop_after=1)  # warm-up: first-use costs out of the measurement
        times: dict[str, list[float]] = {"before": [], "after": []}
        acc = {}
        for _ in range(args.reps):
            for arm, layout in (("before", engine_layout), ("after", nhwc_layout)):
                Augmenter._layout = layout
                t0 = time.process_time()
                res = run(cfg, benchmark=bench)
                times[arm].append(time.process_time() - t0)
                acc[arm] = res.final.test.avg_acc
        Augmenter._layout = engine_layout
        b, a = statistics.median(times["before"]), statistics.median(times["after"])
        print(f"{name:12s} {b:10.2f} {a:10.2f} {b / a:8.2f}  {acc['before']:.3f}/{acc['after']:.3f}", flush=True)
    print(f"loadavg(1m) after={os.getloadavg()[0]:.2f}")
    if args.repro:
        print(repro())


if __name__ == "__main__":
    main()
