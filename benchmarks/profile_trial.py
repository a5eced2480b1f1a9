"""Where a trial's time goes: cProfile of one warm trial per method, plus the cold-process cost.

The trial is the sweep benchmark's (seq-fashionmnist, 5 tasks, small subsets), one torch thread.
Prints, per method: total CPU seconds, the share of the convolution/BN/backward kernels (the
model's arithmetic) against everything else (augmentation, batching, optimiser, Python), the
phases (training, evaluation of every seen task, exemplar selection and its herding loop,
checkpoints) by cumulative time, the top functions by own time, and the one-time cost of the
first trial in a fresh process.

Usage:  .venv/bin/python benchmarks/profile_trial.py [--methods finetune,bmkp,memo] [--top 8]
        [--train-per-class 60] [--no-cold]
Recorded in benchmarks/results/profile_trial.txt. CPU only: GPU figures were not measured.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import subprocess
import sys
import time

import torch

BENCH = {"name": "seq-fashionmnist", "train_per_class": 60, "test_per_class": 20, "val_fraction": 0.25,
         "class_order": "natural"}
CONFIGS = {  # the sweep benchmark's fixed settings; finetune on BMKP's network for a like-for-like view
    "bmkp": {"width": 8, "batch_size": 32, "momentum": 0.0, "weight_decay": 0.0, "schedule": "cosine",
             "milestones": [], "init_epochs": 3, "init_lr": 0.05, "epochs": 2, "lr": 0.05, "retrain_epochs": 1,
             "gamma_first": 0.9, "gamma": 0.9, "example_num": 100},
    "finetune": {"backbone": "reduced_resnet18", "width": 8, "batch_size": 32, "schedule": "cosine",
                 "init_epochs": 3, "epochs": 2, "lr": 0.05},
    # MEMO on benchmarks/memo_fashionmnist.py's network (ResNet-14 width 8, default split: the last
    # stage per task) with the same short schedule as above; a 200-exemplar count budget, so every
    # class keeps all 45 training images it has (herding still orders them) until the quota drops.
    "memo": {"backbone": "resnet14", "width": 8, "batch_size": 32, "schedule": "cosine", "init_epochs": 3,
             "init_lr": 0.05, "init_weight_decay": 5e-4, "init_milestones": [], "epochs": 2, "lr": 0.05,
             "budget": "count", "memory_size": 200},
}
# Phases of a trial by cumulative time: (label, file suffix, function name).
PHASES = (("training (fit)", "incremental/training.py", "fit"),
          ("evaluation of every seen task", "incremental/run.py", "evaluate"),
          ("exemplar selection (features + herding)", "incremental/methods/_exemplar.py", "update"),
          ("  of which herding loop", "incremental/exemplars.py", "herding_order"),
          ("checkpoint writes", "incremental/run.py", "save_checkpoint"))
KERNELS = ("run_backward", "conv2d", "batch_norm", "relu", "linear", "adaptive_avg_pool2d", "max_pool2d")


def config(method: str):
    from incsweep.incremental.run import RunConfig

    return RunConfig.from_dict({"method": method, "benchmark": BENCH, "method_config": CONFIGS[method]})


def profile(method: str, top: int) -> str:
    from incsweep.incremental.benchmarks import load_benchmark
    from incsweep.incremental.run import run

    cfg = config(method)
    bench = load_benchmark(cfg.benchmark)
    run(cfg, benchmark=bench, stop_after=1)  # warm-up: one-time costs are measured separately
    prof = cProfile.Profile()
    tic = time.process_time()
    prof.enable()
    result = run(cfg, benchmark=bench)
    prof.disable()
    cpu = time.process_time() - tic
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())  # own time of every function
    kernels = sum(v[2] for k, v in stats.stats.items() if any(name in k[2] for name in KERNELS))
    phases = []
    for label, suffix, name in PHASES:
        cum = sum(v[3] for k, v in stats.stats.items() if k[0].endswith(suffix) and k[2] == name)
        if cum > 0:
            phases.append(f"{label} {cum / total:.1%}")
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    body = "\n".join(line for line in buf.getvalue().splitlines()[6:] if line.strip())
    per_task = ", ".join(f"{t.wall_s:.2f}" for t in result.tasks)
    return (f"== {method}, {BENCH['train_per_class']} images/class: {cpu:.2f} CPU-s for {result.final.n_tasks} tasks "
            f"(wall per task: {per_task} s)\n"
            f"   model kernels (conv, BN, relu, linear, pooling, autograd backward): {kernels / total:.0%} of "
            f"profiled time; everything else (augmentation, batching, optimiser, Python): {1 - kernels / total:.0%}\n"
            f"   phases (cumulative share): {'; '.join(phases)}\n"
            f"{body}\n")


COLD = """
import time, torch
torch.set_num_threads(1)
from incsweep.incremental.benchmarks import load_benchmark
from incsweep.incremental.run import RunConfig, run
cfg = RunConfig.from_dict({cfg})
bench = load_benchmark(cfg.benchmark)
t = time.perf_counter(); run(cfg, benchmark=bench); first = time.perf_counter() - t
t = time.perf_counter(); run(cfg, benchmark=bench); second = time.perf_counter() - t
print(first, second)
"""


def cold_start(method: str) -> str:
    """First against second identical trial in a fresh process (what a non-reused Ray worker pays).

    The one-time cost is mostly torch importing torch._dynamo + sympy on first use: in the first
    ``torch.optim.SGD``, or for MEMO already while its config is built (the split is validated on
    a meta-device backbone), i.e. before the timer starts, so MEMO's figure reads ~0.
    """
    code = COLD.format(cfg=repr(config(method).to_dict()))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    first, second = map(float, out[-2:])
    return (f"== cold process, {method}: first trial {first:.2f} s, second {second:.2f} s -> one-time cost "
            f"{first - second:.2f} s\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="finetune,bmkp,memo")
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("--train-per-class", type=int, default=BENCH["train_per_class"],
                    help="images per class before the validation hold-out (more: herding and evaluation grow)")
    ap.add_argument("--no-cold", action="store_true", help="skip the fresh-process measurement")
    args = ap.parse_args()
    torch.set_num_threads(1)
    BENCH["train_per_class"] = args.train_per_class
    for method in args.methods.split(","):
        print(profile(method, args.top))
        if not args.no_cold:
            print(cold_start(method))


if __name__ == "__main__":
    main()
