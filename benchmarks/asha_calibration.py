"""Calibrate ASHA's stopping rule on the task axis from complete runs: how often would a rule stop a
trial whose final point is on the front, and how much compute would it save?

Runs N configurations of sweep_efficiency.py's BMKP search space to the end (random sampler, its own
seed, task 0 shared through the prefix cache as in the sweep), recording every task's
(val avg_acc, stored MB) and CPU time. Then replays them offline, in many random orders and in
batches the size of a sweep (--batch trials, about what a sweep_efficiency strategy runs on its
budget), through each stopping rule of ``study.scheduler``: a trial stopped at a rung costs only its
tasks up to there and never reaches the front.

Reported per rule: the share of trials stopped, the compute saved, how often a point of the batch's
true front (all its trials run to the end) is stopped, and the hypervolume the batch keeps.

Usage:  .venv/bin/python benchmarks/asha_calibration.py [--n 160] [--seed 1000] [--workers 2]
        [--batch 24] [--orders 200] [--reuse benchmarks/results/asha_calibration.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from incsweep.analysis.pareto import pareto_mask
from incsweep.study.scheduler import RULES, keep_at_rung, rungs

RESULTS = Path(__file__).resolve().parent / "results"


def collect(job: tuple[int, int, int]) -> list[dict]:
    """Run configs ``start..start+count`` of the random sampler's sequence to the end, every task recorded."""
    import optuna
    import torch
    from sweep_efficiency import run_config, space

    from incsweep.incremental.benchmarks import load_benchmark
    from incsweep.incremental.prefix_cache import PrefixCache, cached_results, run_through_cache

    seed, start, count = job
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=seed))
    params_list = []
    for _ in range(start + count):  # the same sequence in every worker; each runs its own slice
        trial = study.ask()
        params_list.append(space(trial, "product"))
        study.tell(trial, [0.0, 0.0])
    work = Path(tempfile.mkdtemp(prefix="asha-cal-"))
    cache = PrefixCache(work / "cache", version="asha-calibration")
    bench = load_benchmark(run_config(params_list[0]).benchmark)
    out = []
    for i in range(start, start + count):
        cfg = run_config(params_list[i])
        ckpt = work / f"t{i}"
        tasks: list[dict] = []
        clock = [time.process_time()]

        def on_cached(state, tasks=tasks, clock=clock) -> None:
            tasks.extend({"avg_acc": r.val.avg_acc, "mb": r.memory.total_mb, "cpu_s": None}
                         for r in cached_results(state))
            clock[0] = time.process_time()  # the lookup is not the first trained task's compute

        def on_task_end(r, tasks=tasks, clock=clock) -> None:
            now = time.process_time()
            tasks.append({"avg_acc": r.val.avg_acc, "mb": r.memory.total_mb, "cpu_s": now - clock[0]})
            clock[0] = time.process_time()

        _, n_cached = run_through_cache(cfg, cache, on_task_end, checkpoint_dir=ckpt, on_cached=on_cached,
                                        benchmark=bench)
        out.append({"index": i, "params": params_list[i], "cached_tasks": n_cached, "tasks": tasks})
    shutil.rmtree(work, ignore_errors=True)
    return out


def replay(runs: list[dict], order: np.ndarray, budget: float, rule: str | None, rf: float, grace: int,
           task0_s: float) -> dict:
    """Run trials in ``order`` until ``budget`` CPU-s are spent (task 0 paid once: the prefix cache),
    stopping at rungs under ``rule`` (None: no stopping). Returns the complete points and counts."""
    n_tasks = len(runs[0]["tasks"])
    recorded = {r: [] for r in rungs(grace, rf, n_tasks)} if rule else {}
    spent, complete, stopped, ran = task0_s, [], 0, []
    for i in order:
        if spent >= budget:
            break
        tasks = runs[i]["tasks"]
        ran.append(i)
        done = n_tasks
        for t in range(1, n_tasks):
            spent += tasks[t]["cpu_s"]
            if t + 1 in recorded:
                point = [-tasks[t]["avg_acc"], tasks[t]["mb"]]
                rec = np.asarray(recorded[t + 1], dtype=np.float64).reshape(-1, 2)
                keep = keep_at_rung(point, rec, rf, rule)
                recorded[t + 1].append(point)
                if not keep:
                    done = t + 1
                    break
        if done == n_tasks:
            complete.append((tasks[-1]["avg_acc"], tasks[-1]["mb"]))
        else:
            stopped += 1
    return {"complete": complete, "stopped": stopped, "ran": ran}


def evaluate(runs: list[dict], n_orders: int, batch: int, rng_seed: int = 0) -> str:
    """Replay every rule in random orders at the compute of ``batch`` full trials; HV against running them all."""
    from sweep_efficiency import acc_mb_hypervolume, reference_mb

    ref = reference_mb()
    task0_s = float(np.mean([r["tasks"][0]["cpu_s"] for r in runs if r["tasks"][0]["cpu_s"] is not None]))
    rng = np.random.default_rng(rng_seed)
    orders = [rng.permutation(len(runs)) for _ in range(n_orders)]
    settings = [(None, 2.0, 2)] + [(rule, rf, 2) for rule in RULES for rf in (2.0, 3.0)]
    rows = []
    for rule, rf, grace in settings:
        hv_ratio, stopped_share, trials, front_lost = [], [], [], []
        for order in orders:
            full = [i for i in order[:batch]]
            budget = task0_s + sum(t["cpu_s"] for i in full for t in runs[i]["tasks"][1:])
            base = replay(runs, order, budget, None, rf, grace, task0_s)
            res = replay(runs, order, budget, rule, rf, grace, task0_s)
            hv_ratio.append(acc_mb_hypervolume(res["complete"], ref) / acc_mb_hypervolume(base["complete"], ref))
            stopped_share.append(res["stopped"] / len(res["ran"]))
            trials.append(len(res["ran"]) / len(base["ran"]))
            # points of the true front of the trials it ran (all run to the end) that it stopped
            everyone = [(runs[i]["tasks"][-1]["avg_acc"], runs[i]["tasks"][-1]["mb"]) for i in res["ran"]]
            front = front_points(everyone)
            front_lost.append(sum(p not in res["complete"] for p in front) / len(front))
        label = "none" if rule is None else f"{rule}, rf {rf:g}"
        rows.append(f"{label:18} {np.mean(trials):>10.2f} {np.mean(stopped_share):>8.0%} "
                    f"{np.mean(front_lost):>11.0%} {np.mean(hv_ratio):>12.4f} {np.mean(np.array(hv_ratio) >= 1 - 1e-12):>11.0%}")
    head = (f"ASHA rule calibration: {len(runs)} complete BMKP runs of sweep_efficiency's product space "
            f"(random sampler), replayed in {n_orders} random orders at the compute of {batch} full trials "
            f"(task 0 paid once, {task0_s:.1f} CPU-s; a later task "
            f"{np.mean([t['cpu_s'] for r in runs for t in r['tasks'][1:]]):.2f} CPU-s); grace 2 tasks")
    cols = (f"{'rule':18} {'trials x':>10} {'stopped':>8} {'front lost':>11} {'HV / no ASHA':>12} {'HV not lower':>11}")
    notes = ("trials x: trials run for the same compute, against no stopping; front lost: share of the "
             "front of the trials it ran (each run to the end) that it stopped; HV / no ASHA: hypervolume of "
             "its complete trials against running trials to the end on the same compute, mean over orders.")
    return "\n".join([head, "", cols, *rows, "", notes])


def front_points(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Points (acc max, MB min) no other point dominates (analysis's dominance)."""
    if not points:
        return []
    keep = pareto_mask(np.asarray(points, dtype=np.float64), ("max", "min"))
    return [p for p, k in zip(points, keep) if k]


def report(runs: list[dict], args: argparse.Namespace, out: Path) -> None:
    text = "\n\n".join(evaluate(runs, args.orders, int(b)) for b in args.batch.split(","))
    print(text)
    out.with_suffix(".txt").write_text(text + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=160, help="configurations to run to the end")
    ap.add_argument("--seed", type=int, default=1000, help="random sampler seed (apart from every sweep's seeds)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(RESULTS / "asha_calibration"))
    ap.add_argument("--batch", default="8,15,23",
                    help="comma-separated: replay at the compute of this many full trials (a sweep's random arm "
                         "runs about 23 on its 70-s budget)")
    ap.add_argument("--orders", type=int, default=200, help="random orders to replay")
    ap.add_argument("--reuse", action="store_true", help="replay the runs stored in OUT.json instead of running")
    args = ap.parse_args()
    out = Path(args.out)
    if args.reuse:
        runs = json.loads(out.with_suffix(".json").read_text())["runs"]
        report(runs, args, out)
        return
    per = -(-args.n // args.workers)
    jobs = [(args.seed, w * per, min(per, args.n - w * per)) for w in range(args.workers)]
    tic = time.perf_counter()
    with mp.get_context("spawn").Pool(args.workers) as pool:
        runs = [r for chunk in pool.map(collect, jobs) for r in chunk]
    out.with_suffix(".json").write_text(json.dumps({"seed": args.seed, "runs": runs}))
    print(f"{len(runs)} runs in {time.perf_counter() - tic:.0f} s")
    report(runs, args, out)


if __name__ == "__main__":
    main()
