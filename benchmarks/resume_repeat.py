"""One killed study resumed several times, by whichever checkout's code is imported: tells the code's
resume time from the host's speed.

``study_scale.py --resume`` times one resume; on this shared 2-core host the same code's resume moved
from 48 s to 65-73 s between sessions while a trial's own time moved from 0.53 s to 0.93 s. To say
whether a slower resume is the code or the host, run this with the current checkout and with an
older one back to back (``git worktree add /tmp/old <commit>``, then
``PYTHONPATH=/tmp/old .venv/bin/python benchmarks/resume_repeat.py``: the driver, its trials and this
script's plain loop then import the older code). The script works from its work folder, not the
directory it was started in: Ray puts the driver's working directory on its workers' import path, so
started from a checkout the trials would import that checkout's code whatever PYTHONPATH says (seen:
an older driver whose trials wrote the current code's configurations). The code the trials ran is
printed from the rows' ``code_version``.

It runs ``incsweep study run`` on study_scale.py's spec (N trials, the chosen sampler), kills the
driver and its Ray session with -9 at 90% of the trials, keeps that killed study, measures a trial's
plain-loop time on its configurations (study_scale.plain_trial_s), then times ``incsweep study
resume`` on ``--copies`` fresh copies of the killed study, one after another.

Run:  .venv/bin/python benchmarks/resume_repeat.py [--trials 1000] [--sampler tpe] [--copies 2]
Output: printed, and appended to benchmarks/results/resume_repeat.txt
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml
from study_scale import SAMPLER, SPEC, finished_trials, kill_study, launch, plain_trial_s, study_rows

RESULTS = Path(__file__).resolve().parent / "results"


def checkout_of_imported_code() -> str:
    """The commit (and whether it has local changes) of the checkout ``incsweep`` is imported from."""
    import incsweep

    root = Path(incsweep.__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run([*git, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                           text=True).stdout.strip()
    return f"{commit or '?'}{' (with local changes)' if dirty else ''} at {root}"


def kill_at_90(spec_path: Path, storage: Path, n: int) -> tuple[int, float]:
    """Run the study and kill -9 it (driver and Ray) once 90% of its trials finished."""
    ray_tmp = tempfile.mkdtemp(prefix="ss", dir="/tmp")
    log = storage.with_suffix(".log")
    tic = time.time()
    proc = launch(["study", "run", str(spec_path), "--storage", str(storage)], log, ray_tmp)
    while proc.poll() is None and finished_trials(log) < int(0.9 * n):
        time.sleep(0.5)
    killed_at = finished_trials(log)
    kill_study(proc, ray_tmp)
    if killed_at < int(0.9 * n):
        raise SystemExit(f"the study ended before 90% of its trials (exit {proc.returncode}); log {log}")
    return killed_at, time.time() - tic


def timed_resume(killed: Path, copy: Path) -> tuple[float, int]:
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(killed, copy, symlinks=True)
    ray_tmp = tempfile.mkdtemp(prefix="ss", dir="/tmp")
    tic = time.time()
    proc = launch(["study", "resume", str(copy)], copy.with_suffix(".resume.log"), ray_tmp)
    rc = proc.wait()
    seconds = time.time() - tic
    kill_study(proc, ray_tmp)  # nothing should be left; a leftover would skew the next resume
    return seconds, rc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--sampler", default="tpe", choices=sorted(SAMPLER))
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--work", help="keep the studies here (default: a temporary folder, removed)")
    parser.add_argument("--out", default=str(RESULTS / "resume_repeat.txt"))
    args = parser.parse_args()
    lines = [f"# benchmarks/resume_repeat.py {' '.join(sys.argv[1:])}; {date.today()}; code {checkout_of_imported_code()}"]
    print(lines[0], flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        os.chdir(work)  # see the module's docstring: the trials import what the driver's folder holds
        spec_path = work / f"{args.sampler}_{args.trials}.yaml"
        spec_path.write_text(yaml.safe_dump({**SPEC, "trials": args.trials, "sampler": SAMPLER[args.sampler]}))
        killed = work / "killed"
        killed_at, ran_s = kill_at_90(spec_path, killed, args.trials)
        rows = study_rows(killed)
        versions = sorted({str(r["code_version"]) for r in rows})
        lines.append(f"  {args.sampler}, {args.trials} trials: killed -9 at {killed_at} after {ran_s:.0f} s; trials' "
                     f"code_version {', '.join(versions)}; plain-loop trial {plain_trial_s(rows):.3f} s")
        print(lines[-1], flush=True)
        for k in range(args.copies):
            seconds, rc = timed_resume(killed, work / f"copy{k}")
            lines.append(f"  study resume of copy {k + 1}: {seconds:.1f} s (exit {rc})")
            print(lines[-1], flush=True)
    with open(args.out, "a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
