"""Microseconds to augment one batch (crop + flip on uint8 CIFAR-shaped images, then normalise).

The augmentation alone, without a network, so a change to ``Augmenter.train`` can be timed where a
whole training step's noise would hide it. Median of 200 batches after 20 warm-up batches.

Usage:  python benchmarks/augment_speed.py [--device cpu|cuda] [--batch 128] [--threads 2]
Recorded in docs/gpu.md (the flip folded into the crop's gather: CPU 0.80-0.84x, H100 0.92-0.96x).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from incsweep.incremental.augment import AUGMENTATIONS, Augmenter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=128, help="PyCIL's batch size")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (2 = the cores here)")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device; use --device cpu or a GPU machine")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    aug = Augmenter(AUGMENTATIONS["cifar"], (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), device)
    x = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8, device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        aug.train(x, gen)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t

    for _ in range(20):
        once()
    median = statistics.median(once() for _ in range(200))
    print(f"device={device} batch={args.batch}: {median * 1e6:.1f} us a batch (median of 200)")


if __name__ == "__main__":
    main()
