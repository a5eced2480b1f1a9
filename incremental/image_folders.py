"""Image-set benchmarks: ImageNet-100 (MEMO's paper benchmark) and image folders of mixed sizes.

Both are read as :class:`~incsweep.incremental.image_sets.ImageSet` s: the originals stay on disk
(``streamed``) or are decoded once into memory (``resident``), and every use crops them to S x S
(image_sets.py). ``benchmark.data_path`` picks the path; ``auto`` keeps a set resident when its
decoded originals (sizes from every file's header, read once: an unreadable file is named before
anything trains) take no more than ``RESIDENT_MAX_BYTES``.

ImageNet-100 is the 100-class subset the continual-learning literature uses: PODNet's split
(github arthurdouillard/incremental_learning.pytorch, imagenet_split/{train,val}_100.txt), which is
the first 100 ImageNet-1k classes in wnid order and which PyCIL reads as two ImageFolders
(``train/<wnid>/``, ``val/<wnid>/``); its class order is ``seed1993`` (PODNet's
options/data/imagenet100_1order.yaml lists exactly numpy's RandomState(1993).permutation(100)).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from incsweep.core.errors import ConfigError, DataFormatError, DataNotFoundError
from incsweep.incremental.datasets import RawData
from incsweep.incremental.image_sets import DecodedImages, FileImages, ImageSet, ImageView, _decode_file, _opened, eval_view

if TYPE_CHECKING:
    from incsweep.incremental.benchmarks import BenchmarkConfig, BenchmarkSpec

__all__ = ["IMAGENET100_WNIDS", "IMAGENET_MEAN", "IMAGENET_STD", "DATA_PATHS", "RESIDENT_MAX_BYTES", "DEFAULT_CROP",
           "FolderListing", "imagenet100_listing", "image_set_spec", "load_image_set", "choose_path"]

log = logging.getLogger(__name__)

# PODNet's ImageNet-100 (imagenet_split/val_100.txt, labels 0..99 in this order): the first 100 wnids of
# ImageNet-1k. Label k is the k-th wnid, as PyCIL's ImageFolder (sorted folder names) numbers them.
IMAGENET100_WNIDS = (
    "n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041", "n01514668", "n01514859",
    "n01518878", "n01530575", "n01531178", "n01532829", "n01534433", "n01537544", "n01558993", "n01560419", "n01580077",
    "n01582220", "n01592084", "n01601694", "n01608432", "n01614925", "n01616318", "n01622779", "n01629819", "n01630670",
    "n01631663", "n01632458", "n01632777", "n01641577", "n01644373", "n01644900", "n01664065", "n01665541", "n01667114",
    "n01667778", "n01669191", "n01675722", "n01677366", "n01682714", "n01685808", "n01687978", "n01688243", "n01689811",
    "n01692333", "n01693334", "n01694178", "n01695060", "n01697457", "n01698640", "n01704323", "n01728572", "n01728920",
    "n01729322", "n01729977", "n01734418", "n01735189", "n01737021", "n01739381", "n01740131", "n01742172", "n01744401",
    "n01748264", "n01749939", "n01751748", "n01753488", "n01755581", "n01756291", "n01768244", "n01770081", "n01770393",
    "n01773157", "n01773549", "n01773797", "n01774384", "n01774750", "n01775062", "n01776313", "n01784675", "n01795545",
    "n01796340", "n01797886", "n01798484", "n01806143", "n01806567", "n01807496", "n01817953", "n01818515", "n01819313",
    "n01820546", "n01824575", "n01828970", "n01829413", "n01833805", "n01843065", "n01843383", "n01847000", "n01855032",
    "n01855672",
)
# torchvision's ImageNet statistics, which PyCIL's iImageNet100 normalises with (utils/data.py)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# ImageNet-1k's largest class has 1,300 training images: what `incsweep budget` assumes per class when
# the data is not on this machine (the real counts, 732-1,300, are read from the folders when it is).
IMAGENET_MAX_TRAIN_PER_CLASS = 1300
DEFAULT_CROP = 224  # ImageNet's S (ResNet-18's input, MEMO's exemplar of 3 x 224 x 224 bytes)
DATA_PATHS = ("auto", "resident", "streamed")
# auto: resident up to 2 GiB of decoded originals. A study runs several trials on one node, each with its
# own copy (4 on a 16-core GPU node: 8 GiB), and 2 GiB decodes in ~1-2 min on one core, about what one
# streamed epoch of it costs; ImageNet-100 (~60 GB decoded) streams.
RESIDENT_MAX_BYTES = 2 << 30
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp")
_STATS_SAMPLE = 1024  # training images whose evaluation views give a mixed-size folder's mean/std


@dataclass(frozen=True)
class FolderListing:
    """Which files make up each split, their labels and the class names (label k = classes[k])."""

    root: str
    classes: tuple[str, ...]
    train: tuple[str, ...]
    train_labels: tuple[int, ...]
    test: tuple[str, ...]
    test_labels: tuple[int, ...]
    file_bytes: int
    fingerprint: str  # ImageNet-100: of names, sizes and mtimes (hashing 13 GB would take minutes)
    # (width, height) of every training then test image, read from the headers (scan_headers)
    sizes: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 2), np.int64), compare=False)

    @property
    def class_counts(self) -> tuple[int, ...]:
        return tuple(int(n) for n in np.bincount(np.asarray(self.train_labels), minlength=len(self.classes)))


def _header_size(path: str) -> tuple[int, int]:
    with _opened(path) as img:
        return img.size


# A scan of at least this many files is kept on disk (ImageNet-100's 130,000 headers take ~1 min on a
# cold disk); smaller ones are read again, in well under a second.
_HEADER_CACHE_MIN = 5000


def scan_headers(files: tuple[str, ...], fingerprint: str) -> np.ndarray:
    """(width, height) of every file from its header, ``loader_workers()`` threads wide: a file PIL
    cannot identify is a one-line DataFormatError before anything trains. Large scans are cached
    under ``default_cache_dir()`` by the listing's fingerprint."""
    from concurrent.futures import ThreadPoolExecutor

    from incsweep.incremental.datasets import default_cache_dir
    from incsweep.incremental.image_sets import loader_workers

    cache = default_cache_dir() / f"image-headers-{fingerprint}.npy" if len(files) >= _HEADER_CACHE_MIN else None
    if cache is not None and cache.is_file():
        try:
            sizes = np.load(cache, allow_pickle=False)
            if sizes.shape == (len(files), 2):
                return sizes
        except (OSError, ValueError):
            pass  # unreadable: scanned again
    log.log(logging.INFO if cache is not None else logging.DEBUG, "reading the headers of %d images", len(files))
    from PIL import Image

    with warnings.catch_warnings(), ThreadPoolExecutor(max(loader_workers(), 1)) as pool:
        # _header_size refuses an image over PIL's pixel limit in one line; PIL's own warning (between
        # the limit and twice it) would be a second message. Set here, around the whole scan, not in the
        # threads: the warning filter is the process's, and a thread's change would race the others'.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        sizes = np.array(list(pool.map(_header_size, files, chunksize=256)), dtype=np.int64).reshape(-1, 2)
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, sizes)
            os.replace(tmp, cache)
        except OSError as err:
            log.info("cannot keep the header scan in %s (%s)", cache, err)
    return sizes


def with_sizes(listing: FolderListing) -> FolderListing:
    """The listing with every image's size read from its header (scan_headers)."""
    return dataclasses.replace(listing, sizes=scan_headers(listing.train + listing.test, listing.fingerprint))


def _images_in(folder: Path) -> list[os.DirEntry]:
    with os.scandir(folder) as it:
        return sorted((e for e in it if e.is_file() and e.name.lower().endswith(IMAGE_SUFFIXES)), key=lambda e: e.name)


def _fingerprint(root: Path, entries: list[tuple[str, int, int]]) -> str:
    h = hashlib.sha256()
    for rel, size, mtime in entries:
        h.update(f"{rel}\0{size}\0{mtime}\n".encode())
    return h.hexdigest()[:32]


def _scan(root: Path, split_dirs: tuple[str, str], classes: tuple[str, ...], what: str) -> FolderListing:
    files: dict[str, list[str]] = {}
    labels: dict[str, list[int]] = {}
    stats: list[tuple[str, int, int]] = []
    for split in split_dirs:
        files[split], labels[split] = [], []
        for k, c in enumerate(classes):
            folder = root / split / c
            if not folder.is_dir():
                raise DataNotFoundError(f"{what}: {folder} is missing (class {c}); every class needs "
                                        f"{split_dirs[0]}/{c}/ and {split_dirs[1]}/{c}/")
            entries = _images_in(folder)
            if not entries:
                raise DataFormatError(f"{what}: {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            for e in entries:
                st = e.stat()
                stats.append((f"{split}/{c}/{e.name}", st.st_size, st.st_mtime_ns))
                files[split].append(e.path)
                labels[split].append(k)
    a, b = split_dirs
    return FolderListing(str(root), classes, tuple(files[a]), tuple(labels[a]), tuple(files[b]), tuple(labels[b]),
                         sum(s for _, s, _ in stats), _fingerprint(root, stats))


def _split_file_listing(root: Path, names: tuple[str, str]) -> FolderListing:
    """PODNet's split files: ``<split>/<wnid>/<file> <label>`` per line, label = the wnid's index."""
    index = {w: k for k, w in enumerate(IMAGENET100_WNIDS)}
    files: dict[str, list[str]] = {}
    labels: dict[str, list[int]] = {}
    stats: list[tuple[str, int, int]] = []
    for name in names:
        path = root / name
        files[name], labels[name] = [], []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split()
            parts = fields[0].split("/")
            if len(fields) != 2 or len(parts) != 3 or not fields[1].isdigit():
                raise DataFormatError(f"{path}:{n}: {line.strip()!r}; a split line is '<split>/<wnid>/<file> <label>'")
            wnid, label = parts[1], int(fields[1])
            if index.get(wnid) != label:
                raise DataFormatError(f"{path}:{n}: {wnid} with label {label}; ImageNet-100 (PODNet's split) gives "
                                      f"{wnid} label {index[wnid]}" if wnid in index else
                                      f"{path}:{n}: class {wnid} is not one of ImageNet-100's 100 classes")
            if not (root / parts[0] / wnid).is_dir():
                raise DataNotFoundError(f"{path}:{n} names class {wnid}, but {root / parts[0] / wnid} is missing")
            file = root / fields[0]
            try:
                st = file.stat()
            except OSError:
                raise DataNotFoundError(f"{path}:{n} names {file}, which is missing") from None
            stats.append((fields[0], st.st_size, st.st_mtime_ns))
            files[name].append(str(file))
            labels[name].append(label)
        missing = sorted(set(range(100)) - set(labels[name]))
        if missing:
            raise DataFormatError(f"{path}: no images of class {IMAGENET100_WNIDS[missing[0]]} (label {missing[0]}); "
                                  "every one of the 100 classes needs some")
    a, b = names
    return FolderListing(str(root), IMAGENET100_WNIDS, tuple(files[a]), tuple(labels[a]), tuple(files[b]),
                         tuple(labels[b]), sum(s for _, s, _ in stats), _fingerprint(root, stats))


def _imagenet_root(data_root: str | None) -> Path:
    from incsweep.incremental.datasets import default_data_root

    root_text = data_root or default_data_root()
    if not root_text:
        raise DataNotFoundError("ImageNet-100: no data root given (benchmark.data_root and $INCSWEEP_DATA are unset); "
                                "point it at a folder with train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (docs/datasets.md)")
    root = Path(root_text).expanduser().resolve()
    for candidate in (root, root / "imagenet100", root / "imagenet"):
        if (candidate / "train").is_dir() and (candidate / "val").is_dir():
            return candidate
    raise DataNotFoundError(f"ImageNet-100 not found: {root} holds no train/ and val/ folders (nor imagenet100/ or "
                            "imagenet/ with them); the layout is train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, "
                            "ImageNet's own (docs/datasets.md)")


@functools.lru_cache(maxsize=8)
def _cached_imagenet_listing(root: str, signature: tuple) -> FolderListing:
    del signature  # part of the key only: a changed folder is listed again
    p = Path(root)
    if (p / "train_100.txt").is_file() and (p / "val_100.txt").is_file():
        return with_sizes(_split_file_listing(p, ("train_100.txt", "val_100.txt")))
    return with_sizes(_scan(p, ("train", "val"), IMAGENET100_WNIDS, "ImageNet-100"))


def imagenet100_listing(data_root: str | None) -> FolderListing:
    """The ImageNet-100 files under ``data_root`` (or ``$INCSWEEP_DATA``): PODNet's split files
    ``train_100.txt``/``val_100.txt`` when the root has them, else ``train/<wnid>/``, ``val/<wnid>/``
    of the 100 wnids (other class folders, as in a full ImageNet-1k, are ignored)."""
    root = _imagenet_root(data_root)
    watched = [root / "train", root / "val", root / "train_100.txt", root / "val_100.txt"]
    signature = tuple((str(p), p.stat().st_mtime_ns) for p in watched if p.exists())
    return _cached_imagenet_listing(str(root), signature)


# ---- the spec and the data ---------------------------------------------------------------------------

def view_for(crop_size: int | None, mode: str = "RGB") -> ImageView:
    """S x S crops (224 by default), evaluation resize in ImageNet's proportion (256 for 224)."""
    size = crop_size or DEFAULT_CROP
    return ImageView(size=size, resize=int(round(size * 256 / 224)), mode=mode)


def decoded_bytes(listing: FolderListing, mode: str) -> int:
    """What the decoded originals of every image take in memory (from the header sizes)."""
    channels = 3 if mode == "RGB" else 1
    return int((listing.sizes[:, 0] * listing.sizes[:, 1]).sum()) * channels


def choose_path(listing: FolderListing, requested: str, mode: str) -> str:
    """``resident`` or ``streamed``: as requested, or (``auto``) by the estimated decoded size."""
    if requested not in DATA_PATHS:
        raise ConfigError(f"benchmark.data_path={requested!r}; allowed: {list(DATA_PATHS)}")
    if requested != "auto":
        return requested
    return "resident" if decoded_bytes(listing, mode) <= RESIDENT_MAX_BYTES else "streamed"


def _source(files: tuple[str, ...], path: str, mode: str) -> FileImages | DecodedImages:
    if path == "streamed":
        return FileImages(files)
    log.info("decoding %d images into memory (benchmark.data_path=resident)", len(files))
    arrays = []
    for k, f in enumerate(files, start=1):
        arrays.append(np.asarray(_decode_file(f, mode)))
        if k % 20000 == 0:
            log.info("decoded %d/%d images", k, len(files))
    return DecodedImages(arrays, files)


def load_image_set(listing: FolderListing, view: ImageView, path: str) -> RawData:
    """The listing's splits as ImageSets (labels: class positions in ``listing.classes``)."""
    chosen = choose_path(listing, path, view.mode)
    log.info("%s: %d training and %d test images, %s", listing.root, len(listing.train), len(listing.test), chosen)
    x_train = ImageSet.of(_source(listing.train, chosen, view.mode), view)
    x_test = ImageSet.of(_source(listing.test, chosen, view.mode), view)
    return RawData(x_train, torch.tensor(listing.train_labels, dtype=torch.int64),  # type: ignore[arg-type]
                   x_test, torch.tensor(listing.test_labels, dtype=torch.int64))  # type: ignore[arg-type]


def sample_stats(listing: FolderListing, view: ImageView) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of the evaluation views of up to 1,024 evenly spaced training images
    (the same images whichever path reads the set, so both normalise alike)."""
    picks = np.unique(np.linspace(0, len(listing.train) - 1, min(_STATS_SAMPLE, len(listing.train))).astype(int))
    x = torch.from_numpy(np.stack([eval_view(_decode_file(listing.train[i], view.mode), view) for i in picks]))
    xf = x.to(torch.float64) / 255.0
    return (tuple(float(m) for m in xf.mean(dim=(0, 2, 3))),
            tuple(max(float(s), 1e-3) for s in xf.std(dim=(0, 2, 3))))


def image_set_spec(listing: FolderListing, view: ImageView, *, loader, mean: tuple[float, ...], std: tuple[float, ...],
                   init: int, increment: int, augmentation: str) -> "BenchmarkSpec":
    """A BenchmarkSpec of C x S x S images whose class counts and fingerprint come from the listing."""
    from incsweep.incremental.benchmarks import BenchmarkSpec

    return BenchmarkSpec(len(listing.classes), (view.channels, view.size, view.size), init, increment, mean, std,
                         augmentation, loader, fingerprint=listing.fingerprint, class_counts=listing.class_counts,
                         view=view)


class ImageNet100Loader:
    """Reads ImageNet-100 for a config (picklable: specs travel to Ray workers)."""

    def __call__(self, cfg: "BenchmarkConfig") -> RawData:
        return load_image_set(imagenet100_listing(cfg.data_root), view_for(cfg.crop_size), cfg.data_path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ImageNet100Loader)

    def __hash__(self) -> int:
        return hash(ImageNet100Loader)


def imagenet100_spec(cfg: "BenchmarkConfig", nominal: "BenchmarkSpec") -> "BenchmarkSpec":
    """ImageNet-100's spec: class counts and fingerprint from the folders when they are found, else
    ``nominal`` (the registry's entry: 1,300 images a class, enough for ``incsweep budget`` on a machine
    without the data) at the config's crop size."""
    view = view_for(cfg.crop_size)
    try:
        _imagenet_root(cfg.data_root)
    except DataNotFoundError:  # no ImageNet here at all (a folder that is there but incomplete is named)
        return dataclasses.replace(nominal, image_shape=(3, view.size, view.size), view=view)
    return image_set_spec(imagenet100_listing(cfg.data_root), view, loader=ImageNet100Loader(), mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, init=10, increment=10, augmentation="imagenet")


def check_image_set_data(cfg: "BenchmarkConfig") -> None:
    """Raise the one-line DataNotFoundError/DataFormatError a run of ``cfg`` (an image-set benchmark)
    would meet, without decoding it: the listing and every file's header (a study's pre-flight)."""
    if cfg.name == "seq-imagenet100":
        imagenet100_listing(cfg.data_root)
    else:
        cfg.spec  # noqa: B018 - an image folder's spec is its listing, every header read
