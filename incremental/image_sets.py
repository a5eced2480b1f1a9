"""Image sets of any size, decoded when they are used: ImageNet-100 and image folders of mixed sizes.

An :class:`ImageSet` stands where a uint8 tensor stands in a ``Split``: it has a length, a shape
``(N, C, S, S)`` and is indexed, concatenated (``torch.cat``) and sliced like one, lazily. Its
images are the *originals* (any size): on disk (``streamed``) or decoded once into memory
(``resident``). Pixels are made only when a batch is drawn:

- training (``training.fit``): torchvision's RandomResizedCrop to S x S and a horizontal flip, from
  the original image, decoded by a pool of threads (``_load``);
- everything else (evaluation, herding, BatchNorm statistics, exemplars): the evaluation view,
  the shorter side resized to ``resize`` then the centre S x S crop (ImageNet's Resize(256) +
  CenterCrop(224)).

An exemplar is stored as its evaluation view, a C x S x S uint8 tensor (MEMO counts an ImageNet
exemplar as 3 x 224 x 224 bytes), and a set may mix such tensors with originals (``torch.cat``).

Why results do not depend on the worker count: a training batch's crops come from a seed the main
process draws from the run's generator, and each image's crop from (that seed, its position in the
batch), so which worker decodes what changes nothing (tests/incremental/test_image_sets.py). The
streamed and resident paths run the same transform code on the same decoded pixels.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from incsweep.core.configs import spec, validate
from incsweep.core.errors import ConfigError, DataFormatError

__all__ = ["ImageView", "ImageSet", "FileImages", "DecodedImages", "TensorImages", "as_tensor", "loader_workers",
           "WORKERS_ENV"]

log = logging.getLogger(__name__)

# Decoding threads (an environment setting, not a config field: results never depend
# on it, so changing it must not change a run's identity or refuse a resume).
WORKERS_ENV = "INCSWEEP_LOADER_WORKERS"
# Auto: as many threads as the run's torch threads (RunConfig.threads; in a study trial, the CPUs Ray
# gives it), at most 8 (docs/datasets.md, "Decoding threads").
_MAX_AUTO_WORKERS = 8


def loader_workers() -> int:
    """Decoding threads: ``$INCSWEEP_LOADER_WORKERS``, else the process's torch thread count (at most 8)."""
    text = os.environ.get(WORKERS_ENV, "").strip()
    if text:
        if not text.isdigit():
            raise ConfigError(f"${WORKERS_ENV}={text!r}; allowed: a whole number of threads (0: decode in "
                              "the training thread)")
        return int(text)
    return min(_MAX_AUTO_WORKERS, torch.get_num_threads())


@dataclass(frozen=True)
class ImageView:
    """How an original image becomes the network's S x S input (torchvision's ImageNet transforms)."""

    size: int = spec(224, range=(8, 1024))  # S: the training crop and the evaluation centre crop
    resize: int = spec(256, range=(8, 2048))  # evaluation: the shorter side is resized to this first
    mode: str = spec("RGB", choices=("RGB", "L"))
    # RandomResizedCrop's area share and aspect-ratio range: torchvision's defaults
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)

    def __post_init__(self) -> None:
        validate(self)
        if self.resize < self.size:
            raise ConfigError(f"ImageView: resize={self.resize} is below size={self.size}; the centre crop needs "
                              "resize >= size")

    @property
    def channels(self) -> int:
        return 3 if self.mode == "RGB" else 1


# ---- where a set's images come from -------------------------------------------------------------------

class FileImages:
    """Originals on disk, decoded at every use (the streamed path)."""

    def __init__(self, paths: Sequence[str]):
        self.paths = tuple(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def open(self, i: int, mode: str) -> Any:
        return _decode_file(self.paths[i], mode)

    def name(self, i: int) -> str:
        return self.paths[i]


class DecodedImages:
    """Originals decoded once and kept in memory (the resident path): the same pixels a file gives."""

    def __init__(self, arrays: Sequence[np.ndarray], names: Sequence[str]):
        self.arrays, self.names = list(arrays), tuple(names)

    def __len__(self) -> int:
        return len(self.arrays)

    def open(self, i: int, mode: str) -> Any:
        from PIL import Image

        return Image.fromarray(self.arrays[i])

    def name(self, i: int) -> str:
        return self.names[i]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)


class TensorImages:
    """Images already at the set's S x S (exemplars: evaluation views), uint8 N x C x S x S."""

    def __init__(self, x: torch.Tensor):
        self.x = x.detach().to("cpu", torch.uint8).contiguous()

    def __len__(self) -> int:
        return len(self.x)

    def open(self, i: int, mode: str) -> Any:
        from PIL import Image

        a = self.x[i].numpy()
        return Image.fromarray(a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0))

    def name(self, i: int) -> str:
        return f"stored image {i}"


Source = FileImages | DecodedImages | TensorImages


def _opened(path: str) -> Any:
    """``path`` opened by PIL (header read, not decoded); an unidentifiable or oversized image is a
    one-line DataFormatError naming it. The pixel limit is checked here rather than through PIL's
    warning filter, which is process-wide and not safe to change from decoding threads."""
    from PIL import Image

    try:
        img = Image.open(path)
    except Image.DecompressionBombError as exc:
        raise DataFormatError(f"{path}: {exc}; allowed: images up to {Image.MAX_IMAGE_PIXELS} pixels") from None
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise DataFormatError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.size[0] * img.size[1] > limit:
        img.close()
        raise DataFormatError(f"{path}: {img.size[0]}x{img.size[1]} image ({img.size[0] * img.size[1]} pixels); "
                              f"allowed: images up to {limit} pixels (PIL's Image.MAX_IMAGE_PIXELS)")
    return img


def _decode_file(path: str, mode: str) -> Any:
    """The decoded image at ``path`` in ``mode``; an unreadable, truncated or oversized file is a
    one-line DataFormatError naming it."""
    with _opened(path) as img:
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as exc:  # "image file is truncated", a broken stream
            raise DataFormatError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from None
        return img.convert(mode) if img.mode != mode else img.copy()


# ---- the transforms (one implementation for both paths) ------------------------------------------------

def eval_view(img: Any, view: ImageView) -> np.ndarray:
    """Resize the shorter side to ``view.resize`` (bilinear, antialiased), centre-crop S x S: C x S x S uint8.

    Sizes and offsets as torchvision's Resize(int) and CenterCrop compute them."""
    from PIL import Image

    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = view.resize, int(view.resize * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.BILINEAR)
    top, left = int(round((nh - view.size) / 2.0)), int(round((nw - view.size) / 2.0))
    return _chw(img.crop((left, top, left + view.size, top + view.size)))


def crop_box(width: int, height: int, view: ImageView, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """RandomResizedCrop's box (left, top, w, h): torchvision's sampling (10 tries, then the centre)."""
    area = width * height
    log_lo, log_hi = math.log(view.ratio[0]), math.log(view.ratio[1])
    for _ in range(10):
        target = area * rng.uniform(view.scale[0], view.scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    in_ratio = width / height
    if in_ratio < view.ratio[0]:
        w, h = width, int(round(width / view.ratio[0]))
    elif in_ratio > view.ratio[1]:
        h, w = height, int(round(height * view.ratio[1]))
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def train_view(img: Any, view: ImageView, rng: np.random.Generator, flip: bool) -> np.ndarray:
    """RandomResizedCrop to S x S (bilinear), then a horizontal flip with probability 1/2 when ``flip``."""
    from PIL import Image

    left, top, w, h = crop_box(img.size[0], img.size[1], view, rng)
    # crop, then resize: torchvision's resized_crop (a resize with a box would also sample the pixels
    # just outside it, so its borders would differ)
    out = img.crop((left, top, left + w, top + h)).resize((view.size, view.size), Image.Resampling.BILINEAR)
    if flip and rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _chw(out)


def _chw(img: Any) -> np.ndarray:
    a = np.asarray(img, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


# ---- the set ---------------------------------------------------------------------------------------------

class ImageSet:
    """A lazily decoded image set that behaves as a uint8 (N, C, S, S) tensor where the engine uses one.

    ``items`` holds (source, index) pairs; indexing, ``torch.cat`` and ``.to(device)`` are cheap and
    decode nothing. ``materialize()`` (and ``as_tensor``) gives the evaluation views as a tensor.
    """

    def __init__(self, sources: Sequence[Source], items: np.ndarray, view: ImageView):
        self.sources = tuple(sources)
        self.items = np.asarray(items, dtype=np.int64).reshape(-1, 2)
        self.view = view

    @classmethod
    def of(cls, source: Source, view: ImageView) -> "ImageSet":
        n = len(source)
        return cls((source,), np.stack([np.zeros(n, dtype=np.int64), np.arange(n)], axis=1), view)

    # -- the tensor-like surface -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), self.view.channels, self.view.size, self.view.size))

    def size(self, dim: int | None = None) -> Any:
        return self.shape if dim is None else self.shape[dim]

    dtype = torch.uint8
    device = torch.device("cpu")
    ndim = 4

    def dim(self) -> int:
        return 4

    def numel(self) -> int:
        return int(np.prod(self.shape))

    def to(self, *args: Any, **kwargs: Any) -> "ImageSet":
        """Itself: its pixels reach the device batch by batch, when they are made."""
        return self

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, (int, np.integer)) or (isinstance(key, torch.Tensor) and key.ndim == 0
                                                  and key.dtype != torch.bool):
            return self._subset(np.array([int(key)])).materialize()[0]
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        if isinstance(key, list):
            key = np.asarray(key)
        if isinstance(key, np.ndarray) and key.dtype != bool and key.size == 0:
            key = key.astype(np.int64)
        if not isinstance(key, (slice, np.ndarray)):
            raise TypeError(f"an ImageSet is indexed by an int, a slice, or an index or boolean mask array; got "
                            f"{type(key).__name__}")
        if isinstance(key, np.ndarray) and key.dtype == bool and len(key) != len(self):
            raise IndexError(f"boolean mask of length {len(key)} for an ImageSet of {len(self)} images")
        return ImageSet(self.sources, self.items[key], self.view)

    def _subset(self, rows: np.ndarray) -> "ImageSet":
        return ImageSet(self.sources, self.items[rows], self.view)

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.cat and kwargs.get("dim", args[1] if len(args) > 1 else 0) == 0:
            return concat(list(args[0]))
        # Anything else is computed on the evaluation views (correct, but decodes the whole set).
        plain = [as_tensor(a) if isinstance(a, ImageSet) else a for a in args]
        if func is torch.cat:
            plain = [[as_tensor(a) if isinstance(a, ImageSet) else a for a in args[0]], *args[1:]]
        return func(*plain, **kwargs)

    # -- pixels ---------------------------------------------------------------------------------------
    def open(self, row: int) -> Any:
        s, i = self.items[row]
        return self.sources[s].open(int(i), self.view.mode)

    def name(self, row: int) -> str:
        s, i = self.items[row]
        return self.sources[s].name(int(i))

    def eval_image(self, row: int) -> np.ndarray:
        s, i = self.items[row]
        source = self.sources[s]
        if isinstance(source, TensorImages):  # already the evaluation view
            return source.x[int(i)].numpy()
        return eval_view(source.open(int(i), self.view.mode), self.view)

    def materialize(self, workers: int | None = None) -> torch.Tensor:
        """The evaluation views of every image, uint8 (N, C, S, S)."""
        out = torch.empty(tuple(self.shape), dtype=torch.uint8)
        start = 0
        for batch in self.eval_batches(256, workers=workers):
            out[start : start + len(batch)] = batch
            start += len(batch)
        return out

    def eval_batches(self, batch_size: int, *, workers: int | None = None) -> Iterator[torch.Tensor]:
        """Evaluation views in order, ``batch_size`` at a time (decoded by the thread pool)."""
        requests = [(np.arange(i, min(i + batch_size, len(self))), None) for i in range(0, len(self), batch_size)]
        yield from _load(self, requests, workers)

    def train_batches(self, batches: Sequence[torch.Tensor], seeds: Sequence[int], *, crop: bool, flip: bool,
                      workers: int | None = None) -> Iterator[torch.Tensor]:
        """Each index batch's training images: random-resized crops (``crop``; else evaluation views),
        flipped at random (``flip``), every batch's draws from its seed."""
        requests = [(idx.cpu().numpy(), (int(seed), crop, flip)) for idx, seed in zip(batches, seeds)]
        yield from _load(self, requests, workers)

    def make_batch(self, rows: np.ndarray, train: tuple[int, bool, bool] | None, offset: int = 0) -> torch.Tensor:
        """One batch (or its part from position ``offset``), uint8 (B, C, S, S): evaluation views, or
        training images from ``train = (seed, crop, flip)``; image k of the batch draws from
        ``default_rng([seed, k])``, whoever decodes it."""
        images = []
        for pos, row in enumerate(rows, start=offset):
            try:
                if train is None:
                    images.append(self.eval_image(int(row)))
                else:
                    seed, crop, flip = train
                    rng = np.random.default_rng([seed, pos])
                    if crop:
                        images.append(train_view(self.open(int(row)), self.view, rng, flip))
                    else:
                        a = self.eval_image(int(row))
                        images.append(a[:, :, ::-1].copy() if flip and rng.random() < 0.5 else a)
            except DataFormatError:
                raise
            except Exception as exc:  # noqa: BLE001 - the file is named in a one-line error
                raise DataFormatError(f"{self.name(int(row))}: cannot be read ({type(exc).__name__}: {exc})") from None
        if not images:
            return torch.empty((0, *tuple(self.shape)[1:]), dtype=torch.uint8)
        return torch.from_numpy(np.stack(images))

    def __repr__(self) -> str:
        kinds = sorted({type(s).__name__ for s in self.sources})
        return f"ImageSet({len(self)} images from {'/'.join(kinds)}, {self.view.mode} {self.view.size}x{self.view.size})"


def concat(parts: Sequence[Any]) -> ImageSet:
    """ImageSets and uint8 tensors of one (C, S, S) joined into one set (what ``torch.cat`` does)."""
    sets = [p for p in parts if isinstance(p, ImageSet)]
    view = sets[0].view
    sources: list[Source] = []
    items = []
    for part in parts:
        if isinstance(part, ImageSet):
            if part.view != view:
                raise ValueError(f"torch.cat of ImageSets with different views ({part.view} vs {view})")
            base = len(sources)
            sources.extend(part.sources)
            items.append(part.items + np.array([base, 0]))
        else:
            t = torch.as_tensor(part)
            if len(t) == 0:
                continue
            if t.dtype != torch.uint8 or tuple(t.shape[1:]) != tuple(sets[0].shape[1:]):
                raise ValueError(f"torch.cat of an ImageSet of {tuple(sets[0].shape[1:])} images with a {t.dtype} "
                                 f"tensor of {tuple(t.shape[1:])}; allowed: uint8 images of the set's shape")
            sources.append(TensorImages(t))
            items.append(np.stack([np.full(len(t), len(sources) - 1), np.arange(len(t))], axis=1))
    return ImageSet(sources, np.concatenate(items) if items else np.empty((0, 2), dtype=np.int64), view)


def as_tensor(x: Any) -> torch.Tensor:
    """``x`` as a uint8 tensor: an ImageSet's evaluation views, a tensor as it is."""
    return x.materialize() if isinstance(x, ImageSet) else x


# Images a decoding task makes: small enough that one evaluation batch spreads over every thread, large
# enough that a task's overhead (~50 us) stays under 1% of its decoding (~2 ms an ImageNet JPEG here).
_CHUNK = 16


def _load(images: ImageSet, requests: list, workers: int | None) -> Iterator[torch.Tensor]:
    """Each request's batch, in order, decoded ``workers`` threads wide and up to two batches ahead.

    Threads, not DataLoader worker processes: PIL releases the GIL while it decodes and resizes (2
    threads made 1.9x the images/s of 1 on this 2-core machine), and a worker process costs a fork
    per DataLoader, which made a small streamed run 2.8x slower than decoding in-line (both in
    benchmarks/results/image_stream.txt, "Why threads")."""
    n = loader_workers() if workers is None else workers
    if n == 0:
        for rows, train in requests:
            yield images.make_batch(rows, train)
        return
    chunks = [(r, lo) for r, (rows, _) in enumerate(requests) for lo in range(0, max(len(rows), 1), _CHUNK)]
    ahead = max(2 * n, 2 * -(-max((len(rows) for rows, _ in requests), default=1) // _CHUNK))
    with ThreadPoolExecutor(n, thread_name_prefix="incsweep-decode") as pool:
        pending: deque = deque()
        queued = 0

        def submit_more() -> None:
            nonlocal queued
            while queued < len(chunks) and len(pending) < ahead:
                r, lo = chunks[queued]
                rows, train = requests[r]
                pending.append((r, pool.submit(images.make_batch, rows[lo : lo + _CHUNK], train, lo)))
                queued += 1

        submit_more()
        for r in range(len(requests)):
            parts = []
            while pending and pending[0][0] == r:
                parts.append(pending.popleft()[1].result())
                submit_more()
            yield parts[0] if len(parts) == 1 else torch.cat(parts)
