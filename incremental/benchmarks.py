"""Benchmarks: a dataset, a class order and a split into tasks, held as uint8 tensors.

Labels are remapped to positions in the class order, so task t owns the contiguous label
range [offset_t, offset_t + size_t) in both scenarios; ``Benchmark.class_order`` maps back.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from incsweep.core.configs import spec, validate
from incsweep.core.errors import ConfigError
from incsweep.incremental import datasets
from incsweep.incremental.image_folders import (
    DATA_PATHS,
    IMAGENET_MAX_TRAIN_PER_CLASS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageNet100Loader,
    imagenet100_spec,
    view_for,
)
from incsweep.incremental.image_sets import ImageView

__all__ = ["BenchmarkConfig", "BenchmarkSpec", "Split", "Task", "Benchmark", "BENCHMARKS", "load_benchmark",
           "benchmark_names", "get_benchmark_spec"]

# The seed PyCIL and MEMO use for their class order (docs/protocols.md): the default class_order.
CLASS_ORDER_SEED = 1993


@dataclass(frozen=True)
class BenchmarkSpec:
    """What is fixed about a benchmark: data, shape, default split, normalisation, augmentation."""

    n_classes: int
    image_shape: tuple[int, int, int]  # C, H, W
    init_classes: int
    increment: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augmentation: str  # key of augment.AUGMENTATIONS
    loader: Callable[["BenchmarkConfig"], datasets.RawData]
    # What the data is, where its name does not fix it (file benchmarks: a sha256 of the bytes). The
    # prefix cache keys on it, so two data sets behind one name or path never share a stored state.
    fingerprint: str = ""
    # Training images per class in the full training split, by label (None: the built-in data sets,
    # whose counts incremental/methods/_exemplar.py knows); exemplar plans need them.
    class_counts: tuple[int, ...] | None = None
    # Image-set benchmarks (image_sets.py: ImageNet-100, image folders of mixed sizes): how an original
    # image becomes the C x S x S input. None: the images are one uint8 tensor of image_shape.
    view: ImageView | None = None


def _load_synthetic(cfg: "BenchmarkConfig") -> datasets.RawData:
    return datasets.make_synthetic(
        n_classes=cfg.n_classes,
        # The validation hold-out comes on top, so that train_per_class stays the training split's size.
        train_per_class=(cfg.train_per_class or 60) + (cfg.val_per_class or 0),
        test_per_class=cfg.test_per_class or 30,
        image_size=cfg.image_size,
        channels=cfg.channels,
        seed=cfg.data_seed,
    )


def _load_fashion(cfg: "BenchmarkConfig") -> datasets.RawData:
    return datasets.load_fashion_mnist(cfg.data_root or datasets.default_data_root(), cfg.download)


def _load_cifar10(cfg: "BenchmarkConfig") -> datasets.RawData:
    return datasets.load_cifar(cfg.data_root or datasets.default_data_root(), 10, cfg.download)


def _load_cifar100(cfg: "BenchmarkConfig") -> datasets.RawData:
    return datasets.load_cifar(cfg.data_root or datasets.default_data_root(), 100, cfg.download)


def _load_tinyimagenet(cfg: "BenchmarkConfig") -> datasets.RawData:
    return datasets.load_tiny_imagenet(cfg.data_root or datasets.default_data_root(), cfg.download)


_CIFAR100_MEAN, _CIFAR100_STD = (0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)  # docs/protocols.md
# One explicit registry. Mean/std: CIFAR-10 and Tiny-ImageNet are the values the literature's
# code uses (PyCIL/mammoth); Fashion-MNIST's are its training-set statistics.
BENCHMARKS: dict[str, BenchmarkSpec] = {
    "seq-fashionmnist": BenchmarkSpec(10, (1, 28, 28), 2, 2, (0.2860,), (0.3530,), "fmnist", _load_fashion),
    "seq-cifar10": BenchmarkSpec(
        10, (3, 32, 32), 2, 2, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2615), "cifar", _load_cifar10
    ),
    "seq-cifar100": BenchmarkSpec(100, (3, 32, 32), 10, 10, _CIFAR100_MEAN, _CIFAR100_STD, "cifar", _load_cifar100),
    "seq-tinyimagenet": BenchmarkSpec(
        200, (3, 64, 64), 20, 20, (0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821), "tinyimagenet", _load_tinyimagenet
    ),
    "synthetic": BenchmarkSpec(10, (3, 16, 16), 2, 2, (0.5,), (0.25,), "none", _load_synthetic),
    # Streamed from disk (image_folders.py). Its class counts are read from the folders when they are
    # found (get_benchmark_spec); this entry is what is known without them.
    "seq-imagenet100": BenchmarkSpec(
        100, (3, 224, 224), 10, 10, IMAGENET_MEAN, IMAGENET_STD, "imagenet", ImageNet100Loader(),
        class_counts=(IMAGENET_MAX_TRAIN_PER_CLASS,) * 100, view=view_for(None)
    ),
}


def benchmark_names() -> tuple[str, ...]:
    """Every benchmark a config may name without a ``module:attr`` reference: built-in, file kinds
    (``npz``, ``image_folder``: the data is ``data_root``), installed entry points."""
    from incsweep.core.plugins import BENCHMARK_GROUP, entry_point_names
    from incsweep.incremental.file_benchmarks import FILE_KINDS

    named = (*BENCHMARKS, *FILE_KINDS)
    return named + tuple(n for n in entry_point_names(BENCHMARK_GROUP) if n not in named)


@functools.lru_cache(maxsize=64)
def _plugin_spec(name: str) -> BenchmarkSpec:
    """An installed or referenced benchmark: a BenchmarkSpec, or a callable returning one."""
    from incsweep.core.plugins import BENCHMARK_GROUP, is_reference, load_entry_point, load_reference

    found = load_reference(name, "benchmark") if is_reference(name) else load_entry_point(BENCHMARK_GROUP, name, "benchmark")
    if found is None:
        raise ConfigError(f"benchmark.name={name!r} is unknown; registered: {list(benchmark_names())}, or give "
                          "a module:attr reference to a BenchmarkSpec")
    if callable(found) and not isinstance(found, BenchmarkSpec):
        found = found()
    if not isinstance(found, BenchmarkSpec):
        raise ConfigError(f"benchmark {name!r} is {type(found).__name__}, not a BenchmarkSpec (or a function "
                          "returning one); see incsweep.incremental.api.npz_benchmark")
    return found


def get_benchmark_spec(cfg: "BenchmarkConfig") -> BenchmarkSpec:
    """What is fixed about ``cfg.name``'s data (its shape, classes and statistics for file benchmarks)."""
    from incsweep.incremental.file_benchmarks import FILE_KINDS, file_spec

    if cfg.name in BENCHMARKS:
        base = BENCHMARKS[cfg.name]
        if cfg.name == "synthetic":
            c, s = cfg.channels, cfg.image_size
            return dataclasses.replace(base, n_classes=cfg.n_classes, image_shape=(c, s, s),
                                       mean=base.mean * c, std=base.std * c)
        if cfg.name == "seq-imagenet100":
            return imagenet100_spec(cfg, base)
        return base
    if cfg.name in FILE_KINDS:
        if not cfg.data_root:
            what = "the .npz file" if cfg.name == "npz" else "the folder holding train/ and test/"
            raise ConfigError(f"benchmark {cfg.name!r} needs benchmark.data_root: {what}")
        return file_spec(cfg.name, cfg.data_root, crop_size=cfg.crop_size)
    return _plugin_spec(cfg.name)


@dataclass(frozen=True)
class BenchmarkConfig:
    """Which benchmark, how it is split and subsampled. ``None`` means the benchmark's default."""

    # A built-in name, npz / image_folder (data_root is the file or folder), an installed package's
    # entry point (incsweep.benchmarks) or a module:attr reference to a BenchmarkSpec.
    name: str = spec("seq-fashionmnist")
    data_root: str | None = None
    download: bool = False  # never touch the network unless the user allows it
    init_classes: int | None = spec(None, range=(1, None))  # classes in task 0 (MEMO's B)
    increment: int | None = spec(None, range=(1, None))  # classes per later task
    # "seed<N>": numpy's RandomState(N).permutation of the classes, as PyCIL orders them (seed1993 is
    # PyCIL's and MEMO's); "natural": label order. incsweep confirm draws fresh seed<N> orders.
    class_order: str = spec(f"seed{CLASS_ORDER_SEED}")
    val_fraction: float = spec(0.0, range=(0.0, 0.5))  # held out of each task's training data
    # A fixed-size validation split instead (not with val_fraction): this many images of every class
    # are held out of the whole training pool before train_per_class subsamples the rest, so a short
    # run's validation set can be larger than its training set (a less noisy search objective).
    val_per_class: int | None = spec(None, range=(1, None))
    train_per_class: int | None = spec(None, range=(1, None))  # subsample for short runs
    test_per_class: int | None = spec(None, range=(1, None))
    data_seed: int = spec(0, range=(0, None))  # subsampling, val split, synthetic data
    # synthetic only
    n_classes: int = spec(10, range=(2, 1000))
    image_size: int = spec(16, range=(8, 256))
    channels: int = spec(3, choices=(1, 3))
    augment: bool = True
    # Image-set benchmarks (seq-imagenet100; image_folder, which becomes one when its images differ in
    # size or this is set): the side S of the training crop and the evaluation centre crop. None: 224.
    crop_size: int | None = spec(None, range=(8, 1024))
    # Image sets: decoded originals kept in memory ("resident") or decoded from disk at every use
    # ("streamed"); "auto": resident up to image_folders.RESIDENT_MAX_BYTES. Both give the same results.
    data_path: str = spec("auto", choices=DATA_PATHS)

    def __post_init__(self) -> None:
        validate(self)
        if not (self.class_order == "natural" or re.fullmatch(r"seed[0-9]{1,9}", str(self.class_order))):
            raise ConfigError(f"BenchmarkConfig.class_order={self.class_order!r} is not allowed; choose natural or "
                              "seed<N> (e.g. seed1993, PyCIL's order)")
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"benchmark.name={self.name!r}; allowed: {list(benchmark_names())} or module:attr")
        from incsweep.incremental.file_benchmarks import FILE_KINDS

        if self.name in FILE_KINDS and self.data_root:
            # Absolute, so that a Ray worker (whose working directory is its trial's) reads the same file.
            object.__setattr__(self, "data_root", str(Path(self.data_root).expanduser().resolve()))
        if self.val_per_class is not None and self.val_fraction > 0:
            raise ConfigError(
                f"BenchmarkConfig: val_fraction={self.val_fraction} and val_per_class={self.val_per_class} both "
                "set; allowed: one of them (val_fraction holds out a share of the training subset, "
                "val_per_class a fixed count of the whole training pool)"
            )
        if self.crop_size is not None and self.name not in ("seq-imagenet100", "image_folder"):
            raise ConfigError(f"benchmark.crop_size={self.crop_size} applies to image-set benchmarks only; allowed "
                              f"with seq-imagenet100 or image_folder, not {self.name}")
        total = self.spec.n_classes
        init, inc = self.resolved_split
        if init > total or (total - init) % inc:
            raise ConfigError(
                f"BenchmarkConfig: init_classes={init}, increment={inc} do not split the {total} classes of "
                f"{self.name} into whole tasks; (n_classes - init_classes) must be a multiple of increment"
            )

    @property
    def spec(self) -> BenchmarkSpec:
        return get_benchmark_spec(self)

    @property
    def resolved_split(self) -> tuple[int, int]:
        s = self.spec
        return (self.init_classes or s.init_classes, self.increment or s.increment)

    @property
    def task_sizes(self) -> tuple[int, ...]:
        init, inc = self.resolved_split
        return (init,) + (inc,) * ((self.spec.n_classes - init) // inc)


@dataclass(frozen=True)
class Split:
    """Images (uint8, N x C x H x W) and labels (int64, positions in the class order)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Task:
    index: int
    classes: tuple[int, ...]  # contiguous remapped labels owned by this task
    train: Split
    val: Split
    test: Split

    @property
    def offset(self) -> int:
        return self.classes[0]


@dataclass(frozen=True)
class Benchmark:
    config: BenchmarkConfig
    class_order: tuple[int, ...]  # original label of each remapped label
    tasks: tuple[Task, ...]

    @property
    def spec(self) -> BenchmarkSpec:
        return self.config.spec

    @property
    def n_tasks(self) -> int:
        return len(self.tasks)

    @property
    def n_classes(self) -> int:
        return self.spec.n_classes

    @property
    def image_bytes(self) -> int:
        c, h, w = self.spec.image_shape
        return c * h * w


def class_order(cfg: BenchmarkConfig) -> np.ndarray:
    n = cfg.spec.n_classes
    if cfg.class_order == "natural":
        return np.arange(n)
    # Exactly PyCIL's call (global seeding of a fresh legacy RandomState): with seed 1993 CIFAR-100
    # starts 68, 56, 78, 8, 23.
    return np.random.RandomState(int(cfg.class_order.removeprefix("seed"))).permutation(n)


def _per_class_subset(y: torch.Tensor, per_class: int | None, gen: torch.Generator) -> torch.Tensor:
    if per_class is None:
        return torch.arange(len(y))
    keep = []
    for c in torch.unique(y).tolist():
        idx = torch.nonzero(y == c).flatten()
        keep.append(idx[torch.randperm(len(idx), generator=gen)[:per_class]].sort().values)
    return torch.cat(keep).sort().values


def _hold_out_per_class(y: torch.Tensor, cfg: BenchmarkConfig, gen: torch.Generator) -> torch.Tensor:
    """A mask of ``cfg.val_per_class`` random training-pool images of every class (validation)."""
    assert cfg.val_per_class is not None  # called only when the config holds a count out
    counts = torch.bincount(y)
    present = counts[counts > 0]
    if int(present.min()) <= cfg.val_per_class:
        c = int(torch.nonzero(counts == present.min()).flatten()[0])
        raise ConfigError(
            f"BenchmarkConfig: val_per_class={cfg.val_per_class} leaves no training images for class {c} "
            f"of {cfg.name} ({int(counts[c])} in its training pool); allowed: 1 to {int(counts[c]) - 1}"
        )
    mask = torch.zeros(len(y), dtype=torch.bool)
    mask[_per_class_subset(y, cfg.val_per_class, gen)] = True
    return mask


def load_benchmark(cfg: BenchmarkConfig) -> Benchmark:
    """Load, remap to the class order, subsample, carve validation, split into tasks (deterministic)."""
    raw = cfg.spec.loader(cfg)
    order = class_order(cfg)
    remap = torch.empty(len(order), dtype=torch.int64)
    remap[torch.from_numpy(order)] = torch.arange(len(order))
    gen = torch.Generator().manual_seed(cfg.data_seed)
    held_out = _hold_out_per_class(raw.y_train, cfg, gen) if cfg.val_per_class else None
    if held_out is None:
        tr = _per_class_subset(raw.y_train, cfg.train_per_class, gen)
    else:
        pool = torch.nonzero(~held_out).flatten()
        tr = pool[_per_class_subset(raw.y_train[pool], cfg.train_per_class, gen)]
        y_pool = remap[raw.y_train]
    te = _per_class_subset(raw.y_test, cfg.test_per_class, gen)
    x_tr, y_tr = raw.x_train[tr], remap[raw.y_train[tr]]
    x_te, y_te = raw.x_test[te], remap[raw.y_test[te]]

    tasks = []
    offset = 0
    for t, size in enumerate(cfg.task_sizes):
        lo, hi = offset, offset + size
        in_tr = torch.nonzero((y_tr >= lo) & (y_tr < hi)).flatten()
        in_te = torch.nonzero((y_te >= lo) & (y_te < hi)).flatten()
        if held_out is None:
            # Stratified hold-out: the same fraction of every class goes to validation.
            val_idx, fit_idx = [], []
            for c in range(lo, hi):
                idx = in_tr[y_tr[in_tr] == c]
                idx = idx[torch.randperm(len(idx), generator=gen)]
                n_val = int(round(len(idx) * cfg.val_fraction))
                val_idx.append(idx[:n_val])
                fit_idx.append(idx[n_val:])
            fit = torch.cat(fit_idx).sort().values
            val = torch.cat(val_idx).sort().values
            train_split, val_split = Split(x_tr[fit], y_tr[fit]), Split(x_tr[val], y_tr[val])
        else:
            in_val = torch.nonzero(held_out & (y_pool >= lo) & (y_pool < hi)).flatten()
            train_split, val_split = Split(x_tr[in_tr], y_tr[in_tr]), Split(raw.x_train[in_val], y_pool[in_val])
        tasks.append(
            Task(index=t, classes=tuple(range(lo, hi)), train=train_split, val=val_split,
                 test=Split(x_te[in_te], y_te[in_te]))
        )
        offset = hi
    return Benchmark(cfg, tuple(int(c) for c in order), tuple(tasks))
