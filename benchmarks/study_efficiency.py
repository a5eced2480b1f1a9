"""Sweep efficiency on the product path: what a user's `incsweep study run` gets.

Each strategy is a real study run through ``incsweep.study.runner.run_study`` (what `incsweep study
run` calls): embedded local Ray, Ray Tune, OptunaSearch, the study's scheduler and, where on, the
prefix cache as trials use it. Two strategies, each sampler seed a pair of studies with the same
study seed (the run seed of every trial and the sampler's seed):

- ``random``: random sampler, FIFO scheduler, no prefix cache (plain random search);
- ``tpe+asha+prefix``: TPE (5 start-up trials, multivariate), ASHA on the task axis with the
  Pareto-aware rule (grace 2 tasks, reduction factor 2, rule ``dominated``: the spec's defaults)
  and the prefix cache.

The setting is that of the in-process harness's runs H and H2 (benchmarks/sweep_efficiency.py
``--budget-trials 60 --val-per-class 100``): BMKP on seq-fashionmnist, 5 tasks, natural class
order, 45 training + 100 validation + 20 test images a class, width 8, task 0 8 epochs, later tasks
1-2 epochs (searched), gamma/lam/lr over incsweep's default BMKP ranges.

Compute is read back from the studies' Parquet rows: the summed ``cpu_s`` of every task row that
was not reused from the prefix cache (``from_cache`` false), pruned and unfinished trials
included, in the order the rows were written. Ray's and the driver's own overhead is in neither
strategy's figure. Both strategies are compared up to the same compute B = the smaller of their
totals: the fraction is the compute at which tpe+asha+prefix first reaches random search's
hypervolume at B, over B ("never" when it does not within B). Hypervolume: validation avg_acc (max)
and total_mb (min) against (0, BMKP's planned upper bound of the memory), analysis.hypervolume.

Usage:  .venv/bin/python benchmarks/study_efficiency.py [--seeds 72,73,74,75] [--random-trials 60]
        [--tuned-trials 90] [--out benchmarks/results/study_efficiency]
Writes STEM.txt and STEM.json; progress on stderr. Pre-registered: benchmarks/results/PREREGISTERED.md, P.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
BENCH = {"name": "seq-fashionmnist", "train_per_class": 45, "val_per_class": 100, "test_per_class": 20,
         "class_order": "natural"}
# benchmarks/sweep_efficiency.py FIXED and INIT_EPOCHS (BMKP's paper SGD: no momentum, no weight decay;
# cosine because a 1-3 epoch step schedule never decays); the searched ranges are incremental/methods/bmkp.py's.
BMKP_SEARCH = {"width": 8, "batch_size": 32, "momentum": 0.0, "weight_decay": 0.0, "schedule": "cosine",
               "milestones": [], "init_lr": 0.05, "init_milestones": [], "retrain_epochs": 1,
               "gamma_first": 0.9, "example_num": 100, "init_epochs": 8, "max_rank": None,
               "epochs": {"low": 1, "high": 2},
               "gamma": {"low": 0.80, "high": 0.999}, "lam": {"low": 0.1, "high": 100.0, "log": True},
               "lr": {"low": 0.005, "high": 0.2, "log": True}}
STRATEGIES = {
    "random": {"sampler": {"name": "random"}, "scheduler": {"name": "fifo"}, "prefix_cache": False},
    "tpe+asha+prefix": {"sampler": {"name": "tpe", "startup_trials": 5, "multivariate": True},
                        "scheduler": {"name": "asha", "grace_period": 2, "reduction_factor": 2.0, "rule": "dominated"},
                        "prefix_cache": True},
}
# The in-process harness on the same seeds (benchmarks/results/sweep_efficiency_val100_seeds72to75.txt, H2).
HARNESS_H2 = {72: 0.13, 73: 0.47, 74: 0.22, 75: 0.17}


def spec_for(strategy: str, seed: int, trials: int, storage: Path):
    from incsweep.study.spec import StudySpec

    return StudySpec.from_dict({
        "name": f"eff-{strategy.replace('+', '-')}-{seed}", "methods": ["bmkp"], "benchmark": BENCH,
        "search": {"bmkp": BMKP_SEARCH}, "objectives": ["avg_acc:max", "total_mb:min"], "trials": trials,
        "concurrency": 2, "resources": {"cpu": 1, "gpu": 0}, "seed": seed, "storage": str(storage),
        **STRATEGIES[strategy]})


def reference_mb(spec) -> float:
    """BMKP's planned upper bound of the memory (every basis full) for the fixed network."""
    from incsweep.incremental.memory import MB
    from incsweep.incremental.methods.bmkp import BMKP
    from incsweep.incremental.run import RunConfig

    fixed = {k: v for k, v in BMKP_SEARCH.items() if not isinstance(v, dict)}
    cfg = RunConfig.from_dict({"method": "bmkp", "benchmark": BENCH,
                               "method_config": {**fixed, "gamma": 0.9, "lam": 1.0, "lr": 0.05, "epochs": 1}})
    return BMKP.plan(cfg.method_config, cfg.benchmark).total_bytes / MB


def curve(storage: Path, ref_mb: float) -> dict:
    """(compute spent, hypervolume of the complete runs so far) after every row, in write order."""
    from incsweep.analysis.hypervolume import hypervolume
    from incsweep.analysis.load import load_results

    rows = sorted(load_results(str(storage / "results")).to_pylist(), key=lambda r: (r["finished_at"], r["is_final"]))
    spent, points, out = 0.0, [], []
    trials, pruned, cached = set(), 0, 0
    for r in rows:
        trials.add(r["trial_id"])
        if not r["is_final"]:
            if r["from_cache"]:
                cached += 1
            else:
                spent += float(r["cpu_s"])
        elif r["status"] == "complete" and r["complete"] and math.isfinite(r["avg_acc"]):
            points.append((float(r["avg_acc"]), float(r["total_mb"])))
        elif r["status"] == "pruned":
            pruned += 1
        hv = hypervolume(np.asarray(points), (0.0, ref_mb), ("max", "min")) if points else 0.0
        out.append((spent, hv))
    return {"curve": out, "trials": len(trials), "complete": len(points), "pruned": pruned, "cached_tasks": cached,
            "compute": spent}


def hv_at(points: list[tuple[float, float]], compute: float) -> float:
    return max((hv for c, hv in points if c <= compute + 1e-9), default=0.0)


def first_reach(points: list[tuple[float, float]], target: float, budget: float) -> float | None:
    return next((c for c, hv in points if hv >= target - 1e-12 and c <= budget + 1e-9), None)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="72,73,74,75")
    ap.add_argument("--random-trials", type=int, default=60)
    ap.add_argument("--tuned-trials", type=int, default=90)
    ap.add_argument("--out", default=str(RESULTS / "study_efficiency"))
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from incsweep.study.runner import run_study

    seeds = [int(s) for s in args.seeds.split(",")]
    per_seed, tic = [], time.time()
    with tempfile.TemporaryDirectory(prefix="incsweep-eff-") as work:
        for seed in seeds:
            arms = {}
            for strategy, trials in (("random", args.random_trials), ("tpe+asha+prefix", args.tuned_trials)):
                storage = Path(work) / f"{strategy.replace('+', '-')}-{seed}"
                spec = spec_for(strategy, seed, trials, storage)
                t0 = time.time()
                summary = run_study(spec)
                arms[strategy] = {**curve(storage, reference_mb(spec)), "wall_s": time.time() - t0,
                                  "statuses": dict(summary.statuses)}
                print(f"seed {seed} {strategy}: {arms[strategy]['trials']} trials, {arms[strategy]['compute']:.0f} "
                      f"CPU-s, {arms[strategy]['wall_s']:.0f} s wall", file=sys.stderr, flush=True)
            rnd, tuned = arms["random"], arms["tpe+asha+prefix"]
            budget = min(rnd["compute"], tuned["compute"])
            target = hv_at(rnd["curve"], budget)
            reached = first_reach(tuned["curve"], target, budget)
            per_seed.append({"seed": seed, "budget_cpu_s": budget, "random_hv": target,
                             "tuned_hv": hv_at(tuned["curve"], budget),
                             "fraction": None if reached is None else reached / budget,
                             "arms": {k: {kk: vv for kk, vv in v.items() if kk != "curve"} for k, v in arms.items()},
                             "curves": {k: v["curve"] for k, v in arms.items()}})
    fractions = [p["fraction"] if p["fraction"] is not None else math.inf for p in per_seed]
    median = statistics.median(fractions)
    lines = [
        "study efficiency on the product path (run_study: embedded local Ray, Ray Tune, OptunaSearch, the study's "
        "scheduler and prefix cache): BMKP on seq-fashionmnist (5 tasks, 45 train + 100 val + 20 test images/class, "
        "width 8, task 0 8 epochs, later 1-2), random search (random sampler, FIFO, no prefix cache, "
        f"{args.random_trials} trials) vs TPE (5 start-up, multivariate) + ASHA (grace 2, rf 2, rule dominated) + "
        f"prefix cache ({args.tuned_trials} trials), concurrency 2, 1 CPU a trial; compute = summed cpu_s of the "
        "task rows not from the prefix cache; both compared up to the same compute (the smaller total); "
        f"study seeds {seeds}; wall time {(time.time() - tic) / 60:.1f} min",
        "",
        "seed  budget CPU-s  random HV  tuned HV at budget  tuned/random HV  fraction to random HV  harness H2 "
        "(same seed)  random trials  tuned trials (pruned, cached tasks)",
    ]
    for p in per_seed:
        r, t = p["arms"]["random"], p["arms"]["tpe+asha+prefix"]
        frac = "never" if p["fraction"] is None else f"{p['fraction']:.2f}"
        harness = HARNESS_H2.get(p["seed"])
        lines.append(f"{p['seed']:<5} {p['budget_cpu_s']:>12.0f}  {p['random_hv']:>9.4f}  {p['tuned_hv']:>18.4f}  "
                     f"{p['tuned_hv'] / p['random_hv'] if p['random_hv'] else math.nan:>15.3f}  {frac:>21}  "
                     f"{'n/a' if harness is None else f'{harness:.2f}':>21}  {r['trials']:>13}  "
                     f"{t['trials']} ({t['pruned']}, {t['cached_tasks']})")
    lines += ["", f"median fraction of random search's compute at which TPE + ASHA + prefix reaches random search's "
              f"hypervolume: {'never' if math.isinf(median) else f'{median:.2f}'} (target <= 0.33); the in-process "
              f"harness on the same seeds (H2): median {statistics.median(HARNESS_H2[s] for s in seeds if s in HARNESS_H2):.2f}"
              if any(s in HARNESS_H2 for s in seeds) else ""]
    text = "\n".join(lines)
    print(text)
    Path(args.out + ".txt").write_text(text + "\n")
    Path(args.out + ".json").write_text(json.dumps({"seeds": seeds, "per_seed": per_seed, "median": median
                                                    if math.isfinite(median) else None}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
