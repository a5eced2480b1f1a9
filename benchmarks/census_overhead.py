"""What the engine's memory census (incremental/census.py) costs a task, on the product path.

Runs ``incsweep run`` (a subprocess, as a user would) for the demo study's two methods at its
settings on real Fashion-MNIST (configs/studies/demo.yaml: MEMO and BMKP, task-IL, 150 images a
class) and for two tiny runs, and reads each task's "census" phase (TaskResult.phase_s) from the
result JSON against the task's wall time. Target: < 1% of a task.

Usage: .venv/bin/python benchmarks/census_overhead.py
Output: benchmarks/results/census_overhead.txt
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

BIN = Path(sys.executable).parent / "incsweep"
FASHION = ["--benchmark", "seq-fashionmnist", "--set", "scenario=task_il", "--set", "benchmark.class_order=natural",
           "--set", "benchmark.train_per_class=150", "--set", "benchmark.test_per_class=100",
           "--set", "benchmark.val_fraction=0.2"]
# The demo's fixed fields (configs/studies/demo.yaml) with one point of its search space.
RUNS = {
    "memo (demo settings)": ["--method", "memo", *FASHION, "--set", "backbone=resnet14", "--set", "width=8",
                             "--set", "init_epochs=8", "--set", "init_lr=0.05", "--set", "epochs=3",
                             "--set", "schedule=cosine", "--set", "batch_size=32", "--set", "memory_size=100",
                             "--set", "split_after=layer1"],
    "bmkp (demo settings)": ["--method", "bmkp", *FASHION, "--set", "width=8", "--set", "init_epochs=8",
                             "--set", "init_lr=0.05", "--set", "epochs=3", "--set", "retrain_epochs=1",
                             "--set", "schedule=cosine", "--set", "batch_size=32", "--set", "momentum=0.9",
                             "--set", "example_num=100", "--set", "gamma_first=0.96", "--set", "max_rank=null"],
    "replay (tiny, synthetic)": ["--method", "replay", "--benchmark", "synthetic", "--set", "benchmark.n_classes=6",
                                 "--set", "backbone=tiny", "--set", "width=4", "--set", "batch_size=16",
                                 "--set", "memory_size=12"],
    "memo (tiny, synthetic)": ["--method", "memo", "--benchmark", "synthetic", "--set", "benchmark.n_classes=6",
                               "--set", "backbone=tiny", "--set", "width=4", "--set", "batch_size=16",
                               "--set", "init_epochs=1", "--set", "epochs=1", "--set", "memory_size=12"],
}


THREADS = (1, 2)  # torch threads per run: a trial's CPU share, as studies set it


def measure(args: list[str]) -> list[tuple[float, float]]:
    """(census seconds, task wall seconds) for every task of one ``incsweep run``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        done = subprocess.run([str(BIN), "run", *args, "--out", str(out)], capture_output=True, text=True,
                              env={**os.environ})
        if done.returncode != 0:
            raise SystemExit(f"incsweep run {' '.join(args)} failed: {done.stderr.strip()}")
        tasks = json.loads(out.read_text())["tasks"]
    return [(t["phase_s"]["census"], t["wall_s"]) for t in tasks]


def main() -> None:
    lines = [f"# census overhead, `incsweep run` on {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} CPUs", "",
             f"{'run':26s} {'threads':>7s} {'tasks':>5s} {'task wall (s, mean)':>20s} {'census (ms, mean)':>18s} "
             f"{'census (ms, max)':>17s} {'share of the task':>18s}"]
    for threads in THREADS:
        for name, args in RUNS.items():
            rows = measure([*args, "--set", f"threads={threads}"])
            census = [c for c, _ in rows]
            share = max(c / w for c, w in rows)
            lines.append(f"{name:26s} {threads:7d} {len(rows):5d} {sum(w for _, w in rows) / len(rows):20.3f} "
                         f"{1000 * sum(census) / len(census):18.2f} {1000 * max(census):17.2f} {100 * share:17.3f}%")
            print(lines[-1], flush=True)
    lines += ["", "share of the task: the largest census/wall ratio over the run's tasks."]
    text = "\n".join(lines) + "\n"
    out = Path(__file__).parent / "results" / "census_overhead.txt"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
