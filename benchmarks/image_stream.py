"""How fast image sets feed training: the streamed path (JPEG decode + RandomResizedCrop(224) + flip, or
the evaluation view) against a ResNet-18 training step at 224 px, and the resident path, on
ImageNet-sized JPEGs this script writes (500x375 and 375x500, quality 90: ImageNet's typical shapes).

Parts:
1. the loader alone: images/s of ``ImageSet.train_batches`` / ``eval_batches`` at 0, 1, 2, ... threads;
2. a ResNet-18 SGD step at 224 px (batch 32) on the same device, images/s;
3. the product path: ``incsweep run --config configs/memo/imagenet100_b0_inc10.yaml`` on a 100-class
   folder of such JPEGs (its 100 classes split into ``--run-tasks`` tasks, 1 epoch each: CPU-sized),
   streamed and resident, wall time and per-phase time, and whether the two paths' accuracies agree.

    python benchmarks/image_stream.py [--images 512] [--threads 0,1,2] [--run-tasks 2] [--device cpu]

Results: benchmarks/results/image_stream.txt (CPU here; a GPU's when one is lent).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from image_folder_maker import write_folder  # noqa: E402 - the tests' writer of ImageNet-layout folders

from incsweep.incremental.image_folders import IMAGENET100_WNIDS  # noqa: E402
from incsweep.incremental.image_sets import DecodedImages, FileImages, ImageSet, ImageView  # noqa: E402


def imagenet_like(root: Path, n_classes: int, per_class: int, test_per_class: int) -> Path:
    """ImageNet-sized JPEGs in ImageNet's layout (both orientations of 500x375)."""
    return write_folder(root, IMAGENET100_WNIDS[:n_classes], train_per_class=per_class, test_per_class=test_per_class,
                        sizes=(375, 500), grey_every=97)


def loader_rate(images: ImageSet, threads: int, train: bool, batch: int = 32) -> float:
    order = [torch.arange(i, min(i + batch, len(images))) for i in range(0, len(images), batch)]
    tic = time.perf_counter()
    if train:
        for _ in images.train_batches(order, list(range(len(order))), crop=True, flip=True, workers=threads):
            pass
    else:
        for _ in images.eval_batches(batch, workers=threads):
            pass
    return len(images) / (time.perf_counter() - tic)


def step_rate(device: str, batch: int = 32, steps: int = 5) -> float:
    from incsweep.incremental.backbones import build_backbone

    net = build_backbone("resnet18", 3).to(device)
    head = torch.nn.Linear(net.out_dim, 100).to(device)
    opt = torch.optim.SGD([*net.parameters(), *head.parameters()], lr=0.1, momentum=0.9)
    x = torch.randn(batch, 3, 224, 224, device=device)
    y = torch.randint(0, 100, (batch,), device=device)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(head(net(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    tic = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - tic)


def product_run(root: Path, path: str, tasks: int, device: str, out: Path) -> dict:
    """`incsweep run` of the paper config on ``root`` in ``tasks`` tasks of 1 epoch, wall and phases."""
    cmd = [str(Path(sys.executable).with_name("incsweep")), "run", "--config", "configs/memo/imagenet100_b0_inc10.yaml",
           "--data-root", str(root), "--set", f"device={device}", "--set", f"benchmark.data_path={path}",
           "--set", "init_epochs=1", "--set", "epochs=1", "--set", "batch_size=32",
           "--set", f"benchmark.init_classes={100 // tasks}", "--set", f"benchmark.increment={100 // tasks}",
           "--out", str(out)]
    tic = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=7200)
    wall = time.perf_counter() - tic
    if done.returncode != 0:
        raise SystemExit(f"incsweep run ({path}) failed: {done.stderr[-2000:]}")
    result = json.loads(out.read_text())
    phases = {k: round(sum(t["phase_s"].get(k, 0.0) for t in result["tasks"]), 1) for k in result["tasks"][0]["phase_s"]}
    return {"wall_s": round(wall, 1), "phases_s": phases, "acc_rows": [t["acc_row"] for t in result["tasks"]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=512, help="JPEGs for the loader measurements")
    ap.add_argument("--threads", default="0,1,2", help="decoding threads to measure")
    ap.add_argument("--run-tasks", type=int, default=2, choices=(0, 1, 2, 4, 5, 10),
                    help="tasks the product-path run splits the 100 classes into (0: skip it)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    report: dict = {"device": args.device, "cpus": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = imagenet_like(Path(tmp) / "jpegs", 16, args.images // 16, 1)
        files = sorted(str(p) for p in (folder / "train").rglob("*.JPEG"))
        print(f"{len(files)} JPEGs of 500x375/375x500, {sum(os.path.getsize(f) for f in files) / len(files) / 1024:.0f} KB "
              f"each; {report['cpus']} CPUs, torch threads {report['torch_threads']}, device {args.device}")
        view = ImageView()
        streamed = ImageSet.of(FileImages(files), view)
        from incsweep.incremental.image_sets import _decode_file

        resident = ImageSet.of(DecodedImages([np.asarray(_decode_file(f, "RGB")) for f in files], files), view)
        rates: dict = {}
        print("\nloader alone, images/s (batches of 32):")
        print(f"{'threads':>8} {'streamed train':>15} {'streamed eval':>14} {'resident train':>15}")
        for n in threads:
            rates[n] = {"streamed_train": loader_rate(streamed, n, True), "streamed_eval": loader_rate(streamed, n, False),
                        "resident_train": loader_rate(resident, n, True)}
            r = rates[n]
            print(f"{n:>8} {r['streamed_train']:>15.0f} {r['streamed_eval']:>14.0f} {r['resident_train']:>15.0f}")
        report["loader_images_per_s"] = rates
        step = step_rate(args.device)
        report["resnet18_step_images_per_s"] = step
        best = max(r["streamed_train"] for r in rates.values())
        print(f"\nResNet-18 SGD step at 224 px, batch 32, on {args.device}: {step:.1f} images/s; the streamed loader's "
              f"best ({best:.0f} images/s) is {best / step:.1f}x that")
        if args.run_tasks:
            root = imagenet_like(Path(tmp) / "in100", 100, 4, 1)
            runs = {}
            for path in ("streamed", "resident"):
                runs[path] = product_run(root, path, args.run_tasks, args.device, Path(tmp) / f"{path}.json")
                print(f"\nincsweep run imagenet100_b0_inc10 ({path}), {args.run_tasks} tasks, 1 epoch each, "
                      f"100 classes x 4 JPEGs: {runs[path]['wall_s']} s; by phase {runs[path]['phases_s']}")
            same = runs["streamed"]["acc_rows"] == runs["resident"]["acc_rows"]
            print(f"streamed and resident accuracies identical: {same}")
            report["product_runs"] = runs
            report["paths_agree"] = same
    out = ROOT / "benchmarks" / "results" / f"image_stream_{args.device.split(':')[0]}.json"
    out.write_text(json.dumps(report, indent=1, default=float))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
