"""Images/second of the model's training step alone, under what helps convolutions: memory format,
threads, batch size and ``torch.compile``.

The data path is out of this measurement (benchmarks/train_throughput.py covers it): a step here is
forward, cross-entropy, backward and SGD on a batch already normalised in memory, so the figures are
the model's arithmetic, which dominates a trial on CPU (benchmarks/results/profile_trial.txt:
83-87%). Each variant is timed after warm-up steps (for ``compile``: after the compilation, whose
time is printed separately, since a short trial pays it once per network it compiles).

Usage:  .venv/bin/python benchmarks/step_speed.py [--device cpu] [--steps 10] [--models resnet32,...]
        [--variants eager,channels_last,compile,...] [--batch-sizes 32,128] [--threads 1,2]
Recorded in benchmarks/results/step_speed.txt.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time

import torch
from torch import nn
from train_throughput import Case, make_model  # the same model builder (same directory)

from incsweep.incremental.benchmarks import BENCHMARKS

# The backbones trials use here, on their benchmarks' input shapes; nf=20 is GPM/BMKP's reduced ResNet-18.
MODELS = {
    "resnet32": Case("resnet32", {}, "seq-cifar10"),
    "resnet32-fmnist": Case("resnet32", {}, "seq-fashionmnist"),
    "reduced_resnet18": Case("reduced_resnet18", {"nf": 20}, "seq-cifar10"),
}
# channels_last: network and input; channels_last_input: the input only (what Augmenter hands a
# network that methods build in the default layout).
VARIANTS = ("eager", "channels_last", "channels_last_input", "compile", "compile+channels_last",
            "bf16", "bf16+channels_last", "compile+bf16+channels_last")
# bf16: the step under torch.autocast(bfloat16), as the engine trains on CUDA (Augmenter.autocast).
# The CPU runs of the results file use the first five (bf16 autocast is for CUDA's matrix units).
CPU_VARIANTS = VARIANTS[:5]


def shape_of(model: str) -> tuple[int, int, int]:
    return BENCHMARKS[MODELS[model].benchmark].image_shape


def measure(model: str, variant: str, batch: int, steps: int, device: torch.device, warmup: int = 2) -> dict:
    """Median images/s over ``steps`` timed steps, and the seconds the first steps took (compilation)."""
    shape = shape_of(model)
    case = dataclasses.replace(MODELS[model], channels_last=variant.endswith("channels_last"))
    torch.manual_seed(0)
    net = make_model(case, shape[0], shape, 10, device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)  # PyCIL's SGD settings
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, *shape, generator=gen).to(device)
    if "channels_last" in variant:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)

    def forward_loss(xb, yb):
        return loss_fn(net(xb), yb)

    fn = torch.compile(forward_loss) if "compile" in variant else forward_loss
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled="bf16" in variant)

    def step() -> None:
        with amp:
            loss = fn(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"img_s": batch / statistics.median(times), "warmup_s": first}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per variant, after 2 warm-up steps")
    ap.add_argument("--models", default="resnet32,reduced_resnet18", help=f"comma-separated, of {list(MODELS)}")
    ap.add_argument("--variants", default=",".join(CPU_VARIANTS), help=f"comma-separated, of {list(VARIANTS)}")
    ap.add_argument("--batch-sizes", default="128", help="comma-separated (PyCIL's batch size: 128)")
    ap.add_argument("--threads", default="2", help="comma-separated torch intra-op thread counts")
    args = ap.parse_args()
    device = torch.device(args.device)
    for name, allowed in (("models", MODELS), ("variants", VARIANTS)):
        bad = [v for v in getattr(args, name).split(",") if v not in allowed]
        if bad:
            ap.error(f"--{name}: unknown {bad}; allowed: {list(allowed)}")
    print(f"device={device} torch={torch.__version__} cpus={os.cpu_count()} steps={args.steps} "
          f"loadavg(1m) before={os.getloadavg()[0]:.2f}")
    print(f"{'model':18s} {'variant':22s} {'threads':>7s} {'batch':>5s} {'img/s':>8s} {'vs eager':>8s} {'warm-up s':>9s}")
    for model in args.models.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                base = None
                for variant in args.variants.split(","):
                    r = measure(model, variant, batch, args.steps, device)
                    base = base or (r["img_s"] if variant == "eager" else None)
                    rel = f"{r['img_s'] / base:8.2f}" if base else f"{'':8s}"
                    print(f"{model:18s} {variant:22s} {threads:7d} {batch:5d} {r['img_s']:8.1f} {rel} "
                          f"{r['warmup_s']:9.1f}", flush=True)
    print(f"loadavg(1m) after={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
