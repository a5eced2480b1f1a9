"""kill -9 of `incsweep study run` at every second of its first N seconds, then one `study resume`.

For each kill moment t (1..N s after the start, default N=30): start ``incsweep study run`` (its
own embedded Ray, its own process group), SIGKILL the group and every process of its Ray session
at t, then run ``incsweep study resume`` once and check that the resume exits 0,
the study is done with its requested trials, every trial's tasks are stored exactly once (no
duplicate row, tasks 0..k-1 under one final row), no trial was replaced (no "orphaned" final row),
and no Optuna trial is left RUNNING with every Parquet-complete trial COMPLETE in Optuna.

The study: 10 trials of finetune on a small synthetic stream (3 tasks), concurrency 2; run
uninterrupted it took 36 s on this machine's 2 cores (`incsweep study run`, 2026-12-05), so the
kill moments cover Ray's start-up, Tune's first writes, trials mid-task and the last trials.

Usage: .venv/bin/python benchmarks/kill_sweep.py [--seconds 30] [--step 1]
Output: benchmarks/results/kill_sweep.txt (one line per kill moment, then the verdict)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

BIN = Path(sys.executable).parent / "incsweep"
SPEC = {"name": "ks", "methods": ["finetune"], "trials": 10, "concurrency": 2, "seed": 0,
        "benchmark": {"name": "synthetic", "n_classes": 6, "image_size": 16, "train_per_class": 64,
                      "test_per_class": 8, "val_fraction": 0.25},
        "search": {"finetune": {"backbone": "tiny", "width": 8, "epochs": 60, "batch_size": 16,
                                "lr": {"low": 0.01, "high": 0.2}}},
        "resources": {"cpu": 1}}
N_TASKS = 3  # SPEC's 6 classes in the synthetic benchmark's default 2 classes per task


def session_pids(marker: str) -> list[int]:
    """Processes whose environment holds RAY_TMPDIR=marker (the killed study's Ray session)."""
    needle = f"RAY_TMPDIR={marker}".encode()
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    out.append(int(entry.name))
            except OSError:
                pass
    return out


def kill_at(spec_path: Path, storage: Path, seconds: float, *, resume: bool = False) -> bool:
    """Start the study (``resume``: resume it) and SIGKILL it (group and Ray session) ``seconds``
    later; False: it ended first."""
    ray_tmp = tempfile.mkdtemp(prefix="ks", dir="/tmp")
    args = ["study", "resume", str(storage)] if resume else ["study", "run", str(spec_path), "--storage", str(storage)]
    proc = subprocess.Popen([str(BIN), *args],
                            env={**os.environ, "RAY_TMPDIR": ray_tmp}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    ended = proc.poll() is not None
    kill_study(proc, ray_tmp)
    return not ended


def kill_study(proc: subprocess.Popen, ray_tmp: str) -> None:
    """SIGKILL a study's driver (its process group) and every process of its Ray session."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    kill_ray_session(ray_tmp)


def kill_ray_session(ray_tmp: str, wait_s: float = 10.0) -> None:
    """SIGKILL every process of the Ray session started with RAY_TMPDIR=ray_tmp and wait for them:
    Ray starts some workers in sessions of their own, outside the driver's process group, and a
    crash takes them too (tests/conftest.py's kill_driver_when uses this as well)."""
    deadline = time.monotonic() + wait_s
    while (pids := session_pids(ray_tmp)) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.1)


def check(storage: Path) -> list[str]:
    """What is wrong with the resumed study (empty: nothing)."""
    import optuna
    import pyarrow.parquet as pq
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    problems = []
    rows = [r for f in storage.glob("results/**/*.parquet") if not f.name.startswith(".")
            for r in pq.read_table(f).to_pylist()]
    keys = [(r["trial_id"], r["task"], r["is_final"]) for r in rows]
    if len(keys) != len(set(keys)):
        problems.append("duplicate rows")
    by_trial: dict[str, list[dict]] = {}
    for r in rows:
        by_trial.setdefault(r["trial_id"], []).append(r)
    finals = []
    for tid, trs in by_trial.items():
        tasks = sorted(r["task"] for r in trs if not r["is_final"])
        last = [r for r in trs if r["is_final"]]
        if len(last) != 1:
            problems.append(f"{tid}: {len(last)} final rows")
            continue
        finals.append(last[0])
        if tasks != list(range(last[0]["tasks_done"])):
            problems.append(f"{tid}: tasks {tasks} under tasks_done {last[0]['tasks_done']}")
        if (last[0]["error"] or "").startswith("orphaned"):
            problems.append(f"{tid}: orphaned (replaced)")
    complete = sum(f["status"] == "complete" for f in finals)
    if complete != SPEC["trials"] or len(finals) != SPEC["trials"]:
        problems.append(f"{complete} complete of {len(finals)} finished, {SPEC['trials']} requested")
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=SPEC["name"],
                              storage=JournalStorage(JournalFileBackend(str(storage / "optuna.journal"))))
    states = Counter(t.state.name for t in study.get_trials())
    if states.get("RUNNING") or states.get("COMPLETE", 0) != complete:
        problems.append(f"optuna {dict(states)}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--step", type=int, default=1)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "kill_sweep.txt"))
    args = parser.parse_args()
    lines = [f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
             f"study: {json.dumps(SPEC['search'])}, trials {SPEC['trials']}, concurrency {SPEC['concurrency']}",
             "kill_s  killed  then  rc  then_s  files_at_kill  problems"]
    print(lines[0], flush=True)
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "ks.yaml"
        spec_path.write_text(yaml.safe_dump(SPEC))
        for t in range(1, args.seconds + 1, args.step):
            storage = Path(tmp) / f"s{t}"
            killed = kill_at(spec_path, storage, t)
            # killed before study.yaml was written: nothing is stored, and the way on is the same run
            stored = (storage / "study.yaml").exists()
            again = ["study", "resume", str(storage)] if stored else ["study", "run", str(spec_path), "--storage",
                                                                       str(storage)]
            files = len(list(storage.glob("results/**/*.parquet")))
            tic = time.monotonic()
            done = subprocess.run([str(BIN), *again], capture_output=True, text=True)
            took = time.monotonic() - tic
            problems = [] if done.returncode == 0 else [f"{again[1]} exit {done.returncode}: "
                                                        f"{done.stderr.strip().splitlines()[-1:]}"]
            problems += check(storage) if done.returncode == 0 else []
            failures += bool(problems)
            line = (f"{t:6d}  {str(killed):6s}  {again[1]:>6s} {done.returncode:2d}  {took:8.1f}  {files:5d}  "
                    f"{'; '.join(problems) or 'ok'}")
            lines.append(line)
            print(line, flush=True)
    verdict = (f"{args.seconds // args.step} kill moments: {failures} with a problem" if failures else
               f"all {len(lines) - 2} kill moments: one resume finished the study, nothing lost or duplicated")
    lines.append(verdict)
    print(verdict)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
