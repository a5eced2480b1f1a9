"""Real dataset readers on small files in the REAL on-disk formats, run through the benchmark builder.

CIFAR batches are written as the Python 2 pickles Krizhevsky distributes (torchvision reads them with
``encoding="latin1"``); Tiny-ImageNet as cs231n's folder of JPEGs. Every image encodes its class and
index in its pixels, so labels, class order and splits are checked against the pixels themselves.
"""

from __future__ import annotations

import os
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from incsweep.cli import main
from incsweep.core.errors import ConfigError, DataNotFoundError
from incsweep.incremental import datasets
from incsweep.incremental.benchmarks import BenchmarkConfig, load_benchmark
from incsweep.incremental.budget import train_images_per_class

PIL = pytest.importorskip("PIL.Image")


# ---- writers of the real formats ----------------------------------------------------------------------

class _Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Pickles ``bytes`` as Python 2 ``str`` opcodes, as the distributed CIFAR files hold their keys and
    numpy's raw buffers; loading them needs an ``encoding`` (latin1 gives str keys, "bytes" bytes keys)."""

    dispatch = dict(pickle._Pickler.dispatch)  # type: ignore[attr-defined]

    def _save_py2_str(self, obj: bytes) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = _save_py2_str


def _write_pickle(path: Path, obj: dict, py2: bool) -> None:
    with open(path, "wb") as fh:
        if py2:
            _Py2Pickler(fh, protocol=2).dump({k.encode(): v for k, v in obj.items()})
        else:  # re-pickled under Python 3 with bytes keys
            pickle.dump({k.encode(): v for k, v in obj.items()}, fh)


def _cifar_rows(labels: list[int], first_index: int) -> np.ndarray:
    """Channel-planar rows: R = class, G = running image index, B = the pixel position (checks the reshape)."""
    rows = np.empty((len(labels), 3, 1024), dtype=np.uint8)
    rows[:, 0] = np.array(labels, dtype=np.uint8)[:, None]
    rows[:, 1] = (first_index + np.arange(len(labels)))[:, None] % 256
    rows[:, 2] = np.arange(1024) % 256
    return rows.reshape(len(labels), 3072)


def write_cifar(root: Path, n_classes: int, train_per_class: int, test_per_class: int, py2: bool = True) -> Path:
    folder, train_files, test_file, meta_file, label_key, meta_key = datasets._CIFAR_LAYOUT[n_classes]
    d = root / folder
    d.mkdir(parents=True)
    rng = np.random.RandomState(0)
    train_labels = list(rng.permutation(np.repeat(np.arange(n_classes), train_per_class)))
    chunks = np.array_split(np.arange(len(train_labels)), len(train_files))
    for name, idx in zip(train_files, chunks):
        labels = [int(train_labels[i]) for i in idx]
        entry = {"batch_label": f"training batch {name}", "data": _cifar_rows(labels, int(idx[0])),
                 label_key: labels, "filenames": [f"img_{i}.png" for i in idx]}
        if n_classes == 100:
            entry["coarse_labels"] = [c // 5 for c in labels]
        _write_pickle(d / name, entry, py2)
    test_labels = [int(c) for c in rng.permutation(np.repeat(np.arange(n_classes), test_per_class))]
    entry = {"batch_label": "testing batch 1 of 1", "data": _cifar_rows(test_labels, 0), label_key: test_labels,
             "filenames": [f"t_{i}.png" for i in range(len(test_labels))]}
    if n_classes == 100:
        entry["coarse_labels"] = [c // 5 for c in test_labels]
    _write_pickle(d / test_file, entry, py2)
    meta = {meta_key: [f"class{c}" for c in range(n_classes)], "num_cases_per_batch": len(chunks[0])}
    if n_classes == 100:
        meta["coarse_label_names"] = [f"super{c}" for c in range(20)]
    _write_pickle(d / meta_file, meta, py2)
    return d


TINY_CLASSES = 200  # seq-tinyimagenet's class count is fixed, so every class gets a folder


def _wnid(c: int) -> str:
    return f"n{1440764 + 37 * c:08d}"


def _tiny_pixels(c: int, j: int) -> np.ndarray:
    # Solid colours survive JPEG within a few levels: R and G carry the class in steps of 16, B the index.
    rgb = np.array([(c // 16) * 16 + 8, (c % 16) * 16 + 8, j * 60 + 8], dtype=np.uint8)
    return np.broadcast_to(rgb, (64, 64, 3)).copy()


def _decode_class(x: torch.Tensor) -> torch.Tensor:
    """Class encoded by _tiny_pixels, read back from uint8 (N, 3, 64, 64) images."""
    mean = x.float().mean(dim=(2, 3))
    return (mean[:, 0] // 16) * 16 + mean[:, 1] // 16


def write_tiny_imagenet(root: Path, train_per_class: int = 2) -> Path:
    d = root / "tiny-imagenet-200"
    wnids = [_wnid(c) for c in range(TINY_CLASSES)]
    shuffled = list(np.random.RandomState(1).permutation(wnids))  # wnids.txt is not sorted in the real archive
    (d / "train").mkdir(parents=True)
    (d / "wnids.txt").write_text("\n".join(shuffled) + "\n")
    (d / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    for c, wnid in enumerate(wnids):
        images = d / "train" / wnid / "images"
        images.mkdir(parents=True)
        (d / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for j in range(train_per_class):
            PIL.fromarray(_tiny_pixels(c, j)).save(images / f"{wnid}_{j}.JPEG", "JPEG", quality=95)
    # A greyscale training image, as the real set has some: decoded to three equal channels.
    PIL.fromarray(np.full((64, 64), 77, dtype=np.uint8), mode="L").save(d / "train" / wnids[3] / "images" /
                                                                        f"{wnids[3]}_grey.JPEG", "JPEG")
    (d / "val" / "images").mkdir(parents=True)
    (d / "test" / "images").mkdir(parents=True)  # unlabelled in the real set; the loader ignores it
    lines = []
    for i, c in enumerate(np.random.RandomState(2).permutation(TINY_CLASSES)):
        PIL.fromarray(_tiny_pixels(int(c), 0)).save(d / "val" / "images" / f"val_{i}.JPEG", "JPEG", quality=95)
        lines.append(f"val_{i}.JPEG\t{wnids[c]}\t0\t0\t63\t63")
    (d / "val" / "val_annotations.txt").write_text("\n".join(lines) + "\n")
    return d


# ---- CIFAR ----------------------------------------------------------------------------------------------

def test_cifar10_python2_pickles_through_the_benchmark(tmp_path):
    write_cifar(tmp_path, 10, train_per_class=4, test_per_class=2)
    raw = datasets.load_cifar(str(tmp_path), 10, download=False)
    assert raw.x_train.shape == (40, 3, 32, 32) and raw.x_train.dtype == torch.uint8
    assert raw.y_train.dtype == torch.int64 and raw.x_test.shape == (20, 3, 32, 32)
    assert torch.equal(raw.x_train[:, 0, 0, 0].long(), raw.y_train)  # R plane = label
    assert torch.equal(raw.x_train[:, 1, 0, 0].long(), torch.arange(40))  # batches concatenated in order
    assert raw.x_train[0, 2, 0, 1] == 1 and raw.x_train[0, 2, 1, 0] == 32  # row-major 32x32 planes

    cfg = BenchmarkConfig(name="seq-cifar10", data_root=str(tmp_path), val_fraction=0.25)
    bench = load_benchmark(cfg)
    assert bench.class_order == tuple(np.random.RandomState(1993).permutation(10))
    assert [t.classes for t in bench.tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    order = torch.tensor(bench.class_order)
    seen = []
    for task in bench.tasks:
        for split, per_class in ((task.train, 3), (task.val, 1), (task.test, 2)):
            assert torch.bincount(split.y - task.offset, minlength=2).tolist() == [per_class, per_class]
            assert torch.equal(order[split.y], split.x[:, 0, 0, 0].long())  # remapped label -> original class
        seen += task.train.x[:, 1, 0, 0].tolist() + task.val.x[:, 1, 0, 0].tolist()
    assert sorted(seen) == list(range(40))  # train and val partition the training set


def test_val_per_class_holds_out_of_the_whole_training_pool(tmp_path):
    write_cifar(tmp_path, 10, train_per_class=6, test_per_class=2)
    cfg = BenchmarkConfig(name="seq-cifar10", data_root=str(tmp_path), train_per_class=2, val_per_class=3)
    bench = load_benchmark(cfg)
    pool_ids = set()
    for task in bench.tasks:
        # 3 validated a class although only 2 train: the hold-out comes before train_per_class subsamples.
        assert torch.bincount(task.train.y - task.offset, minlength=2).tolist() == [2, 2]
        assert torch.bincount(task.val.y - task.offset, minlength=2).tolist() == [3, 3]
        train_ids, val_ids = set(task.train.x[:, 1, 0, 0].tolist()), set(task.val.x[:, 1, 0, 0].tolist())
        assert not train_ids & val_ids
        order = torch.tensor(bench.class_order)
        assert torch.equal(order[task.val.y], task.val.x[:, 0, 0, 0].long())  # remapped label -> original class
        pool_ids |= train_ids | val_ids
    assert len(pool_ids) == 50 and pool_ids < set(range(60))
    again = load_benchmark(cfg)
    assert all(torch.equal(a.val.x, b.val.x) and torch.equal(a.train.x, b.train.x)
               for a, b in zip(bench.tasks, again.tasks))
    assert train_images_per_class(cfg) == 2
    with pytest.raises(ConfigError, match=r"val_per_class=6 leaves no training images .*allowed: 1 to 5"):
        load_benchmark(BenchmarkConfig(name="seq-cifar10", data_root=str(tmp_path), val_per_class=6))
    with pytest.raises(ConfigError, match="val_fraction=0.1 and val_per_class=3 both set; allowed: one of them"):
        BenchmarkConfig(name="seq-cifar10", val_fraction=0.1, val_per_class=3)


def test_cifar100_bytes_keys_b50_inc10_natural_order(tmp_path, monkeypatch):
    write_cifar(tmp_path, 100, train_per_class=2, test_per_class=1, py2=False)
    monkeypatch.setenv("INCSWEEP_DATA", str(tmp_path))  # no data_root: the environment variable is the root
    bench = load_benchmark(BenchmarkConfig(name="seq-cifar100", init_classes=50, increment=10, class_order="natural"))
    assert [len(t.classes) for t in bench.tasks] == [50, 10, 10, 10, 10, 10]
    assert bench.class_order == tuple(range(100))
    first, last = bench.tasks[0], bench.tasks[-1]
    assert len(first.train) == 100 and len(first.test) == 50 and len(last.train) == 20 and len(last.test) == 10
    assert torch.equal(last.train.y, last.train.x[:, 0, 0, 0].long())  # fine labels, not coarse ones
    assert set(last.train.y.tolist()) == set(range(90, 100))


def test_cifar_data_root_may_name_the_batches_folder_itself(tmp_path):
    d = write_cifar(tmp_path, 10, train_per_class=1, test_per_class=1)
    assert len(datasets.load_cifar(str(d), 10, download=False).y_train) == 10


def test_missing_cifar_is_one_line_naming_the_path_and_the_fix(tmp_path, monkeypatch):
    d = write_cifar(tmp_path, 10, train_per_class=1, test_per_class=1)
    (d / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError) as err:
        datasets.load_cifar(str(tmp_path), 10, download=False)
    msg = str(err.value)
    assert "\n" not in msg and str(d) in msg and "data_batch_3" in msg
    assert "benchmark.download=true" in msg and "INCSWEEP_DATA" in msg and "benchmark.data_root" in msg
    with pytest.raises(DataNotFoundError, match="cifar-100-python lacks train, test, meta"):
        datasets.load_cifar(str(tmp_path), 100, download=False)
    monkeypatch.delenv("INCSWEEP_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match=r"no data root given .*INCSWEEP_DATA"):
        load_benchmark(BenchmarkConfig(name="seq-cifar10"))


def test_missing_dataset_through_the_cli_is_exit_2(tmp_path, capsys):
    argv = ["run", "--method", "finetune", "--benchmark", "seq-tinyimagenet", "--set", f"benchmark.data_root={tmp_path}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Tiny-ImageNet not found" in err and str(tmp_path) in err
    assert "tiny-imagenet-200.zip" in err


# ---- Tiny-ImageNet -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_master(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny_master")
    write_tiny_imagenet(root)
    return root


@pytest.fixture
def tiny_root(tiny_master, tmp_path) -> Path:
    """A fresh copy of the module's Tiny-ImageNet folder (tests change files and caches)."""
    root = tmp_path / "data"
    shutil.copytree(tiny_master, root)
    return root


def test_tiny_imagenet_through_the_benchmark(tiny_root, tmp_path):
    cache = tmp_path / "cache"
    cfg = BenchmarkConfig(name="seq-tinyimagenet", data_root=str(tiny_root), class_order="natural", val_fraction=0.5)
    bench = load_benchmark(cfg)
    assert len(bench.tasks) == 10 and all(len(t.classes) == 20 for t in bench.tasks)
    task = bench.tasks[0]
    assert task.train.x.shape[1:] == (3, 64, 64) and task.train.x.dtype == torch.uint8
    # classes are sorted wnids (torchvision's ImageFolder order), whatever the order of wnids.txt
    for t in bench.tasks:
        for split in (t.test, t.train, t.val):
            coloured = split.x[:, 0, 0, 0] != 77  # the grey image carries no colour code
            assert torch.equal(_decode_class(split.x[coloured]).long(), split.y[coloured])
        assert sorted(t.test.y.tolist()) == list(t.classes)  # one val image per class is the test split
    grey = bench.tasks[0].train.x[bench.tasks[0].train.x[:, 0, 0, 0] == 77]
    grey_val = bench.tasks[0].val.x[bench.tasks[0].val.x[:, 0, 0, 0] == 77]
    grey = torch.cat([grey, grey_val])
    assert len(grey) == 1 and torch.all(grey == 77)  # greyscale JPEG -> three equal channels
    assert len(bench.tasks[0].train) + len(bench.tasks[0].val) == 20 * 2 + 1
    assert (tiny_root / "tiny-imagenet-200" / "incsweep-uint8-v1.npz").is_file()
    assert not cache.exists()


def test_tiny_imagenet_second_load_uses_the_cache(tiny_root, tmp_path):
    first = datasets.load_tiny_imagenet(str(tiny_root), download=False, cache_dir=tmp_path / "cache")
    d = tiny_root / "tiny-imagenet-200"
    # Break a JPEG: a second load that decoded images again would fail; from the cache it cannot.
    (d / "train" / _wnid(5) / "images" / f"{_wnid(5)}_0.JPEG").write_bytes(b"not a jpeg")
    second = datasets.load_tiny_imagenet(str(tiny_root), download=False, cache_dir=tmp_path / "cache")
    for a, b in zip((first.x_train, first.y_train, first.x_test, first.y_test),
                    (second.x_train, second.y_train, second.x_test, second.y_test)):
        assert torch.equal(a, b)
    # A changed file list makes the cache stale: the images are decoded again (and the broken one is found).
    PIL.fromarray(_tiny_pixels(7, 2)).save(d / "train" / _wnid(7) / "images" / "extra.JPEG", "JPEG")
    with pytest.raises(PIL.UnidentifiedImageError):
        datasets.load_tiny_imagenet(str(tiny_root), download=False, cache_dir=tmp_path / "cache")
    (d / "train" / _wnid(5) / "images" / f"{_wnid(5)}_0.JPEG").unlink()
    third = datasets.load_tiny_imagenet(str(tiny_root), download=False, cache_dir=tmp_path / "cache")
    assert len(third.y_train) == len(first.y_train) and torch.bincount(third.y_train)[[5, 7]].tolist() == [1, 3]


def _unwritable_cache_next_to_data(d: Path) -> None:
    # Root may write anywhere, so simulate a read-only data folder the way it fails: an OSError on writing.
    (d / "incsweep-uint8-v1.npz").mkdir()


def test_tiny_imagenet_cache_falls_back_when_the_data_folder_is_not_writable(tiny_root, tmp_path, monkeypatch):
    d = tiny_root / "tiny-imagenet-200"
    _unwritable_cache_next_to_data(d)
    monkeypatch.setenv("INCSWEEP_CACHE", str(tmp_path / "cache"))
    first = datasets.load_tiny_imagenet(str(tiny_root), download=False)
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1 and "tiny-imagenet-200" in cached[0].name
    for jpeg in (d / "val" / "images").iterdir():
        jpeg.write_bytes(b"")  # decoding again would fail
    assert torch.equal(datasets.load_tiny_imagenet(str(tiny_root), download=False).x_test, first.x_test)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_tiny_imagenet_read_only_folder(tiny_root, tmp_path):
    d = tiny_root / "tiny-imagenet-200"
    d.chmod(0o555)
    try:
        datasets.load_tiny_imagenet(str(tiny_root), download=False, cache_dir=tmp_path / "cache")
        assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    finally:
        d.chmod(0o755)


def test_missing_tiny_imagenet_message(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError) as err:
        datasets.load_tiny_imagenet(str(tmp_path), download=False)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "tiny-imagenet-200") in msg
    assert "wnids.txt" in msg and "benchmark.download=true" in msg and datasets.TINY_IMAGENET_URL in msg
    monkeypatch.delenv("INCSWEEP_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="no data root given"):
        datasets.load_tiny_imagenet(None, download=False)


# ---- Fashion-MNIST (Debian's dataset-fashion-mnist) -------------------------------------------------------

@pytest.mark.skipif(not datasets.FASHION_MNIST_SYSTEM_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_system_copy(monkeypatch):
    monkeypatch.delenv("INCSWEEP_DATA", raising=False)
    raw = datasets.load_fashion_mnist(None, download=False)
    assert raw.x_train.shape == (60000, 1, 28, 28) and raw.x_test.shape == (10000, 1, 28, 28)
    assert torch.bincount(raw.y_train).tolist() == [6000] * 10 and torch.bincount(raw.y_test).tolist() == [1000] * 10
    assert 70 < raw.x_train[:1000].float().mean() < 75  # mean 0.2860 * 255 = 72.9 (benchmarks.py)
    bench = load_benchmark(BenchmarkConfig(train_per_class=5, test_per_class=3))
    assert [len(t.train) for t in bench.tasks] == [10] * 5 and [len(t.test) for t in bench.tasks] == [6] * 5


# ---- bad and hostile CIFAR files: one line naming the file, and no code runs -----------

class _Payload:
    """Unpickling this runs a shell command that creates ``marker`` (what a crafted file can do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("where", ["meta", "train"])
def test_a_planted_pickle_in_a_cifar_root_runs_nothing(tmp_path, where, capsys):
    from incsweep.cli import main

    write_cifar(tmp_path, 100, 2, 1)
    marker = tmp_path / "pwned"
    target = tmp_path / "cifar-100-python" / where
    with open(target, "wb") as fh:
        pickle.dump({"fine_label_names": _Payload(marker), "data": _Payload(marker)}, fh)
    argv = ["run", "--method", "finetune", "--benchmark", "seq-cifar100", "--set", f"benchmark.data_root={tmp_path}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(target) in err and "names posix.system" in err
    assert not marker.exists()  # the command never ran


@pytest.mark.parametrize("content", [b"", os.urandom(64), pickle.dumps([1, 2, 3]),
                                     pickle.dumps({"data": np.zeros((2, 5), np.uint8), "fine_labels": [0, 1]})],
                         ids=["empty", "random-bytes", "not-a-dict", "wrong-shape"])
def test_corrupt_cifar_files_are_one_line_exit_2(tmp_path, content, capsys):
    from incsweep.cli import main

    write_cifar(tmp_path, 100, 2, 1)
    target = tmp_path / "cifar-100-python" / "train"
    target.write_bytes(content)
    argv = ["run", "--method", "finetune", "--benchmark", "seq-cifar100", "--set", f"benchmark.data_root={tmp_path}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(target) in err
