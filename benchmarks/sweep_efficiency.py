"""Hypervolume reached per unit of compute: random search, TPE, TPE + ASHA, TPE + ASHA + prefix reuse.

BMKP on seq-fashionmnist (5 tasks of 2 classes, small subsets, reduced ResNet-18 nf=8): the study
maximises validation avg_acc and minimises stored MB. Every strategy gets the same compute budget
(process CPU seconds of the trials, one torch thread: robust to other load on a shared machine)
and the same sampler seeds; every trial uses run seed 0.

This runs in-process with plain Optuna ask/tell and ``incremental.run`` (the study platform was
not ready when it was written). ASHA on the task axis uses the study platform's own Pareto-aware
rule (``study.scheduler.rungs`` / ``keep_at_rung``, as ``ParetoASHA``): a trial stops at a rung only
when at least a (1 - 1/rf) share of the trials recorded there dominates it on (avg_acc, MB); pruned
trials are told to Optuna as PRUNED (never COMPLETE, docs/ray-optuna.md trap 3) and only complete runs
count towards the hypervolume.

Usage:  .venv/bin/python benchmarks/sweep_efficiency.py [--budget 70] [--seeds 0,1,2] [--workers 2]
        [--budget-trials N] [--val-per-class N] [--init-epochs 8] [--grace 2] [--rf 2] [--asha-rule dominated|layer]
        [--tpe-startup 10] [--multivariate] [--space product|wide]
        [--strategies random,...] [--out STEM]
Writes STEM.{txt,png,json} (default benchmarks/results/sweep_efficiency). The recorded runs, all
with --tpe-startup 5 --multivariate (docs/efficiency.md has the table):
  --space wide --seeds 0,1,2 --out benchmarks/results/sweep_efficiency_seeds012        (B)
  --space wide --seeds 3,4,5                                                           (C)
  --space wide --seeds 6,7,8,9,10,11 --out benchmarks/results/sweep_efficiency_seeds6to11   (C2)
  --space wide --seeds 6,...,11 --strategies random,gp+asha+prefix --out ..._gp_seeds6to11
  --seeds 12,...,17 --strategies random,tpe,tpe+asha,tpe+asha+prefix,gp+asha+prefix
      --out benchmarks/results/sweep_efficiency_product_seeds12to17                     (D)
  --seeds 18,...,23 --strategies random,tpe+asha+prefix --out ..._product_seeds18to23  (E)
  --seeds 24,...,35 --strategies random,tpe+asha+prefix --asha-rule layer --rf 3
      --out benchmarks/results/sweep_efficiency_layer_seeds24to35                       (F)
  --seeds 36,...,47 --strategies random,tpe+asha+prefix --asha-rule layer --rf 3
      --budget-trials 24 --out benchmarks/results/sweep_efficiency_layer_seeds36to47   (F2)
  --seeds 48,...,57 --strategies random,tpe+asha+prefix --budget-trials 60
      --out benchmarks/results/sweep_efficiency_product_seeds48to57                     (G)
  --seeds 58,...,63 --strategies random,tpe+asha+prefix --budget-trials 60
      --out benchmarks/results/sweep_efficiency_product_seeds58to63                     (G2)
  --seeds 64,...,71 --strategies random,tpe+asha+prefix --budget-trials 60 --val-per-class 100
      --out benchmarks/results/sweep_efficiency_val100_seeds64to71                      (H)
  --seeds 72,...,75 --strategies random,tpe+asha+prefix --budget-trials 60 --val-per-class 100
      --out benchmarks/results/sweep_efficiency_val100_seeds72to75                      (H2)
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from incsweep.analysis.hypervolume import hypervolume
from incsweep.core.params import Float
from incsweep.search_spaces.spaces import default_space
from incsweep.study.scheduler import RULES, keep_at_rung, rungs

RESULTS = Path(__file__).resolve().parent / "results"
BENCH = {"name": "seq-fashionmnist", "train_per_class": 60, "test_per_class": 20, "val_fraction": 0.25,
         "class_order": "natural"}
# Fixed: the network and task 0's schedule, consolidation, gamma_first. SGD as in benchmarks/bmkp_fashionmnist.py (BMKP's paper:
# no momentum, no weight decay; cosine because a 1-3 epoch step schedule never decays).
FIXED = {"width": 8, "batch_size": 32, "momentum": 0.0, "weight_decay": 0.0, "schedule": "cosine",
         "milestones": [], "init_lr": 0.05, "init_milestones": [], "retrain_epochs": 1,
         "gamma_first": 0.9, "example_num": 100}
# Task 0 several times as long as a later task (1-2 epochs, searched): the premise of this comparison that the
# first task is the most expensive part of a run (MEMO/PyCIL: 200 epochs on the base task, which in
# the B50 protocols holds half of the classes). Here it is ~40% of a trial's compute.
INIT_EPOCHS = 8
STRATEGIES = ("random", "tpe", "tpe+asha", "tpe+asha+prefix")
# Not part of the recorded comparison; run with --strategies: Optuna's GP sampler (logEHVI, which
# targets the hypervolume directly) in place of TPE, with the same start-up trials as the TPE arm.
EXTRA_STRATEGIES = ("gp+asha+prefix",)
# ASHA on the task axis: rungs after 2 and 4 of 5 tasks. Grace 2, not 1: with prefix reuse every
# trial shares task 0, so a rung after one task would compare identical numbers. Reduction factor
# 2: a trial stops only when half of those recorded at its rung dominate it (3 would stop it at two
# in three: too eager for 5 tasks).
GRACE, RF = 2, 2


# The searched fields, all acting from task 1 on (BMKP.fields_for_tasks). "product": gamma, lam and
# lr over incsweep's default BMKP ranges (search_spaces.spaces), what `incsweep study` searches.
# "wide": the first recorded runs' ranges (A-C2 in docs/efficiency.md). Below gamma ~0.85 a later task
# adds no basis here, so 74% of the wide space's trials sat at one memory floor (2.075 MB) and the
# front collapsed to one or two points: a noisy one-dimensional maximum rather than a trade-off.
SPACE_NAMES = ("product", "wide")
WIDE = {"gamma": Float(0.5, 0.995), "lam": Float(0.01, 100.0, log=True), "lr": Float(0.005, 0.3, log=True)}


def space(trial, name: str = "product") -> dict:
    """Suggest the searched fields; epochs 1-2 (the short schedule) in both spaces."""
    params = WIDE if name == "wide" else {k: p for k, p in default_space("bmkp").items() if k in WIDE}
    return {**{k: p.suggest(trial, k) for k, p in params.items()}, "epochs": trial.suggest_int("epochs", 1, 2)}


def benchmark(val_per_class: int | None = None) -> dict:
    """BENCH, or with ``val_per_class``: the same 45 training images a class (60 less BENCH's 25%),
    validated on a fixed count a class held out of the whole training pool (a less noisy objective)."""
    if val_per_class is None:
        return BENCH
    fit = BENCH["train_per_class"] - round(BENCH["train_per_class"] * BENCH["val_fraction"])
    return {**{k: v for k, v in BENCH.items() if k != "val_fraction"}, "train_per_class": fit,
            "val_per_class": val_per_class}


def run_config(params: dict, init_epochs: int = INIT_EPOCHS, val_per_class: int | None = None):
    from incsweep.incremental.run import RunConfig

    mc = {**FIXED, "init_epochs": init_epochs, **params}
    return RunConfig.from_dict({"method": "bmkp", "benchmark": benchmark(val_per_class), "method_config": mc})


def reference_mb() -> float:
    """Hypervolume reference: accuracy 0 and BMKP's planned upper bound of the memory (every basis full)."""
    from incsweep.incremental.memory import MB
    from incsweep.incremental.methods.bmkp import BMKP

    cfg = run_config({"gamma": 0.9, "lam": 1.0, "lr": 0.05, "epochs": 1})
    return BMKP.plan(cfg.method_config, cfg.benchmark).total_bytes / MB


def acc_mb_hypervolume(points: list[tuple[float, float]], ref_mb: float) -> float:
    """2-D hypervolume of (accuracy to maximise, MB to minimise) against (0, ref_mb): analysis's."""
    if not points:
        return 0.0
    return hypervolume(np.asarray(points, dtype=np.float64), (0.0, ref_mb), ("max", "min"))


class TaskAxisASHA:
    """The study platform's Pareto-aware ASHA on the task axis (study.scheduler.ParetoASHA's rule,
    without Ray): at a rung a trial is compared with the points recorded there before it and goes on
    unless at least a (1 - 1/rf) share of them dominates it; its point is then recorded."""

    def __init__(self, grace: int, rf: int, n_tasks: int, rule: str = "dominated"):
        self.rungs: dict[int, list[list[float]]] = {r: [] for r in rungs(grace, rf, n_tasks)}
        self.rf, self.rule = rf, rule

    def keep_going(self, n_done: int, avg_acc: float, total_mb: float) -> bool:
        if n_done not in self.rungs:
            return True
        point = [-avg_acc, total_mb]  # as minimisation, like ParetoASHA's signs
        recorded = np.asarray(self.rungs[n_done], dtype=np.float64).reshape(-1, 2)
        keep = keep_at_rung(point, recorded, self.rf, self.rule)
        if all(math.isfinite(v) for v in point):
            self.rungs[n_done].append(point)
        return keep


class Pruned(Exception):
    pass


def trial_cost(init_epochs: int, val_per_class: int | None = None) -> float:
    """CPU seconds (one torch thread) of a mean full trial on this machine: the reference config
    with 1 and with 2 later-task epochs (the searched range), after one warm-up task."""
    import torch

    from incsweep.incremental.benchmarks import load_benchmark
    from incsweep.incremental.run import run

    torch.set_num_threads(1)
    configs = [run_config({"gamma": 0.9, "lam": 1.0, "lr": 0.05, "epochs": e}, init_epochs, val_per_class)
               for e in (1, 2)]
    bench = load_benchmark(configs[0].benchmark)
    run(configs[0], benchmark=bench, stop_after=1)  # first kernels out of the measurement
    costs = []
    for cfg in configs:
        tic = time.process_time()
        run(cfg, benchmark=bench)
        costs.append(time.process_time() - tic)
    return sum(costs) / len(costs)


def run_strategy(job: tuple[str, int, float, dict]) -> dict:
    """One (strategy, sampler seed) under a compute budget; returns its trials and curve."""
    import optuna
    import torch

    from incsweep.incremental.benchmarks import load_benchmark
    from incsweep.incremental.prefix_cache import PrefixCache, cached_results, run_through_cache
    from incsweep.incremental.run import run

    strategy, seed, budget, setting = job
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ref = reference_mb()
    warm = run_config({"gamma": 0.9, "lam": 1.0, "lr": 0.05, "epochs": 1}, setting["init_epochs"],
                      setting.get("val_per_class"))
    bench = load_benchmark(warm.benchmark)  # loaded once per process: no strategy pays for data loading
    run(warm, benchmark=bench, stop_after=1)  # one-time costs (first kernels) out of the measurement
    if strategy == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    elif strategy.startswith("gp"):
        sampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=setting["tpe_startup"])
    else:
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=setting["tpe_startup"],
                                             multivariate=setting["multivariate"])
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    asha = (TaskAxisASHA(setting["grace"], setting["rf"], bench.n_tasks, setting.get("asha_rule", "dominated"))
            if "asha" in strategy else None)
    work = Path(tempfile.mkdtemp(prefix=f"sweep-{strategy}-{seed}-"))  # removed at the end
    cache = PrefixCache(work / "cache", version="sweep-benchmark") if "prefix" in strategy else None
    used, trials, curve, front = 0.0, [], [(0.0, 0.0)], []
    while used < budget:
        tic = time.process_time()  # the sampler's own time (ask/tell) counts as compute too
        trial = study.ask()
        params = space(trial, setting["space"])
        cfg = run_config(params, setting["init_epochs"], setting.get("val_per_class"))
        ckpt = work / f"t{trial.number}" if cache is not None else None
        cached = [0]

        def check_rung(result) -> None:
            if asha is not None:
                if not asha.keep_going(result.task + 1, result.val.avg_acc, result.memory.total_mb):
                    raise Pruned

        def on_cached(state, cached=cached) -> None:
            cached[0] = len(state["results"])
            for r in cached_results(state):
                check_rung(r)  # cached tasks meet the rungs like trained ones

        try:
            res, _ = run_through_cache(cfg, cache, check_rung, checkpoint_dir=ckpt, on_cached=on_cached,
                                              benchmark=bench)
            acc, mb = res.final.val.avg_acc, res.final.memory.total_mb
            study.tell(trial, [acc, mb])
            front.append((acc, mb))
            status, walls, point = "complete", [t.wall_s for t in res.tasks], [acc, mb]
        except Pruned:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            status, walls, point = "pruned", [], None
        used += time.process_time() - tic
        trials.append({"status": status, "cached_tasks": cached[0], "compute": used, "task_walls": walls,
                       "params": params, "point": point})
        curve.append((used, acc_mb_hypervolume(front, ref)))
    entries = len(cache.entries()) if cache else 0
    shutil.rmtree(work, ignore_errors=True)
    return {"strategy": strategy, "seed": seed, "trials": trials, "curve": curve, "ref_mb": ref,
            "cache_entries": entries}


def reach(curve: list[tuple[float, float]], target: float) -> float | None:
    """Compute at which the curve first reaches ``target`` (None: never)."""
    for compute, hv in curve:
        if hv >= target - 1e-12:
            return compute
    return None


def report(results: list[dict], budget: float, setting: dict, wall: float) -> str:
    by = {(r["strategy"], r["seed"]): r for r in results}
    strategies = [s for s in (*STRATEGIES, *EXTRA_STRATEGIES) if any(r["strategy"] == s for r in results)]
    seeds = sorted({r["seed"] for r in results})
    bench = benchmark(setting.get("val_per_class"))
    split = (f"{bench['train_per_class']} train + {bench['val_per_class']} val images/class"
             if "val_per_class" in bench else f"{bench['train_per_class']} train images/class, {bench['val_fraction']:g} val")
    lines = [f"sweep efficiency: BMKP on seq-fashionmnist (5 tasks, {split}), "
             f"compute budget {budget:.0f} CPU-s per strategy and seed"
             + (f" ({setting['budget_trials']:g} mean full trials of {setting['trial_cpu_s']:.2f} CPU-s)"
                if "budget_trials" in setting else "") + f", sampler seeds {seeds}, "
             f"task 0: {setting['init_epochs']} epochs, later tasks 1-2; ASHA grace {setting['grace']} tasks, "
             f"reduction factor {setting['rf']}, Pareto-aware rule '{setting.get('asha_rule', 'dominated')}' "
             f"(study.scheduler.keep_at_rung); "
             f"TPE: {setting['tpe_startup']} start-up trials, multivariate {setting['multivariate']}; "
             f"search space: {setting.get('space', 'wide')}; "
             f"hypervolume of (val avg_acc, stored MB) "
             f"against (0, {results[0]['ref_mb']:.3f} MB); wall time {wall / 60:.1f} min", ""]
    lines.append(f"{'strategy':18} {'trials':>6} {'complete':>8} {'pruned':>6} {'cached tasks':>12} "
                 f"{'final HV':>9} {'HV / random':>11} {'to random final HV':>20} {'median':>7}")
    medians: dict[str, float | None] = {}
    for s in strategies:
        rows = [by[(s, seed)] for seed in seeds]
        n = sum(len(r["trials"]) for r in rows)
        comp = sum(t["status"] == "complete" for r in rows for t in r["trials"])
        cached = sum(t["cached_tasks"] for r in rows for t in r["trials"])
        hv = [r["curve"][-1][1] for r in rows]
        ratio = [h / by[("random", seed)]["curve"][-1][1] for h, seed in zip(hv, seeds)]
        fracs = []
        for r, seed in zip(rows, seeds):
            rnd = by[("random", seed)]
            at = reach(r["curve"], rnd["curve"][-1][1])
            fracs.append(None if at is None else at / rnd["curve"][-1][0])
        frac_txt = " ".join("never" if f is None else f"{f:.2f}" for f in fracs)
        med = median(fracs)
        medians[s] = med
        lines.append(f"{s:18} {n:>6} {comp:>8} {n - comp:>6} {cached:>12} {sum(hv) / len(hv):>9.4f} "
                     f"{sum(ratio) / len(ratio):>11.2f} {frac_txt:>20} {'never' if med is None else f'{med:.2f}':>7}")
    walls = [t["task_walls"] for seed in seeds for t in by[("random", seed)]["trials"] if t["task_walls"]]
    share = sum(w[0] / sum(w) for w in walls) / len(walls)
    lines += ["", "compute to random final HV: the fraction of random search's compute (per sampler seed, then the "
              "median; 'never' counts as above every number) at which the strategy's hypervolume first reaches "
              "random search's final hypervolume (target: <= 0.33 for tpe+asha+prefix).",
              f"task 0's share of a random-search trial's wall time: {share:.0%} (mean over its complete trials)."]
    for s in ("tpe+asha+prefix", *EXTRA_STRATEGIES):
        if s in medians:
            verdict = medians[s]
            met = verdict is not None and verdict <= 1 / 3
            lines.append(f"target {'MET' if met else 'NOT MET'}: {s} median "
                         f"{'never' if verdict is None else f'{verdict:.2f}'} (target <= 0.33).")
    return "\n".join(lines)


def median(fracs: list[float | None]) -> float | None:
    """Median of per-seed fractions, 'never' (None) ranking above every number."""
    ranked = sorted(fracs, key=lambda f: math.inf if f is None else f)
    mid = len(ranked) // 2
    if len(ranked) % 2:
        return ranked[mid]
    lo, hi = ranked[mid - 1], ranked[mid]
    return None if hi is None else (lo + hi) / 2


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    colors = dict(zip((*STRATEGIES, *EXTRA_STRATEGIES), ("tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red")))
    seeds = sorted({r["seed"] for r in results})
    styles = ("-", "--", ":", "-.")
    for r in results:
        xs, ys = zip(*r["curve"])
        ax.step(xs, ys, where="post", color=colors[r["strategy"]], alpha=0.85,
                linestyle=styles[seeds.index(r["seed"]) % len(styles)], label=f"{r['strategy']} (seed {r['seed']})")
    budget = max(r["curve"][-1][0] for r in results if r["strategy"] == "random")
    ax.axvline(budget / 3, color="black", linewidth=0.8, linestyle=":")  # the target: a third of random's compute
    ax.set_xlabel("compute (trial CPU seconds, 1 thread)")
    ax.set_ylabel("hypervolume (val avg_acc x MB saved)")
    ax.set_title("BMKP on seq-fashionmnist: hypervolume over compute")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=70.0, help="CPU seconds per strategy and seed")
    ap.add_argument("--budget-trials", type=float, default=None,
                    help="instead of --budget: this many mean full trials' CPU time, measured here first "
                         "(machines differ: runs A-E had ~23 trials in 70 CPU-s, F on a slower machine 12)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated sampler seeds")
    ap.add_argument("--workers", type=int, default=2, help="processes (one torch thread each)")
    ap.add_argument("--init-epochs", type=int, default=INIT_EPOCHS, help="task 0's epochs (fixed, shared)")
    ap.add_argument("--grace", type=int, default=GRACE, help="ASHA grace period in tasks")
    ap.add_argument("--rf", type=int, default=RF, help="ASHA reduction factor")
    ap.add_argument("--asha-rule", default="dominated", choices=sorted(RULES),
                    help="which trials stop at a rung (study.scheduler.RULES)")
    ap.add_argument("--tpe-startup", type=int, default=10,
                    help="random start-up trials of TPE (and GP) (Optuna's default: 10)")
    ap.add_argument("--multivariate", action="store_true", help="multivariate TPE (Optuna's default: off)")
    ap.add_argument("--val-per-class", type=int, default=None,
                    help="validate on this many held-out images a class (45 train a class) instead of 15")
    ap.add_argument("--space", default="product", choices=SPACE_NAMES,
                    help="searched ranges: incsweep's default BMKP space, or the first runs' wide one")
    ap.add_argument("--strategies", default=",".join(STRATEGIES),
                    help=f"comma-separated, random first; of {[*STRATEGIES, *EXTRA_STRATEGIES]}")
    ap.add_argument("--out", default=str(RESULTS / "sweep_efficiency"), help="path stem of the .txt/.png/.json")
    args = ap.parse_args()
    strategies = args.strategies.split(",")
    unknown = [s for s in strategies if s not in (*STRATEGIES, *EXTRA_STRATEGIES)]
    if unknown or "random" not in strategies:
        ap.error(f"--strategies {unknown or strategies}: must include random, allowed: {[*STRATEGIES, *EXTRA_STRATEGIES]}")
    if args.val_per_class is not None and not 1 <= args.val_per_class <= 5000:
        ap.error(f"--val-per-class {args.val_per_class}: allowed 1 to 5000 (Fashion-MNIST has 6000 a class)")
    setting = {"init_epochs": args.init_epochs, "grace": args.grace, "rf": args.rf, "val_per_class": args.val_per_class,
               "tpe_startup": args.tpe_startup, "asha_rule": args.asha_rule, "multivariate": args.multivariate,
               "space": args.space}
    if args.budget_trials is not None:
        unit = trial_cost(args.init_epochs, args.val_per_class)
        args.budget = args.budget_trials * unit
        setting["budget_trials"], setting["trial_cpu_s"] = args.budget_trials, unit
        print(f"a mean full trial: {unit:.2f} CPU-s here; budget {args.budget_trials:g} trials = {args.budget:.0f} CPU-s",
              flush=True)
    jobs = [(s, int(seed), args.budget, setting) for seed in args.seeds.split(",") for s in strategies]
    tic = time.perf_counter()
    results = []
    with mp.get_context("spawn").Pool(args.workers, maxtasksperchild=1) as pool:
        # a run is 15-90 min: one line per finished (strategy, seed) says how far it is
        for res in pool.imap_unordered(run_strategy, jobs, chunksize=1):
            results.append(res)
            print(f"[{len(results)}/{len(jobs)}, {(time.perf_counter() - tic) / 60:.1f} min] {res['strategy']} "
                  f"seed {res['seed']}: {len(res['trials'])} trials, final HV {res['curve'][-1][1]:.4f}", flush=True)
    order = {(s, int(seed)): i for i, (s, seed, _, _) in enumerate(jobs)}
    results.sort(key=lambda r: order[(r["strategy"], r["seed"])])
    text = report(results, args.budget, setting, time.perf_counter() - tic)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text(text + "\n")
    plot(results, out.with_suffix(".png"))
    # every trial's parameters, point and compute: for later analysis without re-running
    out.with_suffix(".json").write_text(json.dumps({"setting": setting, "budget": args.budget, "results": results}))


if __name__ == "__main__":
    main()
