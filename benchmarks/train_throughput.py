"""Images/second of a training step: our data path against the usual torchvision one, same model and batch.

Ours: uint8 images stay in one tensor (on the run's device); a batch is an index, then
``Augmenter.train`` crops/flips/normalises the whole batch with tensor ops (incremental/augment.py).
Usual: a torchvision-style Dataset that makes a PIL image per sample and applies
RandomCrop/RandomHorizontalFlip/ToTensor/Normalize, batched by a DataLoader (PyCIL's and mammoth's
pipeline). Both feed the same model step (forward, cross-entropy, backward, SGD with momentum).

Printed per case: images/s of the whole step for both paths and their ratio, the share of a step
spent on getting the batch (data), and images/s of the data path alone on one core. Model input shapes and
augmentations are the benchmarks' own (incremental.benchmarks.BENCHMARKS).

Usage:  .venv/bin/python benchmarks/train_throughput.py [--device cpu] [--threads 2] [--steps 8]
        [--batch-size 128] [--workers 0] [--cases resnet32-cifar,...]
Recorded in benchmarks/results/train_throughput.txt.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from incsweep.incremental.augment import AUGMENTATIONS, AugmentConfig, Augmenter
from incsweep.incremental.backbones import build_backbone, count_params
from incsweep.incremental.benchmarks import BENCHMARKS


@dataclass(frozen=True)
class Case:
    backbone: str
    kwargs: dict
    benchmark: str  # input shape, normalisation and augmentation come from this benchmark
    channels_last: bool = False


CASES = {
    "resnet32-cifar": Case("resnet32", {}, "seq-cifar10"),
    "resnet32-fmnist": Case("resnet32", {}, "seq-fashionmnist"),
    "reduced_resnet18-cifar": Case("reduced_resnet18", {"nf": 20}, "seq-cifar10"),  # nf=20: GPM/BMKP's width
    "resnet32-cifar-channels_last": Case("resnet32", {}, "seq-cifar10", channels_last=True),
}


class PILDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per sample: HWC uint8 -> PIL image -> transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        img = self.images[i]
        img = Image.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
        return self.transform(img), int(self.labels[i])


def pil_transform(aug: AugmentConfig, size: int, mean, std):
    """The torchvision transform equivalent to our AugmentConfig."""
    from torchvision import transforms as T

    ops = []
    if aug.crop_pad:
        ops.append(T.RandomCrop(size, padding=aug.crop_pad))
    if aug.flip:
        ops.append(T.RandomHorizontalFlip())
    if aug.brightness:
        ops.append(T.ColorJitter(brightness=aug.brightness))
    return T.Compose([*ops, T.ToTensor(), T.Normalize(mean, std)])


def make_model(case: Case, in_channels: int, shape, n_classes: int, device: torch.device) -> nn.Module:
    backbone = build_backbone(case.backbone, in_channels, **case.kwargs)
    with torch.no_grad():
        dim = backbone(torch.zeros(2, *shape)).shape[1]
    model = nn.Sequential(backbone, nn.Linear(dim, n_classes)).to(device)
    return model.to(memory_format=torch.channels_last) if case.channels_last else model


def measure(case: Case, device: torch.device, steps: int, batch: int, workers: int, warmup: int = 1) -> dict:
    spec = BENCHMARKS[case.benchmark]
    c, h, w = spec.image_shape
    aug_cfg = AUGMENTATIONS[spec.augmentation]
    n = batch * (steps + warmup)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, c, h, w), dtype=torch.uint8, generator=gen)
    y = torch.randint(0, spec.n_classes, (n,), generator=gen)
    torch.manual_seed(0)
    model = make_model(case, c, (c, h, w), spec.n_classes, device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)  # PyCIL's SGD settings
    loss_fn = nn.CrossEntropyLoss()

    def step(xb: torch.Tensor, yb: torch.Tensor) -> None:
        if case.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # ours: tensor-resident data, batched augmentation
    augmenter = Augmenter(aug_cfg, spec.mean, spec.std, device)
    xd, yd = x.to(device), y.to(device)
    perm = torch.randperm(n, generator=gen).to(device)

    def ours_batch(k: int):
        idx = perm[k * batch:(k + 1) * batch]
        return augmenter.train(xd[idx], gen), yd[idx]

    # usual: PIL Dataset + DataLoader (HWC numpy, as torchvision keeps CIFAR in memory)
    ds = PILDataset(x.permute(0, 2, 3, 1).numpy(), y.numpy(), pil_transform(aug_cfg, h, spec.mean, spec.std))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    it = iter(loader)

    def usual_batch(k: int):
        xb, yb = next(it)
        return xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)

    # The paths alternate step by step so that both see the same load from other processes on the
    # shared cores; per-step medians keep one disturbed step from deciding a figure.
    times: dict[str, list[tuple[float, float]]] = {"ours": [], "usual": []}
    for k in range(steps + warmup):
        for name, get in (("ours", ours_batch), ("usual", usual_batch)):
            sync()
            t0 = time.perf_counter()
            xb, yb = get(k)
            sync()
            t1 = time.perf_counter()
            step(xb, yb)
            sync()
            if k >= warmup:
                times[name].append((t1 - t0, time.perf_counter() - t0))
    res = {}
    for name, ts in times.items():
        data, total = np.array(ts).T
        res[name] = {"step": batch / np.median(total), "data_share": data.sum() / total.sum()}
    # The data paths alone, per core (PIL is single-threaded), without the model competing; the
    # fastest of the repetitions, as the least disturbed by other processes on the shared cores.
    ours_data, usual_data = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for k in range(steps):
        sync()
        t0 = time.perf_counter()
        ours_batch(k)
        sync()
        t1 = time.perf_counter()
        for i in range(k * batch, (k + 1) * batch):
            ds[i]
        usual_data.append(time.perf_counter() - t1)
        ours_data.append(t1 - t0)
    torch.set_num_threads(threads)
    res["ours"]["data"] = batch / min(ours_data)
    res["usual"]["data"] = batch / min(usual_data)
    ours, usual = res["ours"], res["usual"]
    return {"ours": ours, "usual": usual, "params": count_params(model[0])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (2 = the cores here)")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per path, after 1 warm-up step")
    ap.add_argument("--batch-size", type=int, default=128, help="PyCIL's batch size")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers for the usual path")
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {list(CASES)}")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device={device} torch={torch.__version__} threads={args.threads} cpus={os.cpu_count()} "
          f"batch={args.batch_size} steps={args.steps} workers={args.workers} "
          f"loadavg(1m) before={os.getloadavg()[0]:.2f}")
    print(f"{'case':30s} {'params':>9s} {'ours img/s':>10s} {'usual img/s':>11s} {'ratio':>6s} "
          f"{'data share ours':>15s} {'usual':>6s} {'data/core ours':>14s} {'usual':>7s}")
    for name in args.cases.split(","):
        r = measure(CASES[name], device, args.steps, args.batch_size, args.workers)
        o, u = r["ours"], r["usual"]
        print(f"{name:30s} {r['params']:9d} {o['step']:10.1f} {u['step']:11.1f} {o['step'] / u['step']:6.2f} "
              f"{o['data_share']:15.1%} {u['data_share']:6.1%} {o['data']:14.0f} {u['data']:7.0f}", flush=True)
    print(f"loadavg(1m) after={os.getloadavg()[0]:.2f} (the 2 cores are shared: other processes lower both paths)")


if __name__ == "__main__":
    main()
