"""Per-trial scheduling overhead of Ray Tune (reused actors) against the same runs in a plain loop.

Each trial is one short ``incremental.run`` (finetune, tiny backbone, seq-fashionmnist subsets)
reporting every task with ``tune.report``. Both sides run the trials one at a time on one torch
thread. Overhead per trial = (Tune wall time, without ``ray.init``) / N - (loop wall time) / N;
its share of a 30-second trial is what matters for real studies.

Usage:  .venv/bin/python benchmarks/ray_overhead.py [--trials 12]
Recorded in benchmarks/results/ray_overhead.txt. The study platform's trainable was not in the
tree when this was written: the trainable here is a minimal one of the same shape.
"""

from __future__ import annotations

import argparse
import tempfile
import time

CONFIG = {"method": "finetune", "benchmark": {"name": "seq-fashionmnist", "train_per_class": 60,
                                               "test_per_class": 20, "val_fraction": 0.25},
          "method_config": {"backbone": "tiny", "width": 8, "epochs": 1, "batch_size": 32, "lr": 0.05}}


def one_run(lr: float, report=None) -> float:
    import torch

    from incremental.run import RunConfig, run

    torch.set_num_threads(1)
    cfg = RunConfig.from_dict({**CONFIG, "method_config": {**CONFIG["method_config"], "lr": lr}})
    result = run(cfg, (lambda r: report(r.flat())) if report else None)
    return result.final.val.avg_acc


def trainable(config: dict) -> None:
    from ray import tune

    one_run(config["lr"], tune.report)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    args = ap.parse_args()
    lrs = [0.01 + 0.01 * i for i in range(args.trials)]
    one_run(0.05)  # warm the driver process like a reused actor is warm after its first trial

    tic = time.perf_counter()
    for lr in lrs:
        one_run(lr)
    loop = time.perf_counter() - tic

    import ray
    from ray import tune

    tic = time.perf_counter()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="ray-ovh-"))
    init = time.perf_counter() - tic
    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            param_space={"lr": tune.grid_search(lrs)},
            tune_config=tune.TuneConfig(reuse_actors=True, max_concurrent_trials=1),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        tic = time.perf_counter()
        grid = tuner.fit()
        tuned = time.perf_counter() - tic
        assert not grid.errors, grid.errors
    ray.shutdown()
    n = len(lrs)
    per_trial = (tuned - loop) / n
    print(f"trials: {n} (finetune, 5 tasks, tiny backbone; one at a time, 1 CPU, reuse_actors=True)")
    print(f"plain loop: {loop / n:.2f} s per trial")
    print(f"Ray Tune:   {tuned / n:.2f} s per trial (ray.init once: {init:.1f} s, not included)")
    print(f"overhead:   {per_trial:.2f} s per trial = {per_trial / (loop / n):.0%} of these "
          f"{loop / n:.1f}-s trials; {per_trial / 30:.1%} of a 30-s trial (target < 5%)")
    print("the first trial on a fresh actor also pays the one-time torch import cost (profile_trial.txt); "
          "amortised over the trials here")


if __name__ == "__main__":
    main()
