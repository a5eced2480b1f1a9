"""Raw dataset readers: each returns uint8 images (N, C, H, W) and int64 labels, train and test.

Readers know the on-disk formats (IDX for Fashion-MNIST, torchvision's pickled CIFAR batches,
the Tiny-ImageNet-200 folder layout) and nothing about tasks or class orders.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import pickle
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from incsweep.core.errors import DataFormatError, DataNotFoundError

__all__ = ["RawData", "read_idx", "load_fashion_mnist", "load_cifar", "load_tiny_imagenet", "make_synthetic",
           "default_data_root", "default_cache_dir", "FASHION_MNIST_SYSTEM_DIR", "TINY_IMAGENET_URL"]

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
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile, a truncated archive
        raise DataFormatError(f"{path}: not a readable IDX file ({type(exc).__name__})") from None
    if len(data) < 4:
        raise DataFormatError(f"{path}: not an unsigned-byte IDX file ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or len(data) < 4 + 4 * ndim:  # 0x08: unsigned byte, all MNIST files use
        raise DataFormatError(f"{path}: not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    if len(data) - 4 - 4 * ndim != int(np.prod(shape)):
        raise DataFormatError(f"{path}: the IDX header says shape {list(shape)}, the file holds "
                              f"{len(data) - 4 - 4 * ndim} bytes of data")
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


def default_cache_dir() -> Path:
    """Where decoded caches go when the data folder is read-only: ``$INCSWEEP_CACHE``, else XDG's cache."""
    if os.environ.get("INCSWEEP_CACHE"):
        return Path(os.environ["INCSWEEP_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "incsweep"


def _how_to_get(flag_hint: str) -> str:
    return (f"put it under --set benchmark.data_root=DIR or $INCSWEEP_DATA, or add --set benchmark.download=true "
            f"to download it ({flag_hint})")


def _no_root(dataset: str, flag_hint: str) -> DataNotFoundError:
    return DataNotFoundError(f"{dataset}: no data root given (benchmark.data_root and $INCSWEEP_DATA are unset); "
                             + _how_to_get(flag_hint))


# ---- CIFAR-10 / CIFAR-100: the pickled batches torchvision downloads (Krizhevsky's python version) ----

# folder, training files, test files, meta file, label key, meta key: torchvision.datasets.CIFAR10/100.
_CIFAR_LAYOUT: dict[int, tuple[str, tuple[str, ...], str, str, str, str]] = {
    10: ("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
         "labels", "label_names"),
    100: ("cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names"),
}


# What a CIFAR batch file may name when unpickled: numpy arrays and their dtypes, nothing else (its dicts,
# lists, strings and numbers need no class lookup). Anything else -- os.system, builtins.eval, ... -- is
# refused, so a crafted file in a shared data root cannot run code (pickle runs what a file names).
_CIFAR_PICKLE_NAMES = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                       ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                       ("numpy._core.multiarray", "scalar")}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_PICKLE_NAMES:
            raise pickle.UnpicklingError(f"it names {module}.{name}; a CIFAR batch holds only numpy arrays, "
                                         "lists, strings and numbers")
        if module.startswith("numpy.core."):  # NumPy 2 keeps these under numpy._core
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def _unpickle(path: Path) -> dict[str, Any]:
    # The files are Python 2 pickles: latin1 turns their byte strings (keys and numpy's raw buffers) into
    # str as torchvision does; files re-pickled with bytes keys are accepted too.
    try:
        with open(path, "rb") as fh:
            entry = _ArraysOnlyUnpickler(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise DataFormatError(f"{path} is not a CIFAR batch file (torchvision's pickled python version): "
                              f"{str(err) or type(err).__name__}") from None
    if not isinstance(entry, dict):
        raise DataFormatError(f"{path} is not a CIFAR batch file: it holds a {type(entry).__name__}, not a dict")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in entry.items()}


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    entry = _unpickle(path)
    if "data" not in entry or label_key not in entry:
        raise DataFormatError(f"{path}: a CIFAR batch needs keys 'data' and {label_key!r}; it has {sorted(entry)[:8]}")
    try:
        data = np.asarray(entry["data"], dtype=np.uint8)
        labels = np.asarray(entry[label_key], dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise DataFormatError(f"{path}: 'data' and {label_key!r} must be uint8 pixels and integer labels ({err})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.ndim != 1 or len(data) != len(labels):
        raise DataFormatError(f"{path}: expected 'data' of shape (N, 3072) and N labels, got {data.shape} and "
                              f"{labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels  # rows are channel-planar: 1024 R, then G, then B


def load_cifar(data_root: str | None, n_classes: int, download: bool) -> RawData:
    """CIFAR-10 or CIFAR-100 (``n_classes`` 10 or 100) from torchvision's folder under ``data_root``."""
    if n_classes not in _CIFAR_LAYOUT:
        raise ValueError(f"load_cifar: n_classes={n_classes}; allowed 10 or 100")
    name = f"CIFAR-{n_classes}"
    folder, train_files, test_file, meta_file, label_key, meta_key = _CIFAR_LAYOUT[n_classes]
    if not data_root:
        raise _no_root(name, f"torchvision fetches cifar-{n_classes}-python.tar.gz")
    root = Path(data_root).expanduser()
    directory = root if root.name == folder else root / folder
    wanted = [*train_files, test_file, meta_file]
    missing = [f for f in wanted if not (directory / f).is_file()]
    if missing and download:
        from torchvision.datasets import CIFAR10, CIFAR100  # only when the user allows network access

        (CIFAR10 if n_classes == 10 else CIFAR100)(str(directory.parent), train=True, download=True)
        return load_cifar(data_root, n_classes, download=False)
    if missing:
        raise DataNotFoundError(f"{name} not found: {directory} lacks {', '.join(missing)}; "
                                + _how_to_get(f"torchvision fetches cifar-{n_classes}-python.tar.gz"))
    meta = _unpickle(directory / meta_file)
    classes = meta.get(meta_key)
    if not isinstance(classes, list) or len(classes) != n_classes:
        raise DataFormatError(f"{directory / meta_file}: expected {meta_key!r} with {n_classes} class names")
    parts = [_cifar_batch(directory / f, label_key) for f in train_files]
    x_test, y_test = _cifar_batch(directory / test_file, label_key)
    log.info("%s from %s", name, directory)
    return RawData(
        torch.from_numpy(np.concatenate([x for x, _ in parts])),
        torch.from_numpy(np.concatenate([y for _, y in parts])),
        torch.from_numpy(x_test),
        torch.from_numpy(y_test),
    )


# ---- Tiny-ImageNet-200: the cs231n folder layout, JPEGs decoded once and cached as uint8 ----

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"  # the official archive (cs231n)
_TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"  # of that archive, as torchvision-style loaders check it
_TINY_FOLDER = "tiny-imagenet-200"
# Bump when the cached arrays change meaning (class index, layout), so stale caches are rebuilt.
_TINY_CACHE_VERSION = 1


def _tiny_listing(directory: Path) -> tuple[list[str], list[tuple[Path, str]], list[tuple[Path, str]]]:
    """Classes (sorted wnids, as torchvision's ImageFolder indexes them), train and val (path, wnid) lists."""
    wnids = sorted(line.strip() for line in (directory / "wnids.txt").read_text().splitlines() if line.strip())
    train = []
    for wnid in wnids:
        images = directory / "train" / wnid / "images"
        if not images.is_dir():
            raise DataNotFoundError(f"Tiny-ImageNet: {images} is missing (class {wnid} is listed in wnids.txt)")
        train += [(images / f, wnid) for f in sorted(os.listdir(images)) if f.lower().endswith((".jpeg", ".jpg"))]
    val = []
    known = set(wnids)
    # val_annotations.txt: file, wnid, then the bounding box; tab-separated (cs231n's format).
    for line in (directory / "val" / "val_annotations.txt").read_text().splitlines():
        fields = line.split("\t")
        if len(fields) < 2:
            continue
        if fields[1] not in known:
            raise ValueError(f"Tiny-ImageNet: val image {fields[0]} has class {fields[1]}, not in wnids.txt")
        val.append((directory / "val" / "images" / fields[0], fields[1]))
    return wnids, train, sorted(val)


def _decode(files: list[tuple[Path, str]], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image  # a torchvision dependency; only needed when no cache exists yet

    x = np.empty((len(files), 64, 64, 3), dtype=np.uint8)
    for i, (path, _) in enumerate(files):
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"))  # a few hundred images are greyscale
        if arr.shape != (64, 64, 3):
            raise ValueError(f"{path}: {arr.shape[1]}x{arr.shape[0]} image; Tiny-ImageNet images are 64x64")
        x[i] = arr
        if i and i % 20000 == 0:  # a progress line every ~30 s at PIL's speed on one core
            log.info("Tiny-ImageNet: decoded %d/%d images", i, len(files))
    y = np.array([index[w] for _, w in files], dtype=np.int64)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2)), y


def _fingerprint(wnids: list[str], train: list, val: list) -> np.ndarray:
    # What the cache must agree with: format version, classes, and which files make up each split.
    names = [f"v{_TINY_CACHE_VERSION}", *wnids, "|", *(f"{p.name}:{w}" for p, w in train), "|",
             *(f"{p.name}:{w}" for p, w in val)]
    return np.frombuffer(hashlib.sha256("\n".join(names).encode()).digest(), dtype=np.uint8)


def _tiny_cache_paths(directory: Path, cache_dir: Path | None) -> list[Path]:
    fallback_dir = cache_dir or default_cache_dir()
    # The fallback name carries the absolute path, so that two copies never share one cache file.
    tag = str(directory.resolve()).strip("/").replace("/", "_")
    return [directory / f"incsweep-uint8-v{_TINY_CACHE_VERSION}.npz", fallback_dir / f"{tag}.npz"]


def _read_cache(path: Path, fingerprint: np.ndarray) -> RawData | None:
    try:
        with np.load(path) as z:
            if not np.array_equal(z["fingerprint"], fingerprint):
                log.info("Tiny-ImageNet: cache %s is stale, rebuilding", path)
                return None
            return RawData(*(torch.from_numpy(z[k]) for k in ("x_train", "y_train", "x_test", "y_test")))
    except (OSError, KeyError, ValueError) as err:  # missing, truncated or foreign file: rebuild
        if path.exists():
            log.warning("Tiny-ImageNet: ignoring unreadable cache %s (%s)", path, err)
        return None


def _write_cache(paths: list[Path], data: RawData, fingerprint: np.ndarray) -> Path | None:
    arrays = {"x_train": data.x_train.numpy(), "y_train": data.y_train.numpy(), "x_test": data.x_test.numpy(),
              "y_test": data.y_test.numpy(), "fingerprint": fingerprint}
    for path in paths:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write aside and rename, so that an interrupted run never leaves a truncated cache behind.
            fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
            try:
                with os.fdopen(fd, "wb") as fh:
                    np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy stubs: **kwds vs allow_pickle; uncompressed: loading is a plain read (1.4 GB for the full set)
                os.replace(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            return path
        except OSError as err:  # read-only data folder: try the next place
            log.info("Tiny-ImageNet: cannot write cache %s (%s)", path, err)
    log.warning("Tiny-ImageNet: no writable cache location; images will be decoded again next time")
    return None


def load_tiny_imagenet(data_root: str | None, download: bool, *, cache_dir: str | Path | None = None) -> RawData:
    """Tiny-ImageNet-200 (64x64 RGB; train 500/class, the labelled val set as test) from ``data_root``.

    Classes are indexed by sorted wnid. The decoded uint8 arrays are cached next to the data, or
    under ``cache_dir`` (default :func:`default_cache_dir`) when the data folder is read-only.
    """
    hint = f"the archive is {TINY_IMAGENET_URL}"
    if not data_root:
        raise _no_root("Tiny-ImageNet", hint)
    root = Path(data_root).expanduser()
    directory = root if (root / "wnids.txt").is_file() else root / _TINY_FOLDER
    needed = [directory / "wnids.txt", directory / "train", directory / "val" / "val_annotations.txt"]
    if not all(p.exists() for p in needed) and download:
        from torchvision.datasets.utils import download_and_extract_archive  # only when the user allows it

        download_and_extract_archive(TINY_IMAGENET_URL, download_root=str(root), md5=_TINY_IMAGENET_MD5,
                                     remove_finished=True)
        return load_tiny_imagenet(data_root, download=False, cache_dir=cache_dir)
    missing = [str(p.relative_to(directory)) for p in needed if not p.exists()]
    if missing:
        raise DataNotFoundError(f"Tiny-ImageNet not found: {directory} lacks {', '.join(missing)}; " + _how_to_get(hint))
    wnids, train, val = _tiny_listing(directory)
    fingerprint = _fingerprint(wnids, train, val)
    paths = _tiny_cache_paths(directory, Path(cache_dir) if cache_dir else None)
    for path in paths:
        cached = _read_cache(path, fingerprint)
        if cached is not None:
            log.info("Tiny-ImageNet from cache %s", path)
            return cached
    index = {w: i for i, w in enumerate(wnids)}
    log.info("Tiny-ImageNet: decoding %d images from %s (once; cached afterwards)", len(train) + len(val), directory)
    x_train, y_train = _decode(train, index)
    x_test, y_test = _decode(val, index)
    data = RawData(*(torch.from_numpy(a) for a in (x_train, y_train, x_test, y_test)))
    _write_cache(paths, data, fingerprint)
    return data
