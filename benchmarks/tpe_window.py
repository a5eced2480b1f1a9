"""What ``sampler.window`` buys and costs: TPE's time per proposal against the trials it has seen, and
the hypervolume a study reaches, with and without the window. A component measurement (Optuna alone,
no Ray, no training; the product-path figure is benchmarks/study_scale.py --samplers tpe-window).

The space is benchmarks/study_scale.py's: a method (finetune or replay), each method's learning rate
and weight decay (log scale) and replay's memory size, sampled as the study's searcher does it
(define-by-run, multivariate TPE with group=True), two objectives (accuracy up, memory down).
- Cost: a study is filled with N finished trials of random parameters and objectives, then 20
  proposals are timed (ask plus the suggestions), p50/p95, at each N.
- Quality: a synthetic objective over that space (accuracy a smooth bump in log lr and log wd, replay's
  rising with memory and saturating; memory 1 for finetune, 1 + memory/16 for replay), each sampler
  run for N trials from the same seeds; the front's hypervolume (reference: accuracy 0, memory 10)
  after 250, 500, 1,000, ... trials, against the problem's best front (7.8566: finetune at its best,
  replay at its best for each memory size; in the results' header). With ``--lags``, each proposal is
  made while that many earlier trials are still out (asked, not told): what a parallel study's
  sampler knows, and what asking ahead (study/searcher.py) takes from it.

Run:  .venv/bin/python benchmarks/tpe_window.py [--cost 1000 3000 10000] [--quality 3000] [--windows 500 1000]
      [--seeds 3] [--lags 0 1 2]
Output: benchmarks/results/tpe_window.txt (appended)
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
MARKS = (250, 500, 1000, 2000, 3000, 5000, 10000)


def _quiet() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")  # group=True is "experimental" in Optuna 5; the study builds it so


def sampler(window: int | None, seed: int):
    import optuna

    from incsweep.study.windowed_tpe import WindowedTPESampler

    kw = {"seed": seed, "multivariate": True, "group": True}
    return optuna.samplers.TPESampler(**kw) if window is None else WindowedTPESampler(window=window, **kw)


def space(trial) -> tuple[str, float, float, int | None]:
    m = trial.suggest_categorical("method", ["finetune", "replay"])
    lr = trial.suggest_float(f"{m}.lr", 1e-4, 1, log=True)
    wd = trial.suggest_float(f"{m}.wd", 1e-6, 1e-2, log=True)
    mem = trial.suggest_int("replay.memory_size", 4, 128) if m == "replay" else None
    return m, lr, wd, mem


def objective(trial) -> tuple[float, float]:
    m, lr, wd, mem = space(trial)
    bump = math.exp(-((math.log10(lr) + 1.5) ** 2) / 0.3 - ((math.log10(wd) + 4) ** 2) / 1.5)
    if mem is None:
        return 0.4 * bump, 1.0
    return bump * (0.4 + 0.6 * (1 - math.exp(-mem / 30))), 1.0 + mem / 16


def front_hypervolume(values: list[tuple[float, float]]) -> float:
    """Hypervolume of (accuracy up, memory down) points against accuracy 0, memory 10."""
    from incsweep.analysis.hypervolume import hypervolume

    return hypervolume(np.asarray(values, dtype=np.float64), [0.0, 10.0], ["max", "min"])


def ideal() -> float:
    """The best front: finetune at accuracy 0.4 (memory 1), replay at its best for each memory size."""
    return front_hypervolume([(0.4, 1.0)] + [(0.4 + 0.6 * (1 - math.exp(-m / 30)), 1.0 + m / 16)
                                             for m in range(4, 129)])


def cost(n: int, window: int | None) -> tuple[float, float]:
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    _quiet()
    rng = np.random.default_rng(0)
    dists = {"method": CategoricalDistribution(["finetune", "replay"]),
             "replay.memory_size": IntDistribution(4, 128)}
    for m in ("finetune", "replay"):
        dists[f"{m}.lr"] = FloatDistribution(1e-4, 1, log=True)
        dists[f"{m}.wd"] = FloatDistribution(1e-6, 1e-2, log=True)
    trials = []
    for i in range(n):
        m = ("finetune", "replay")[i % 2]
        p = {"method": m, f"{m}.lr": float(10 ** rng.uniform(-4, 0)), f"{m}.wd": float(10 ** rng.uniform(-6, -2))}
        if m == "replay":
            p["replay.memory_size"] = int(rng.integers(4, 129))
        trials.append(optuna.trial.create_trial(params=p, distributions={k: dists[k] for k in p},
                                                values=[float(rng.uniform()), float(rng.uniform(1, 9))]))
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler(window, 0))
    study.add_trials(trials)
    took = []
    for _ in range(20):
        tic = time.perf_counter()
        trial = study.ask()
        space(trial)
        took.append(time.perf_counter() - tic)
        study.tell(trial, [float(rng.uniform()), float(rng.uniform(1, 9))])
    return float(np.percentile(took, 50)), float(np.percentile(took, 95))


def quality(n: int, window: int | None, seed: int, lag: int = 0) -> tuple[dict[int, float], float]:
    """The front's hypervolume at MARKS after each number of trials; ``lag``: each proposal is made
    while ``lag`` earlier trials are still out (asked, not yet told), as in a study running ``lag``
    trials besides the one proposed (a study of concurrency c that asks ahead: lag c)."""
    import optuna

    _quiet()
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler(window, seed))
    marks, tic = {}, time.perf_counter()
    def ask() -> optuna.trial.Trial:
        trial = study.ask()
        space(trial)  # sampled now (Optuna samples at the first suggestion), as the study's searcher does
        return trial

    out = [ask() for _ in range(min(lag, n))]
    for i in range(1, n + 1):
        if i + lag <= n:
            out.append(ask())
        trial = out.pop(0)
        study.tell(trial, objective(trial))
        if i in MARKS or i == n:
            marks[i] = front_hypervolume([tuple(t.values) for t in study.trials if t.values is not None])
    return marks, time.perf_counter() - tic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cost", type=int, nargs="*", default=[1000, 3000, 10000], help="trials seen, for the cost")
    ap.add_argument("--quality", type=int, default=3000, help="trials a study runs, for the hypervolume (0: skip)")
    ap.add_argument("--windows", type=int, nargs="+", default=[500, 1000])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lags", type=int, nargs="+", default=[0],
                    help="trials still out at each proposal (quality only; a study of concurrency c: c - 1, or c "
                         "when it asks ahead)")
    ap.add_argument("--workers", type=int, default=2, help="processes for the quality runs")
    ap.add_argument("--out", default=str(RESULTS / "tpe_window.txt"))
    args = ap.parse_args()
    import optuna

    lines = [f"# benchmarks/tpe_window.py {' '.join(sys.argv[1:])}; {date.today()}; {platform.machine()}, optuna "
             f"{optuna.__version__}; ideal hypervolume {ideal():.4f}"]
    print(lines[0], flush=True)
    settings: list[int | None] = [None, *args.windows]
    for n in args.cost:
        for w in settings:
            p50, p95 = cost(n, w)
            lines.append(f"cost: {n} trials seen, window {w or 'none'}: proposal p50 {p50 * 1e3:.1f} ms, "
                         f"p95 {p95 * 1e3:.1f} ms")
            print(lines[-1], flush=True)
    if args.quality:
        jobs = [(w, s, lag) for w in settings for lag in args.lags for s in range(args.seeds)]
        with ProcessPoolExecutor(args.workers) as pool:
            done = list(pool.map(quality, [args.quality] * len(jobs), *zip(*jobs)))
        for w in settings:
            for lag in args.lags:
                runs = [done[i] for i, (jw, _, jl) in enumerate(jobs) if jw == w and jl == lag]
                name = f"window {w or 'none'}" + (f", lag {lag}" if args.lags != [0] else "")
                for (marks, secs), seed in zip(runs, range(args.seeds)):
                    lines.append(f"quality: {name}, seed {seed}: hypervolume "
                                 + ", ".join(f"{k}: {v:.4f}" for k, v in marks.items()) + f" ({secs:.0f} s)")
                final = [marks[args.quality] for marks, _ in runs]
                lines.append(f"quality: {name}: mean hypervolume after {args.quality} trials "
                             f"{np.mean(final):.4f} (min {min(final):.4f}, max {max(final):.4f}); "
                             f"{np.mean([s for _, s in runs]):.0f} s a study")
                print("\n".join(lines[-args.seeds - 1:]), flush=True)
    with open(args.out, "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
