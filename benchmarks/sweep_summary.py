"""Every recorded sweep-efficiency run side by side, from the runs' JSON (no training).

Recomputes each run's target metric (the fraction of random search's compute at which a strategy
first reaches random search's final hypervolume, as ``sweep_efficiency.report``) and adds one
secondary figure the target does not show: how close each strategy is, at a third of random search's
compute, to random search's final hypervolume. The target asks for reaching it exactly; on this
benchmark the hypervolume flattens early, so "reached at 0.40" and "0.995 of it at 0.33" can be the
same search. The secondary figure was added after runs A-F2 were made; it is reported, not used
for any verdict.

Usage:  .venv/bin/python benchmarks/sweep_summary.py [--out benchmarks/results/sweep_summary.txt]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_efficiency import RESULTS, median, reach  # noqa: E402

# The target's share of random search's compute ("at most a third").
TARGET_SHARE = 1 / 3


def hv_at(curve: list[list[float]], compute: float) -> float:
    """Hypervolume a strategy had reached after ``compute`` CPU-s (0 before its first trial)."""
    reached = [hv for used, hv in curve if used <= compute]
    return max(reached, default=0.0)


def summarize(path: Path) -> list[str]:
    """One line per strategy of one run's JSON; random search's own line is the baseline (it reaches
    its final hypervolume at 1.00 or before, and shows how flat its own curve is at a third)."""
    data = json.loads(path.read_text())
    by = {(r["strategy"], r["seed"]): r for r in data["results"]}
    seeds = sorted({seed for _, seed in by})
    strategies = ["random", *sorted({s for s, _ in by if s != "random"})]
    lines = []
    for strategy in strategies:
        fracs, closeness = [], []
        for seed in seeds:
            rnd, run = by[("random", seed)]["curve"], by[(strategy, seed)]["curve"]
            final, spent = rnd[-1][1], rnd[-1][0]
            at = reach(run, final)
            fracs.append(None if at is None else at / spent)
            closeness.append(hv_at(run, TARGET_SHARE * spent) / final)
        med = median(fracs)
        within = sum(c >= 0.99 for c in closeness)
        lines.append(f"{path.stem.removeprefix('sweep_efficiency'):24} {strategy:16} {len(seeds):>5} "
                     f"{'never' if med is None else f'{med:.2f}':>13} "
                     f"{statistics.median(closeness):>16.3f} {min(closeness):>8.3f} {within:>7}/{len(seeds)}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(RESULTS / "sweep_summary.txt"), help="where to write the table")
    args = ap.parse_args()
    files = sorted(RESULTS.glob("sweep_efficiency*.json"))
    if not files:
        sys.exit(f"error: no sweep_efficiency*.json in {RESULTS}; run benchmarks/sweep_efficiency.py first")
    header = (f"{'run (file suffix)':24} {'strategy':16} {'seeds':>5} {'median frac':>13} "
              f"{'HV@1/3 / rnd final':>16} {'worst':>8} {'>=0.99':>9}")
    lines = [header] + [line for f in files for line in summarize(f)]
    lines += ["", "median frac: the target metric (fraction of random search's compute to reach its final "
              "hypervolume; 'never' ranks above every number; target <= 0.33).",
              "HV@1/3 / rnd final: the strategy's hypervolume at a third of random search's compute over "
              "random search's final hypervolume, median over seeds; worst: the lowest seed; >=0.99: seeds "
              "within 1% of it at a third of the compute."]
    text = "\n".join(lines)
    Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
