"""BMKP robustness over the demo's search space, seeds and CPU thread counts.

Samples fixed points of the BMKP space of configs/studies/demo.yaml (Optuna's RandomSampler with a
fixed seed, through the study's own space), runs each as a study trial would (the spec's benchmark,
seed and fields, ``threads`` set), for every seed and thread count, and prints per run: each
task's test accuracy right after it was learned, the lowest of them, and the largest gap between
the working network and the consolidated knowledge network on the task just learned (val split).
A run fails the check when a task scores at or below chance (0.5 on these 2-class task-IL tasks)
or a gap exceeds ``incremental.methods.bmkp.KNOWLEDGE_GAP_TOLERANCE``. Usage:
    .venv/bin/python benchmarks/bmkp_robustness.py [--points 4] [--seeds 0,1] [--threads 1,2]
The table in benchmarks/results/bmkp_robustness.md comes from this script. Exits 1 if a run fails.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import optuna

from incsweep.incremental.benchmarks import load_benchmark
from incsweep.incremental.methods.bmkp import KNOWLEDGE_GAP_TOLERANCE
from incsweep.incremental.run import RunConfig, run
from incsweep.study.spec import load_spec

DEMO = Path(__file__).resolve().parent.parent / "configs" / "studies" / "demo.yaml"


def sample_points(n: int, sampler_seed: int) -> list[dict]:
    """``n`` BMKP parameter sets drawn from the demo's BMKP space (method fixed to bmkp)."""
    spec = load_spec(DEMO)
    space = spec.space()
    params = space.params("bmkp")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=sampler_seed))
    points = []
    for _ in range(n):
        trial = study.ask()
        points.append({name: p.suggest(trial, f"bmkp.{name}") for name, p in params.items()})
        study.tell(trial, 0.0)
    return points


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=4)
    ap.add_argument("--sampler-seed", type=int, default=0)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--threads", default="1,2")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(DEMO)
    base = spec.base_run()
    bench = load_benchmark(RunConfig.from_dict({**base, "method": "bmkp"}).benchmark)
    chance = 1.0 / max(len(t.classes) for t in bench.tasks)
    points = sample_points(args.points, args.sampler_seed)
    print(f"BMKP robustness: demo space, {len(points)} points (RandomSampler seed {args.sampler_seed}), "
          f"seeds {args.seeds}, threads {args.threads}; chance {chance:.2f}, gap tolerance {KNOWLEDGE_GAP_TOLERANCE}")
    print("| point | gamma | lam | lr | seed | threads | test acc of each task when learned | min "
          "| max gap (working - knowledge) | last acc | MB | s | ok |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    failures = 0
    for i, params in enumerate(points):
        for seed in (int(s) for s in args.seeds.split(",")):
            for threads in (int(t) for t in args.threads.split(",")):
                cfg = RunConfig.from_dict({**base, "method": "bmkp", "seed": seed, "threads": threads,
                                           "method_config": params})
                tic = time.perf_counter()
                result = run(cfg, benchmark=bench)
                wall = time.perf_counter() - tic
                diag = [t.acc_row[t.task] for t in result.tasks]
                gaps = [t.method_stats["working_acc"] - t.method_stats["knowledge_acc"] for t in result.tasks]
                ok = min(diag) > chance and max(gaps) <= KNOWLEDGE_GAP_TOLERANCE + 1e-9  # 3 of 60 images is at it
                failures += not ok
                print(f"| {i} | {params['gamma']:.3f} | {params['lam']:.2f} | {params['lr']:.4f} | {seed} | {threads} | "
                      f"{' '.join(f'{a:.3f}' for a in diag)} | {min(diag):.3f} | {max(gaps):+.3f} | "
                      f"{result.final.test.last_acc:.3f} | {result.final.memory.total_mb:.3f} | {wall:.0f} | "
                      f"{'yes' if ok else 'NO'} |", flush=True)
    print(f"{failures} of {len(points) * len(args.seeds.split(',')) * len(args.threads.split(','))} runs failed the check")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
