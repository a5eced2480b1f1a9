"""Per-trial overhead of the study platform against the same runs in a plain loop.

A real study (``study.runner.run_study``: StudySearcher, the trainable with a checkpoint per task,
the Parquet sink, reused actors) runs N short finetune trials one at a time on one CPU; then the
same N resolved configs (read back from the study's Parquet ``config_json``) run in a plain
``incremental.run`` loop in this process. Overhead per trial = (study wall time without
``ray.init``) / N - (loop wall time) / N; what matters for real studies is its share of a
30-second trial (target < 5%).

Usage:  .venv/bin/python benchmarks/ray_overhead.py [--trials 12]
Writes benchmarks/results/ray_overhead.txt.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "ray_overhead.txt"
SPEC = {
    "name": "overhead", "methods": ["finetune"],
    "benchmark": {"name": "seq-fashionmnist", "train_per_class": 60, "test_per_class": 20, "val_fraction": 0.25},
    "search": {"finetune": {"backbone": "tiny", "width": 8, "epochs": 1, "batch_size": 32,
                            "lr": {"low": 0.01, "high": 0.2, "log": True}}},
    "concurrency": 1, "resources": {"cpu": 1}, "prefix_cache": False,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    args = parser.parse_args()

    import ray
    import torch

    from incsweep.incremental.run import RunConfig, run
    from incsweep.study.results import list_trial_files, read_trial_file
    from incsweep.study.runner import run_study
    from incsweep.study.spec import StudySpec

    with tempfile.TemporaryDirectory() as tmp:
        spec = StudySpec.from_dict({**SPEC, "trials": args.trials, "storage": f"{tmp}/study"})
        tic = time.perf_counter()
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, _temp_dir=tempfile.mkdtemp(prefix="ro", dir="/tmp"))
        init_s = time.perf_counter() - tic
        tic = time.perf_counter()
        summary = run_study(spec)
        study_s = time.perf_counter() - tic
        ray.shutdown()
        assert summary.statuses.get("complete") == args.trials, summary
        configs = []
        for method, tid in list_trial_files(spec.storage, spec.name):
            final = [r for r in read_trial_file(spec.storage, spec.name, method, tid) if r["is_final"]][0]
            configs.append(RunConfig.from_dict(json.loads(final["config_json"])))

    torch.set_num_threads(1)
    tic = time.perf_counter()
    for cfg in configs:
        run(cfg)
    loop_s = time.perf_counter() - tic

    n = len(configs)
    per_trial = (study_s - loop_s) / n
    lines = [
        f"# benchmarks/ray_overhead.py --trials {n}, ray {ray.__version__}, shared 2-core CPU, {date.today()}",
        "study platform (run_study: searcher, per-task checkpoints, Parquet sink, reuse_actors=True), one trial at a time:",
        f"  ray.init: {init_s:.1f} s (once per study, not included)",
        f"  study:      {study_s / n:.2f} s per trial ({study_s:.1f} s for {n})",
        f"  plain loop: {loop_s / n:.2f} s per trial ({loop_s:.1f} s)",
        f"overhead: {per_trial:.2f} s per trial = {100 * per_trial / max(loop_s / n, 1e-9):.0f}% of these short trials; "
        f"{100 * per_trial / 30:.1f}% of a 30-s trial (target < 5%)",
        "the study's wall time includes Tune's start-up (trial actors, the first torch import in a worker), "
        "which is amortised over the trials",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.write_text(text + "\n")


if __name__ == "__main__":
    main()
