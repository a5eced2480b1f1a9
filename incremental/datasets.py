"""Raw dataset readers: each returns uint8 images (N, C, H, W) and int64 labels, train and test.

Readers know the on-disk formats (IDX for Fashion-MNIST, torchvision's pickled CIFAR batches,
the Tiny-ImageNet-200 folder layout) and nothing about tasks or class orders.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import DataNotFoundError

__all__ = ["RawData", "read_idx", "load_fashion_mnist", "make_synthetic", "FASHION_MNIST_SYSTEM_DIR"]

log = logging.getLogger(__name__)

# Debian's `dataset-fashion-mnist` package installs the original IDX files here.
FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class RawData:
    """A dataset as it is on disk, decoded: uint8 images (N, C, H, W), int64 labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) as LeCun's MNIST format defines it."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        data = fh.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:  # 0x08 = unsigned byte, the only type image/label files use
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (f"{stem}.gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def load_fashion_mnist(data_root: str | None, download: bool) -> RawData:
    """Fashion-MNIST from IDX files: ``data_root`` (flat or torchvision's FashionMNIST/raw) or Debian's copy."""
    candidates = []
    if data_root:
        root = Path(data_root).expanduser()
        candidates += [root, root / "FashionMNIST" / "raw", root / "fashion-mnist"]
    candidates.append(FASHION_MNIST_SYSTEM_DIR)
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    for directory in candidates:
        paths = [_find_idx(directory, s) for s in stems]
        if all(paths):
            xtr, ytr, xte, yte = (read_idx(p) for p in paths)  # type: ignore[arg-type]
            log.info("Fashion-MNIST from %s", directory)
            return RawData(
                torch.from_numpy(xtr.copy()).unsqueeze(1),
                torch.from_numpy(ytr.astype(np.int64)),
                torch.from_numpy(xte.copy()).unsqueeze(1),
                torch.from_numpy(yte.astype(np.int64)),
            )
    if download and data_root:
        from torchvision.datasets import FashionMNIST  # only when the user allows network access

        FashionMNIST(data_root, train=True, download=True)
        FashionMNIST(data_root, train=False, download=True)
        return load_fashion_mnist(data_root, download=False)
    looked = ", ".join(str(c) for c in candidates)
    raise DataNotFoundError(
        f"Fashion-MNIST IDX files not found (looked in {looked}); install them with "
        "`apt-get install dataset-fashion-mnist`, or pass --set benchmark.data_root=DIR "
        "--set benchmark.download=true to download"
    )


def make_synthetic(
    *, n_classes: int, train_per_class: int, test_per_class: int, image_size: int, channels: int, seed: int
) -> RawData:
    """A learnable synthetic dataset: each class is a smooth random prototype plus noise and shifts.

    Prototypes are low-frequency (8x8 upsampled) so that convolutions can learn them and
    neighbouring classes share structure, which makes forgetting real, unlike pure noise.
    """
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n_classes, channels, 8, 8, generator=gen)
    protos = torch.nn.functional.interpolate(low, size=(image_size, image_size), mode="bilinear", align_corners=False)

    def sample(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n_classes).repeat_interleave(per_class)
        x = protos[y] * 0.7 + 0.3 * torch.rand(len(y), channels, image_size, image_size, generator=gen)
        shifts = torch.randint(-2, 3, (len(y), 2), generator=gen)
        x = torch.stack([torch.roll(img, (int(s[0]), int(s[1])), dims=(1, 2)) for img, s in zip(x, shifts)])
        return (x.clamp(0, 1) * 255).round().to(torch.uint8), y

    x_train, y_train = sample(train_per_class)
    x_test, y_test = sample(test_per_class)
    return RawData(x_train, y_train, x_test, y_test)


def default_data_root() -> str | None:
    """``$INCSWEEP_DATA`` if set: the usual place for datasets on a cluster."""
    return os.environ.get("INCSWEEP_DATA") or None
