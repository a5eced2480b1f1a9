"""Per-trial cost of incsweep's MEMO beside PyCIL's on the CIFAR-100-shaped timing work.

The work: synthetic data shaped like CIFAR-100 (100 classes of 3x32x32 uint8 images, 100 training and
20 test images a class, incsweep's ``make_synthetic`` with data seed 0), B0 Inc10 (10 tasks of 10
classes, seed-1993 class order), ResNet-32, batch 128, 1 epoch a task, 400 exemplars, 2 torch threads.
Both systems get the same arrays, and run one after the other on this machine, nothing else running:

* incsweep: ``incsweep run --method memo --benchmark synthetic ...`` (the CLI a user runs); its own
  per-phase split (``TaskResult.phase_s``: training, consolidation = exemplar selection and weight
  aligning, evaluation) comes from the result JSON.
* PyCIL: its ``trainer.train`` with exps/memo.json as it ships except the schedule above (init_epoch
  and epochs 1, memory_size 400) and the device (CPU; PyCIL's ``_set_device`` only builds CUDA
  devices). The data manager is handed the same synthetic arrays through PyCIL's own ``iData``
  interface with its CIFAR-100 transforms; PyCIL's data loaders keep their shipped ``num_workers``.
  Its phases are timed by wrapping ``MEMO._train`` (training, and the test pass it makes after an
  epoch), ``build_rehearsal_memory`` (exemplar selection) and ``eval_task`` (evaluation).

Wall time is each whole command (start-up and data generation included). Usage:
    .venv/bin/python benchmarks/pycil_cifar_timing.py --pycil DIR   # DIR: a PyCIL checkout, commit 87cc411
benchmarks/results/pycil_cifar_timing.md records its output.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_CLASSES, TRAIN_PER_CLASS, TEST_PER_CLASS, IMAGE_SIZE, DATA_SEED = 100, 100, 20, 32, 0
INIT, INCREMENT, EPOCHS, MEMORY, BATCH, THREADS = 10, 10, 1, 400, 128, 2
TARGET = 0.25  # the goal set for this comparison: incsweep's wall time at most 1/4 of PyCIL's

OURS = ["--method", "memo", "--benchmark", "synthetic",
        "--set", f"benchmark.n_classes={N_CLASSES}", "--set", f"benchmark.image_size={IMAGE_SIZE}",
        "--set", "benchmark.channels=3", "--set", f"benchmark.train_per_class={TRAIN_PER_CLASS}",
        "--set", f"benchmark.test_per_class={TEST_PER_CLASS}", "--set", f"benchmark.data_seed={DATA_SEED}",
        "--set", f"benchmark.init_classes={INIT}", "--set", f"benchmark.increment={INCREMENT}",
        "--set", "backbone=resnet32", "--set", f"epochs={EPOCHS}", "--set", f"init_epochs={EPOCHS}",
        "--set", f"memory_size={MEMORY}", "--set", f"batch_size={BATCH}", "--set", f"threads={THREADS}"]

# Runs inside PyCIL's folder on sys.path; prints one JSON line (prefix PHASES=) with its phase totals.
PYCIL_DRIVER = r"""
import json, sys, time
import torch
sys.path.insert(0, sys.argv[1])
torch.set_num_threads(int(sys.argv[3]))
import numpy as np
import trainer, utils.data_manager as dm
from utils.data import iCIFAR100
from models.memo import MEMO
from incsweep.incremental.datasets import make_synthetic

cfg = json.loads(sys.argv[2])

class SyntheticCIFAR100(iCIFAR100):
    def download_data(self):
        raw = make_synthetic(n_classes=cfg["n_classes"], train_per_class=cfg["train_per_class"],
                             test_per_class=cfg["test_per_class"], image_size=cfg["image_size"], channels=3,
                             seed=cfg["data_seed"])
        hwc = lambda x: x.permute(0, 2, 3, 1).contiguous().numpy()  # PyCIL's arrays are N x H x W x C uint8
        self.train_data, self.train_targets = hwc(raw.x_train), raw.y_train.numpy()
        self.test_data, self.test_targets = hwc(raw.x_test), raw.y_test.numpy()

dm._get_idata = lambda name: SyntheticCIFAR100()
trainer._set_device = lambda args: args.__setitem__("device", [torch.device("cpu")])
phases = {"train": 0.0, "exemplars": 0.0, "evaluate": 0.0}

def timed(cls, name, phase):
    inner = getattr(cls, name)
    def wrapper(self, *a, **k):
        tic = time.perf_counter()
        try:
            return inner(self, *a, **k)
        finally:
            phases[phase] += time.perf_counter() - tic
    setattr(cls, name, wrapper)

timed(MEMO, "_train", "train")
timed(MEMO, "build_rehearsal_memory", "exemplars")
timed(MEMO, "eval_task", "evaluate")
args = json.load(open(sys.argv[1] + "/exps/memo.json"))
args.update(cfg["overrides"])
trainer.train(args)
print("PHASES=" + json.dumps(phases), flush=True)
"""


def incsweep_cli() -> str:
    found = shutil.which("incsweep", path=str(Path(sys.executable).parent)) or shutil.which("incsweep")
    if not found:
        raise SystemExit("incsweep is not installed in this environment (make install)")
    return found


def _wait(cmd: list[str], cwd: str, log: Path) -> tuple[float, float]:
    """Run ``cmd``, its output to ``log``; wall seconds and this child's own peak RSS in MB."""
    tic = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - tic
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
        raise SystemExit(f"{' '.join(cmd[:3])} ... failed with exit code {os.waitstatus_to_exitcode(status)}:\n{tail}")
    return wall, usage.ru_maxrss / 1024


def run_incsweep(tmp: Path) -> dict:
    out = tmp / "incsweep.json"
    wall, peak = _wait([incsweep_cli(), "run", *OURS, "--out", str(out)], str(tmp), tmp / "incsweep.log")
    tasks = json.loads(out.read_text())["tasks"]
    phases = {p: sum(t["phase_s"][p] for t in tasks) for p in ("train", "consolidate", "evaluate")}
    return {"per_task": [t["seen_acc"] for t in tasks], "wall_s": wall, "peak_mb": peak,
            "phases": {"training": phases["train"], "exemplar selection + aligning": phases["consolidate"],
                       "evaluation": phases["evaluate"]}}


def run_pycil(pycil: Path, tmp: Path) -> dict:
    overrides = {"init_epoch": EPOCHS, "epochs": EPOCHS, "memory_size": MEMORY, "init_cls": INIT,
                 "increment": INCREMENT, "batch_size": BATCH, "seed": [1993], "prefix": "timing"}
    cfg = {"n_classes": N_CLASSES, "train_per_class": TRAIN_PER_CLASS, "test_per_class": TEST_PER_CLASS,
           "image_size": IMAGE_SIZE, "data_seed": DATA_SEED, "overrides": overrides}
    log = tmp / "pycil.log"
    cmd = [sys.executable, "-c", PYCIL_DRIVER, str(pycil.resolve()), json.dumps(cfg), str(THREADS)]
    wall, peak = _wait(cmd, str(tmp), log)
    text = log.read_text()
    curve = [line for line in text.splitlines() if "CNN top1 curve:" in line][-1]
    # PyCIL logs numpy scalars: "[np.float64(10.0), ...]" with numpy 2, "[10.0, ...]" before.
    listed = curve.split("CNN top1 curve:")[1].strip().replace("np.float64(", "(")
    per_task = [float(a) / 100 for a in ast.literal_eval(listed)]
    phases = json.loads([line for line in text.splitlines() if line.startswith("PHASES=")][-1][len("PHASES="):])
    return {"per_task": per_task, "wall_s": wall, "peak_mb": peak,
            # PyCIL's MEMO aligns the classifier's weights inside _train, after the epoch.
            "phases": {"training + aligning + a test pass": phases["train"], "exemplar selection": phases["exemplars"],
                       "evaluation": phases["evaluate"]}}


def describe(label: str, r: dict) -> str:
    split = ", ".join(f"{k} {v:.0f} s" for k, v in r["phases"].items())
    avg = sum(r["per_task"]) / len(r["per_task"])
    return (f"| {label} | {r['wall_s']:.0f} | {split} | {avg * 100:.1f} | {r['per_task'][-1] * 100:.1f} | "
            f"{r['peak_mb']:.0f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pycil", required=True, type=Path, help="a PyCIL checkout (commit 87cc411)")
    ap.add_argument("--only", choices=("incsweep", "pycil"), help="run one side only (a check of the script)")
    args = ap.parse_args()
    if not (args.pycil / "models" / "memo.py").is_file():
        raise SystemExit(f"--pycil {args.pycil}: not a PyCIL checkout (no models/memo.py)")
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        results = {}
        if args.only != "pycil":
            results["incsweep"] = run_incsweep(tmp)
        if args.only != "incsweep":
            results["pycil"] = run_pycil(args.pycil, tmp)
    print(f"MEMO, synthetic CIFAR-100-shaped ({N_CLASSES} classes of 3x{IMAGE_SIZE}x{IMAGE_SIZE}, "
          f"{TRAIN_PER_CLASS}/{TEST_PER_CLASS} images a class), B0 Inc{INCREMENT}, ResNet-32, batch {BATCH}, "
          f"{EPOCHS} epoch a task, {MEMORY} exemplars, {THREADS} threads")
    print("| system | wall s | time by phase | avg inc. acc (%) | last acc (%) | peak RSS MB |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(describe("incsweep MEMO (incsweep run)" if name == "incsweep" else "PyCIL MEMO (87cc411)", r))
    if len(results) == 2:
        ratio = results["incsweep"]["wall_s"] / results["pycil"]["wall_s"]
        verdict = "met" if ratio <= TARGET else "NOT met"
        print(f"incsweep / PyCIL wall time: {ratio:.2f} (target <= {TARGET}: {verdict})")
    print("seen-class accuracy after each task (%):")
    for name, r in results.items():
        print(f"  {name}: {' '.join(f'{a * 100:.1f}' for a in r['per_task'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
