"""What experiment trackers cost a study, on the product path: `incsweep study run` of a spec with
`callbacks:` none, mlflow, wandb (offline), tensorboard+csv, and all four, each in a fresh storage
directory, wall time of the whole command (Python start-up, Ray, the study, the trackers' own
start-up and writes). Prints, per spec, each configuration's wall time, its overhead against no
trackers, and the lines of Ray's "performance bottleneck" warnings on stderr.

    python benchmarks/tracker_overhead.py [--specs tiny,demo] [--repeat 2]

The demo spec needs Fashion-MNIST (`make data`; INCSWEEP_DATA or Debian's package path).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).with_name("incsweep")
SETTINGS = {"none": [], "mlflow": ["mlflow"], "wandb": ["wandb"], "tensorboard+csv": ["tensorboard", "csv"],
            "all four": ["mlflow", "wandb", "tensorboard", "csv"]}


def run_once(spec: dict, callbacks: list[str], work: Path) -> tuple[float, int]:
    """Wall seconds of one `incsweep study run` with ``callbacks``, and its bottleneck-warning lines."""
    path = work / "spec.yaml"
    path.write_text(yaml.safe_dump({**spec, "callbacks": callbacks}))
    storage = work / "storage"
    tic = time.perf_counter()
    done = subprocess.run([str(BIN), "study", "run", str(path), "--storage", str(storage)], capture_output=True,
                          text=True, timeout=1800)
    wall = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"study run failed ({callbacks}): {done.stderr[-2000:]}")
    return wall, sum("bottleneck" in line for line in done.stderr.splitlines())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--specs", default="tiny,demo", help="shipped study specs (configs/studies)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each setting, interleaved")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"some of {','.join(SETTINGS)} ('none' always runs)")
    args = ap.parse_args()
    chosen = {"none", *args.settings.split(",")}
    unknown = sorted(chosen - set(SETTINGS))
    if unknown:
        ap.error(f"--settings: {unknown} unknown; choose from {list(SETTINGS)}")
    settings = {k: v for k, v in SETTINGS.items() if k in chosen}
    print(f"incsweep study run, {args.repeat} run(s) per setting, interleaved; wall of the whole command")
    for name in args.specs.split(","):
        spec = yaml.safe_load((ROOT / "configs" / "studies" / f"{name}.yaml").read_text())
        walls: dict[str, list[float]] = {s: [] for s in settings}
        warned: dict[str, int] = {s: 0 for s in settings}
        for _ in range(args.repeat):
            for setting, callbacks in settings.items():
                with tempfile.TemporaryDirectory(prefix="trk-") as tmp:
                    wall, warnings = run_once(spec, callbacks, Path(tmp))
                walls[setting].append(wall)
                warned[setting] += warnings
                print(f"  {name} {setting}: {wall:.1f} s", flush=True)
        base = statistics.median(walls["none"])
        print(f"\n{name} ({spec['trials']} trials; median of {args.repeat}):")
        print(f"{'trackers':18s} {'wall s':>8s} {'overhead':>9s} {'bottleneck lines':>17s}")
        for setting in settings:
            w = statistics.median(walls[setting])
            print(f"{setting:18s} {w:8.1f} {100 * (w - base) / base:8.1f}% {warned[setting]:17d}")
        print()


if __name__ == "__main__":
    main()
