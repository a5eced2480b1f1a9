"""How a study's platform cost grows with its number of trials, measured on the product path.

For each N and sampler: ``incsweep study run`` (a subprocess: embedded Ray, Tune, the spec's Optuna
sampler in the driver, the scheduler, the Parquet sink, progress lines) over N trials of the
built-in ``finetune`` and ``replay`` made tiny (2 tasks of a synthetic 8x8 stream, a 4-wide tiny backbone, ten
epochs: about half a second of training a trial), two trials at a time on one CPU each. Then, on the
finished study, ``incsweep study status``, ``analyze`` and ``export``; with ``--resume``, a second
copy of the study is killed -9 (driver and its Ray session) when 90% of its trials are done and
``incsweep study resume`` is timed to the end; with ``--resume in-place`` the measured study itself
is killed at 90% and resumed (its wall is then launch to kill plus the resume).

Figures (printed, and appended to --out):
- wall against the ideal: N x (one trial's run time in a plain in-process loop, measured on 20 of
  the study's own configurations, spread over it) / concurrency; Ray Tune's release test "bookkeeping
  overhead" allows 1.28x. Also without the embedded Ray's start-up (launch to first task), and against
  the issue's ideal, the trials' own task time (their rows' wall seconds, cached tasks not counted)
  / concurrency.
- per-trial platform overhead: (wall - ideal) x concurrency / N.
- the sampler's cost per trial (user attr ``sampler_ask_s`` the searcher stores: ask plus the
  define-by-run suggestions), p50/p95 by trial range; how many trials were asked ahead (proposed
  while the trials trained, not when a slot freed: study/searcher.py).
- where the slot time went, per trial: own task time, in-trial overhead (a trial's start to its
  final row, less its tasks), and slots idle between trials (slot_time).
- the driver's RSS (the ``incsweep`` process, /proc every second) against trials finished; growth
  from trial 100 to trial N.
- files and bytes the study wrote, by top folder; the Optuna journal's size.

Run:  .venv/bin/python benchmarks/study_scale.py --trials 100 1000 --samplers tpe nsga2 random [--resume]
Output: benchmarks/results/study_scale.txt (appended), study_scale.json (every figure)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

import yaml
from kill_sweep import kill_study  # this folder's script: run as benchmarks/study_scale.py

BIN = Path(sys.executable).parent / "incsweep"
RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCY = 2
# 4 synthetic classes in tasks of 2: 2 tasks; 64 images a class at 8x8, a 4-wide tiny net, 10 epochs: 0.54 s a
# trial in a plain loop here. Two methods, replay's memory searched: a real accuracy/memory front
# (finetune alone ties every trial on memory, and the tiny task saturates its accuracy).
NET = {"backbone": "tiny", "width": 4, "epochs": 10, "batch_size": 8}
SPEC = {"name": "scale", "methods": ["finetune", "replay"], "concurrency": CONCURRENCY, "seed": 0,
        "benchmark": {"name": "synthetic", "n_classes": 4, "increment": 2, "image_size": 8, "train_per_class": 64,
                      "test_per_class": 4, "val_fraction": 0.25},
        "search": {"finetune": NET, "replay": {**NET, "memory_size": {"low": 4, "high": 128}}},  # + lr, wd
        "resources": {"cpu": 1}}
SAMPLER = {"tpe": {"name": "tpe", "multivariate": True}, "nsga2": {"name": "nsga2"}, "random": {"name": "random"},
           # what docs/cluster.md recommends past a few thousand trials: TPE over the latest 1,000 and the front
           "tpe-window": {"name": "tpe", "multivariate": True, "window": 1000}}


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """(seconds since launch, RSS MB) of one process, every ``every_s``."""

    def __init__(self, pid: int, t0: float, every_s: float = 1.0):
        super().__init__(daemon=True)
        self.pid, self.t0, self.every_s, self.samples = pid, t0, every_s, []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            mb = rss_mb(self.pid)
            if mb is not None:
                self.samples.append((time.time() - self.t0, mb))
            self.stop.wait(self.every_s)


def launch(args: list[str], log: Path, ray_tmp: str) -> subprocess.Popen:
    return subprocess.Popen([str(BIN), *args], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "RAY_TMPDIR": ray_tmp}, start_new_session=True)


def finished_trials(log: Path) -> int:
    """Trials finished so far, from the driver's last progress line ("trials K/N")."""
    try:
        text = log.read_bytes()[-4000:].decode(errors="replace")
    except OSError:
        return 0
    marks = [line.split("trials ", 1)[1].split("/", 1)[0] for line in text.splitlines() if "[trials " in line]
    return int(marks[-1]) if marks and marks[-1].isdigit() else 0


def timed(args: list[str]) -> tuple[float, int]:
    tic = time.perf_counter()
    rc = subprocess.run([str(BIN), *args], capture_output=True, text=True).returncode
    return time.perf_counter() - tic, rc


def study_rows(storage: Path) -> list[dict]:
    """Every row of the study (tasks and finals), read once for all the figures below."""
    from incsweep.analysis import load_results

    return load_results(str(storage)).to_pylist()


def plain_trial_s(rows: list[dict], n: int = 20) -> float:
    """One trial's run time outside the platform: ``incremental.run`` on ``n`` of the study's own
    resolved configurations, in this process, one torch thread (as a trial has one CPU)."""
    import torch

    from incsweep.incremental.run import RunConfig, run

    finals = [r for r in rows if r["is_final"]]
    # spread over the whole study: its first trials are the sampler's random start-up, whose mix of
    # methods and memory sizes differs from what a model-based sampler proposes later
    configs = [RunConfig.from_dict(json.loads(r["config_json"])) for r in finals[::max(1, len(finals) // n)]][:n]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(configs[0])  # the first run pays for imports and torch's lazy start-up
        tic = time.perf_counter()
        for cfg in configs:
            run(cfg)
        return (time.perf_counter() - tic) / len(configs)
    finally:
        torch.set_num_threads(threads)


def ask_latencies(storage: Path) -> tuple[dict[int, float], int]:
    """The sampler's seconds per proposal by Optuna trial number; how many trials were asked ahead."""
    import optuna

    from incsweep.study.searcher import ASK_S_ATTR, ASKED_AHEAD_ATTR, make_optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=SPEC["name"], storage=make_optuna_storage(str(storage / "optuna.journal")))
    trials = study.get_trials(deepcopy=False)
    return ({t.number: t.user_attrs[ASK_S_ATTR] for t in trials if ASK_S_ATTR in t.user_attrs},
            sum(bool(t.user_attrs.get(ASKED_AHEAD_ATTR)) for t in trials))


def slot_time(rows: list[dict]) -> dict[str, float]:
    """Where the trial slots' time went, per trial, from the rows' times: (first trial start to last
    final row) x concurrency = the trials' spans (start to the driver's final row) + slots idle between
    trials (the driver ending one trial and starting the next); a span = own task time + in-trial
    overhead (reporting each task and waiting for the driver to ask for the next, cache and checkpoint
    work). The trials' spans overlap a resumed study's gap, so this is for uninterrupted studies."""
    from incsweep.core.vocabulary import FROM_CACHE, WALL_TIME

    spans: dict[str, list[float]] = {}
    own: dict[str, float] = {}
    for r in rows:
        span = spans.setdefault(r["trial_id"], [math.inf, -math.inf])
        span[0] = min(span[0], r["started_at"].timestamp())
        span[1] = max(span[1], r["finished_at"].timestamp())
        if not r["is_final"] and not r[FROM_CACHE]:
            own[r["trial_id"]] = own.get(r["trial_id"], 0.0) + r[WALL_TIME]
    n = len(spans)
    window = max(e for _, e in spans.values()) - min(s for s, _ in spans.values())
    span_s = sum(e - s for s, e in spans.values())
    own_s = sum(own.values())
    return {"own_ms": own_s / n * 1e3, "in_trial_ms": (span_s - own_s) / n * 1e3,
            "idle_ms": (window * CONCURRENCY - span_s) / n * 1e3}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def own_task_s(rows: list[dict], before: float = float("inf")) -> float:
    """The trials' own run time: the wall seconds of every task they trained (a task taken from the
    prefix cache trained in another trial and is counted there), as the trials measured it; with
    ``before`` (a unix time), only tasks that finished by then."""
    from incsweep.core.vocabulary import FROM_CACHE, WALL_TIME

    return sum(r[WALL_TIME] for r in rows
               if not r["is_final"] and not r[FROM_CACHE] and r["finished_at"].timestamp() <= before)


def resume_split(rows: list[dict], tic: float) -> dict[str, float]:
    """What a resume launched at ``tic`` spent on the trials' own tasks (the tasks it trained, their
    wall seconds / concurrency: the host's speed, not the platform's), and when its first task began."""
    from incsweep.core.vocabulary import FROM_CACHE, WALL_TIME

    resumed = [r for r in rows if not r["is_final"] and r["finished_at"].timestamp() > tic]
    return {"resume_own_s": sum(r[WALL_TIME] for r in resumed if not r[FROM_CACHE]) / CONCURRENCY,
            "resume_first_task_s": min(r["started_at"].timestamp() for r in resumed) - tic}


def finish_times(rows: list[dict]) -> tuple[list[float], float]:
    """Unix times at which trials finished (final rows), sorted; the first task's start."""
    ends = sorted(r["finished_at"].timestamp() for r in rows if r["is_final"])
    first = min(r["started_at"].timestamp() for r in rows if not r["is_final"])
    return ends, first


def files_by_folder(storage: Path) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for path in storage.rglob("*"):
        if path.is_file():
            top = path.relative_to(storage).parts[0]
            n, b = out.get(top, (0, 0))
            out[top] = (n + 1, b + path.stat().st_size)
    return out


def one_study(n: int, sampler: str, work: Path, resume: str | None) -> dict:
    spec = {**SPEC, "trials": n, "sampler": SAMPLER[sampler]}
    spec_path = work / f"{sampler}_{n}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    storage, log = work / f"{sampler}_{n}", work / f"{sampler}_{n}.log"
    ray_tmp = tempfile.mkdtemp(prefix="ss", dir="/tmp")
    t0 = time.time()
    proc = launch(["study", "run", str(spec_path), "--storage", str(storage)], log, ray_tmp)
    rss = RssSampler(proc.pid, t0)
    rss.start()
    in_place: dict = {}
    if resume == "in-place":
        # the measured study itself is killed at 90% and resumed: one run gives both the scale figures
        # and the resume (a second copy of a 10,000-trial study would double a ~75-minute run)
        while proc.poll() is None and finished_trials(log) < int(0.9 * n):
            time.sleep(0.5)
        killed_at, t_kill = finished_trials(log), time.time()
        kill_study(proc, ray_tmp)
        gap = time.time() - t_kill  # the harness's kill and wait: not the platform's time
        ray_tmp = tempfile.mkdtemp(prefix="ss", dir="/tmp")
        tic = time.time()
        proc = launch(["study", "resume", str(storage)], storage.with_suffix(".resume.log"), ray_tmp)
        rss.pid = proc.pid
        in_place = {"killed_at_trials": killed_at, "kill_s": t_kill - t0, "kill_gap_s": gap, "resume_tic": tic}
    rc = proc.wait()
    t_end = time.time()
    wall = t_end - t0 - in_place.get("kill_gap_s", 0.0)
    rss.stop.set()
    rss.join()
    kill_study(proc, ray_tmp)  # nothing should be left; a leftover would skew the next study
    if rc != 0:
        raise SystemExit(f"{spec_path}: exit {rc}; log {log}:\n{log.read_text()[-3000:]}")

    rows = study_rows(storage)
    ends, first_start = finish_times(rows)
    trial_s = plain_trial_s(rows)
    ideal = n * trial_s / CONCURRENCY
    own_ideal = own_task_s(rows) / CONCURRENCY  # the issue's ideal: the trials' own run time / concurrency
    asks, asked_ahead = ask_latencies(storage)

    def trials_by(t: float) -> int:  # trials finished by t seconds after launch
        return sum(e - t0 <= t for e in ends)

    samples = [(trials_by(t), mb) for t, mb in rss.samples]
    at_100 = [mb for k, mb in samples if k >= min(100, n)]
    rss_100 = at_100[0] if at_100 else float("nan")
    files = files_by_folder(storage)
    fig = {
        "n": n, "sampler": sampler, "wall_s": wall, "startup_s": first_start - t0, "plain_trial_s": trial_s,
        "ideal_s": ideal, "ratio": wall / ideal, "ratio_after_startup": (wall - (first_start - t0)) / ideal,
        "own_ideal_s": own_ideal, "own_ratio": wall / own_ideal,
        "overhead_per_trial_s": (wall - ideal) * CONCURRENCY / n,
        "asked_ahead": asked_ahead, "slot_per_trial": slot_time(rows),
        "ask_s": {f"{lo + 1}-{hi}": {"p50": percentile(v, 0.5), "p95": percentile(v, 0.95), "n": len(v)}
                  for lo, hi in _ranges(n) if (v := [s for k, s in asks.items() if lo <= k < hi])},
        "rss_peak_mb": max(mb for _, mb in samples), "rss_at_100_mb": rss_100, "rss_end_mb": samples[-1][1],
        "rss_growth_100_to_n_mb": max(mb for _, mb in samples) - rss_100,
        # the driver's RSS when each of these many trials had finished (first sample at or after it)
        "rss_by_trials_mb": {m: next(mb for k, mb in samples if k >= m) for m in _marks(n)},
        "files": {k: {"files": c, "bytes": b} for k, (c, b) in sorted(files.items())},
        "files_total": sum(c for c, _ in files.values()), "bytes_total": sum(b for _, b in files.values()),
        "journal_bytes": (storage / "optuna.journal").stat().st_size,
    }
    fig["status_s"], rc_status = timed(["study", "status", str(storage)])
    fig["analyze_s"], rc_analyze = timed(["analyze", str(storage), "--out", str(work / f"{sampler}_{n}_analysis")])
    fig["export_s"], rc_export = timed(["export", str(storage), "--select", "front", "--out",
                                        str(work / f"{sampler}_{n}_best")])
    fig["exit_codes"] = {"status": rc_status, "analyze": rc_analyze, "export": rc_export}
    if in_place:
        # the wall before the kill against the own task time of the trials that had finished by then
        fig.update({k: in_place[k] for k in ("killed_at_trials", "kill_s", "kill_gap_s")})
        fig["resume_s"], fig["resume_exit"] = t_end - in_place["resume_tic"], rc
        fig.update(resume_split(rows, in_place["resume_tic"]))
        fig["own_ratio_before_kill"] = in_place["kill_s"] / (own_task_s(rows, before=t0 + in_place["kill_s"])
                                                             / CONCURRENCY)
    elif resume == "copy":
        fig.update(kill_and_resume(spec_path, work / f"{sampler}_{n}_killed", n))
    return fig


def _marks(n: int) -> list[int]:
    return [m for m in (100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000) if m <= n]


def _ranges(n: int) -> list[tuple[int, int]]:
    edges = [0, 10, 100, 1000, 10000, 100000]
    return [(lo, min(hi, n)) for lo, hi in zip(edges, edges[1:]) if lo < n]


def kill_and_resume(spec_path: Path, storage: Path, n: int) -> dict:
    """A second copy of the study, SIGKILLed at 90% of its trials, then resumed to the end."""
    ray_tmp = tempfile.mkdtemp(prefix="ss", dir="/tmp")
    log = storage.with_suffix(".log")
    proc = launch(["study", "run", str(spec_path), "--storage", str(storage)], log, ray_tmp)
    while proc.poll() is None and finished_trials(log) < int(0.9 * n):
        time.sleep(0.5)
    killed_at = finished_trials(log)
    kill_study(proc, ray_tmp)
    ray_tmp = tempfile.mkdtemp(prefix="ss", dir="/tmp")
    tic = time.time()
    proc = launch(["study", "resume", str(storage)], storage.with_suffix(".resume.log"), ray_tmp)
    rc = proc.wait()
    resume_s = time.time() - tic
    kill_study(proc, ray_tmp)
    return {"killed_at_trials": killed_at, "resume_s": resume_s, "resume_exit": rc, **resume_split(study_rows(storage), tic)}


def report(fig: dict) -> list[str]:
    asks = ", ".join(f"trials {k}: p50 {v['p50'] * 1e3:.1f} ms, p95 {v['p95'] * 1e3:.1f} ms"
                     for k, v in fig["ask_s"].items())
    files = ", ".join(f"{k} {v['files']} ({v['bytes'] / 1e6:.2f} MB)" for k, v in fig["files"].items())
    lines = [
        f"N={fig['n']} sampler={fig['sampler']}: wall {fig['wall_s']:.0f} s vs ideal {fig['ideal_s']:.0f} s "
        f"(N x {fig['plain_trial_s']:.3f} s / {CONCURRENCY}) = {fig['ratio']:.2f}x "
        f"({fig['ratio_after_startup']:.2f}x without the {fig['startup_s']:.0f} s start-up); "
        f"platform overhead {fig['overhead_per_trial_s']:.2f} s per trial; against the trials' own task time / "
        f"{CONCURRENCY} ({fig['own_ideal_s']:.0f} s): {fig['own_ratio']:.2f}x",
        f"  sampler ask+suggest: {asks}; {fig['asked_ahead']} of {fig['n']} asked ahead",
        "  slot time per trial: own tasks {own_ms:.0f} ms, in-trial overhead {in_trial_ms:.0f} ms, "
        "slots idle between trials {idle_ms:.0f} ms".format(**fig["slot_per_trial"]),
        f"  driver RSS: {fig['rss_at_100_mb']:.0f} MB at trial 100, peak {fig['rss_peak_mb']:.0f} MB "
        f"(growth {fig['rss_growth_100_to_n_mb']:+.0f} MB), {fig['rss_end_mb']:.0f} MB at the end; by trials "
        + ", ".join(f"{k}: {mb:.0f}" for k, mb in fig["rss_by_trials_mb"].items()),
        f"  files: {fig['files_total']} ({fig['bytes_total'] / 1e6:.1f} MB): {files}; "
        f"journal {fig['journal_bytes'] / 1e6:.2f} MB",
        f"  on the finished study: status {fig['status_s']:.1f} s, analyze {fig['analyze_s']:.1f} s, "
        f"export {fig['export_s']:.1f} s (exit {fig['exit_codes']})",
    ]
    if "own_ratio_before_kill" in fig:
        lines.append(f"  the study itself was killed -9 at {fig['killed_at_trials']}/{fig['n']} trials "
                     f"({fig['kill_s']:.0f} s after launch: {fig['own_ratio_before_kill']:.2f}x the own task time "
                     f"of the trials finished by then / {CONCURRENCY}); study resume to the end: "
                     f"{fig['resume_s']:.0f} s (exit {fig['resume_exit']}); the wall above is launch to kill plus "
                     f"the resume, without the {fig['kill_gap_s']:.0f} s the harness took to kill")
    elif "resume_s" in fig:
        lines.append(f"  kill -9 at {fig['killed_at_trials']}/{fig['n']} trials, then study resume to the end: "
                     f"{fig['resume_s']:.0f} s (exit {fig['resume_exit']})")
    if "resume_own_s" in fig:
        lines.append(f"  the resume: own task time of the tasks it trained / {CONCURRENCY} {fig['resume_own_s']:.1f} s, "
                     f"the rest {fig['resume_s'] - fig['resume_own_s']:.1f} s (its first task began "
                     f"{fig['resume_first_task_s']:.1f} s after launch)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100])
    parser.add_argument("--samplers", nargs="+", default=["tpe"], choices=sorted(SAMPLER))
    parser.add_argument("--resume", nargs="?", const="copy", choices=["copy", "in-place"],
                        help="kill -9 at 90%% and time the resume: a second copy of the study (default), or "
                             "the measured study itself (in-place)")
    parser.add_argument("--work", help="keep the studies here (default: a temporary folder, removed)")
    parser.add_argument("--out", default=str(RESULTS / "study_scale.txt"))
    args = parser.parse_args()
    import ray

    head = (f"# benchmarks/study_scale.py {' '.join(sys.argv[1:])}; {date.today()}; {platform.machine()}, "
            f"{os.cpu_count()} cores (shared), ray {ray.__version__}; spec: {json.dumps(SPEC['search'])} on "
            f"{json.dumps(SPEC['benchmark'])}, concurrency {CONCURRENCY}")
    print(head, flush=True)
    out = [head]
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        for n in args.trials:
            for sampler in args.samplers:
                fig = one_study(n, sampler, work, args.resume)
                figures.append(fig)
                lines = report(fig)
                print("\n".join(lines), flush=True)
                out += lines
    with open(args.out, "a") as f:
        f.write("\n".join(out) + "\n")
    js = Path(args.out).with_suffix(".json")
    previous = json.loads(js.read_text()) if js.exists() else []
    js.write_text(json.dumps(previous + figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
