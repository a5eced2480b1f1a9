"""Benchmarks from files a user already has: an ``.npz`` of uint8 arrays, or an image-folder tree.

- ``.npz`` with ``x_train, y_train, x_test, y_test``: images uint8 as (N, H, W) greyscale,
  (N, C, H, W) or (N, H, W, C) with C in {1, 3}; labels integers 0..K-1.
- an image folder as torchvision's ImageFolder reads it: ``train/<class>/*.png|jpg|jpeg|bmp`` and
  ``test/<class>/...``; classes are indexed by sorted folder name; all-greyscale sets stay one
  channel, anything else is read as RGB. Images of one size are decoded into one uint8 tensor. A
  folder whose images differ in size (or with ``benchmark.crop_size`` set) is an image set
  (image_sets.py, image_folders.py): cropped to S x S when used, resident or streamed from disk.

Class count, image shape and normalisation statistics (per-channel mean/std of the training images)
come from the data, so memory accounting counts the real bytes per exemplar. The default split is
tasks of 2 classes (the first takes 3 when the class count is odd); ``init_classes``/``increment``
choose another. Every check fails with a one-line ``DataFormatError`` naming the file.

A spec carries a content fingerprint (sha256 of the bytes), which the prefix cache keys on: two
data sets at one path never share a stored prefix.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import torch

from incsweep.core.errors import DataFormatError, DataNotFoundError
from incsweep.incremental.datasets import RawData
from incsweep.incremental.image_sets import _opened

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from incsweep.incremental.benchmarks import BenchmarkConfig, BenchmarkSpec
    from incsweep.incremental.image_folders import FolderListing

__all__ = ["npz_benchmark", "image_folder_benchmark", "array_benchmark", "FILE_KINDS", "file_spec",
           "load_npz", "load_image_folder"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_HASH_BLOCK = 1 << 20


# ---- reading and checking ---------------------------------------------------------------------------

def _images_nchw(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.dtype != np.uint8:
        raise DataFormatError(f"{path}: {key} is {x.dtype}; allowed: uint8 images (0..255)")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3):
            return x
        if x.shape[3] in (1, 3):
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    raise DataFormatError(f"{path}: {key} has shape {list(x.shape)}; allowed: (N, H, W), (N, C, H, W) or "
                          "(N, H, W, C) with C = 1 or 3")


def _labels(y: np.ndarray, n: int, path: Path, key: str) -> np.ndarray:
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise DataFormatError(f"{path}: {key} must be a 1-D integer array, got {y.dtype} of shape {list(y.shape)}")
    if len(y) != n:
        raise DataFormatError(f"{path}: {key} holds {len(y)} labels for {n} images")
    return y.astype(np.int64)


def check_raw(raw: RawData, path: Path) -> RawData:
    """Labels 0..K-1 (K from the training labels), every class with training and test images, one shape."""
    if len(raw.y_train) == 0 or len(raw.y_test) == 0:
        raise DataFormatError(f"{path}: the {'training' if len(raw.y_train) == 0 else 'test'} split is empty")
    if tuple(raw.x_train.shape[1:]) != tuple(raw.x_test.shape[1:]):
        raise DataFormatError(f"{path}: training images are {list(raw.x_train.shape[1:])}, test images "
                              f"{list(raw.x_test.shape[1:])}; both splits must share one C x H x W")
    n_classes = int(raw.y_train.max()) + 1
    if n_classes > len(raw.y_train):
        # every class 0..K-1 needs a training image: a larger label is out of range whatever K is
        # meant to be (and counting up to it would allocate K counters: 2^40 asked for 8.8 TB)
        raise DataFormatError(f"{path}: y_train holds label {n_classes - 1} but only {len(raw.y_train)} training "
                              f"images; allowed: labels 0..K-1 with every class present in both splits")
    for split, y in (("y_train", raw.y_train), ("y_test", raw.y_test)):
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= n_classes:
            bad = lo if lo < 0 else hi
            raise DataFormatError(f"{path}: {split} holds label {bad}, out of range; allowed: 0..{n_classes - 1} "
                                  "(the training labels' classes)")
    for split, y in (("training", raw.y_train), ("test", raw.y_test)):
        counts = torch.bincount(y, minlength=n_classes)
        empty = torch.nonzero(counts == 0).flatten().tolist()
        if empty:
            raise DataFormatError(f"{path}: class {empty[0]} has no {split} images; allowed: labels 0..K-1 with "
                                  "every class present in both splits")
    return raw


def load_npz(path: str | Path) -> RawData:
    """The four arrays of an ``.npz`` as uint8 N x C x H x W images and int64 labels, checked."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataNotFoundError(f"{p}: no such .npz file" if not p.exists() else f"{p} is not a file")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise DataFormatError(f"{p}: lacks {missing}; an .npz benchmark holds {list(NPZ_KEYS)}")
            arrays = {k: z[k] for k in NPZ_KEYS}
    except DataFormatError:
        raise
    except (OSError, ValueError, EOFError) as exc:  # not a zip, truncated, or object arrays (pickles)
        raise DataFormatError(f"{p}: not a readable .npz of plain arrays ({type(exc).__name__}: {exc})") from None
    x_train = _images_nchw(arrays["x_train"], p, "x_train")
    x_test = _images_nchw(arrays["x_test"], p, "x_test")
    y_train = _labels(arrays["y_train"], len(x_train), p, "y_train")
    y_test = _labels(arrays["y_test"], len(x_test), p, "y_test")
    return check_raw(RawData(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (x_train, y_train, x_test, y_test))), p)


def _folder_listing(root: Path) -> tuple[list[str], dict[str, list[tuple[Path, str]]]]:
    if not root.is_dir():
        raise DataNotFoundError(f"{root}: no such image folder" if not root.exists() else f"{root} is not a folder")
    missing = [s for s in ("train", "test") if not (root / s).is_dir()]
    if missing:
        raise DataFormatError(f"{root}: lacks {'/ and '.join(missing)}/; an image-folder benchmark holds "
                              "train/<class>/*.png and test/<class>/*.png")
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not classes:
        raise DataFormatError(f"{root / 'train'}: no class folders; expected train/<class>/*.png")
    files: dict[str, list[tuple[Path, str]]] = {}
    for split in ("train", "test"):
        present = sorted(d.name for d in (root / split).iterdir() if d.is_dir())
        stray = sorted(set(present) - set(classes))
        if stray:
            raise DataFormatError(f"{root / split / stray[0]}: class {stray[0]!r} is not among the training "
                                  f"classes (label out of range); allowed: {classes[:10]}{' ...' if len(classes) > 10 else ''}")
        listed = []
        for c in classes:
            folder = root / split / c
            images = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
            if not images:
                raise DataFormatError(f"{folder}: class {c!r} has no {split} images ({', '.join(IMAGE_SUFFIXES)})")
            listed += [(f, c) for f in images]
        files[split] = listed
    return classes, files


@contextlib.contextmanager
def _open_image(path: Path) -> Iterator[PILImage]:
    """``path`` opened by PIL through the image sets' one opener (image_sets._opened: unreadable or over
    PIL's pixel limit is a one-line DataFormatError naming the file); a decoding error in the ``with``
    body is one too."""
    from PIL import Image  # a torchvision dependency

    with warnings.catch_warnings():
        # _opened refuses what PIL only warns about (between its limit and twice it); the warning would
        # be a second message. One thread loads a folder here (image sets decode in threads: no filter).
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = _opened(str(path))
    with img:
        try:
            yield img
        except OSError as exc:  # "image file is truncated", raised when the body decodes
            raise DataFormatError(f"{path}: not a readable image ({type(exc).__name__})") from None


def _decode_folder(files: list[tuple[Path, str]], index: dict[str, int], mode: str,
                   size: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    arrays = []
    for path, _ in files:
        with _open_image(path) as img:
            if size is None:
                size = img.size
            if img.size != size:
                raise DataFormatError(f"{path}: {img.size[0]}x{img.size[1]} image; the set's images are "
                                      f"{size[0]}x{size[1]} (all must share one size)")
            arrays.append(np.asarray(img.convert(mode)))
    x = np.stack(arrays)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    assert size is not None
    return np.ascontiguousarray(x), np.array([index[c] for _, c in files], dtype=np.int64), size


def _folder_mode(files: list[tuple[Path, str]]) -> str:
    for path, _ in files:
        with _open_image(path) as img:
            if img.mode not in ("L", "1", "I;16", "I"):
                return "RGB"
    return "L"


def load_image_folder(root: str | Path) -> RawData:
    """``train/<class>/*`` and ``test/<class>/*`` decoded to uint8 N x C x H x W, checked."""
    p = Path(root).expanduser()
    classes, files = _folder_listing(p)
    index = {c: i for i, c in enumerate(classes)}
    mode = _folder_mode(files["train"] + files["test"])
    x_train, y_train, size = _decode_folder(files["train"], index, mode, None)
    x_test, y_test, _ = _decode_folder(files["test"], index, mode, size)
    return check_raw(RawData(*(torch.from_numpy(a) for a in (x_train, y_train, x_test, y_test))), p)


# ---- fingerprints and specs -------------------------------------------------------------------------

def _hash_files(paths: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(str(path.relative_to(root) if path != root else path.name).encode())
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(_HASH_BLOCK), b""):
                h.update(block)
    return h.hexdigest()[:32]


def _signature(paths: list[Path]) -> tuple:
    # What must not change for a cached spec to stay valid (a rewritten file changes size or mtime).
    return tuple((str(p), st.st_size, st.st_mtime_ns) for p in paths for st in (os.stat(p),))


def _data_files(kind: str, path: Path) -> list[Path]:
    if kind == "npz":
        return [path]
    return sorted(f for split in ("train", "test") for f in (path / split).rglob("*")
                  if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def _split_defaults(n_classes: int) -> tuple[int, int]:
    # Two classes a task, as every built-in 10-class benchmark; an odd count gives the first task three.
    return (2 + n_classes % 2, 2) if n_classes > 2 else (n_classes, 1)


def array_benchmark(raw: RawData, *, fingerprint: str, loader, augmentation: str = "none",
                    init_classes: int | None = None, increment: int | None = None) -> "BenchmarkSpec":
    """A BenchmarkSpec whose shape, class count and statistics come from ``raw`` (uint8, checked)."""
    from incsweep.incremental.benchmarks import BenchmarkSpec

    n_classes = int(raw.y_train.max()) + 1
    x = raw.x_train.to(torch.float64) / 255.0
    mean = tuple(float(m) for m in x.mean(dim=(0, 2, 3)))
    std = tuple(max(float(s), 1e-3) for s in x.std(dim=(0, 2, 3)))  # a constant channel must not divide by 0
    init, inc = _split_defaults(n_classes)
    c, h, w = (int(d) for d in raw.x_train.shape[1:])
    counts = tuple(int(n) for n in torch.bincount(raw.y_train, minlength=n_classes))
    return BenchmarkSpec(n_classes, (c, h, w), init_classes or init, increment or inc, mean, std, augmentation,
                         loader, fingerprint=fingerprint, class_counts=counts)


def _folder_set_listing(p: Path) -> "FolderListing":
    """The folder's files as an image set lists them (once per folder version and process: its
    fingerprint hashes every byte)."""
    return _cached_listing(str(p), _signature(_data_files("image_folder", p)))


@functools.lru_cache(maxsize=8)
def _cached_listing(path: str, signature: tuple) -> "FolderListing":
    from incsweep.incremental.image_folders import FolderListing, with_sizes

    del signature  # part of the cache key only
    p = Path(path)
    classes, files = _folder_listing(p)
    index = {c: i for i, c in enumerate(classes)}
    paths = _data_files("image_folder", p)
    return with_sizes(FolderListing(str(p), tuple(classes), tuple(str(f) for f, _ in files["train"]),
                                    tuple(index[c] for _, c in files["train"]), tuple(str(f) for f, _ in files["test"]),
                                    tuple(index[c] for _, c in files["test"]), sum(os.path.getsize(f) for f in paths),
                                    _hash_files(paths, p)))


@functools.lru_cache(maxsize=32)
def _cached_spec(kind: str, path: str, signature: tuple, augmentation: str, crop_size: int | None) -> "BenchmarkSpec":
    del signature  # part of the cache key only: a changed file is read again
    p = Path(path)
    listing = _folder_set_listing(p) if kind == "image_folder" else None  # every header read: bad files named
    if listing is not None and (crop_size is not None or len(np.unique(listing.sizes, axis=0)) > 1):
        from incsweep.incremental.image_folders import image_set_spec, sample_stats, view_for

        view = view_for(crop_size, _folder_mode([(Path(f), "") for f in listing.train + listing.test]))
        mean, std = sample_stats(listing, view)
        init, inc = _split_defaults(len(listing.classes))
        return image_set_spec(listing, view, loader=_Loader(kind, path, crop_size), mean=mean, std=std, init=init,
                              increment=inc, augmentation=augmentation)
    raw = load_npz(p) if kind == "npz" else load_image_folder(p)
    return array_benchmark(raw, fingerprint=_hash_files(_data_files(kind, p), p), loader=_Loader(kind, path),
                           augmentation=augmentation)


class _Loader:
    """Reads one file benchmark (picklable, unlike a closure: specs travel to Ray workers)."""

    def __init__(self, kind: str, path: str, crop_size: int | None = None):
        self.kind, self.path, self.crop_size = kind, path, crop_size

    def __call__(self, cfg: "BenchmarkConfig") -> RawData:
        if self.kind == "npz":
            return load_npz(self.path)
        view = cfg.spec.view
        if view is None:
            return load_image_folder(self.path)
        from incsweep.incremental.image_folders import load_image_set

        return load_image_set(_folder_set_listing(Path(self.path)), view, cfg.data_path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Loader) and (self.kind, self.path, self.crop_size) == (other.kind, other.path,
                                                                                         other.crop_size)

    def __hash__(self) -> int:
        return hash((self.kind, self.path, self.crop_size))


FILE_KINDS = ("npz", "image_folder")


def file_spec(kind: str, path: str | Path, augmentation: str = "none", *, crop_size: int | None = None) -> "BenchmarkSpec":
    """The spec of the ``kind`` benchmark at ``path`` (read once per file version and process);
    ``crop_size``: an image folder read as an image set of that S."""
    p = Path(path).expanduser().resolve()
    if kind == "image_folder":
        _folder_listing(p)  # a missing/odd folder is named before anything is hashed
    elif not p.is_file():
        raise DataNotFoundError(f"{p}: no such .npz file" if not p.exists() else f"{p} is not a file")
    return _cached_spec(kind, str(p), _signature(_data_files(kind, p)), augmentation, crop_size)


def npz_benchmark(path: str | Path, *, augmentation: str = "none") -> "BenchmarkSpec":
    """A benchmark from an ``.npz`` (for a package's ``incsweep.benchmarks`` entry point)."""
    return file_spec("npz", path, augmentation)


def image_folder_benchmark(path: str | Path, *, augmentation: str = "none") -> "BenchmarkSpec":
    """A benchmark from an image-folder tree (for a package's ``incsweep.benchmarks`` entry point)."""
    return file_spec("image_folder", path, augmentation)
