"""Bring-your-own-data benchmarks (incremental/file_benchmarks.py): real .npz files and image-folder
trees written here, run by a real method; bad files fail with one line naming the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from incsweep.core.errors import ConfigError, DataFormatError
from incsweep.incremental.benchmarks import BenchmarkConfig, load_benchmark
from incsweep.incremental.prefix_cache import prefix_key
from incsweep.incremental.run import RunConfig, run

PIL = pytest.importorskip("PIL.Image")


def class_images(n_classes: int, per_class: int, size: int, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Separable images: class c is a bright square in the c-th cell of a grid, plus noise (N, H, W, C)."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), per_class)
    x = rng.integers(0, 60, size=(len(y), size, size, channels)).astype(np.uint8)
    cell = size // 4
    for i, c in enumerate(y):
        r, q = divmod(int(c), 4)
        x[i, r * cell:(r + 1) * cell, q * cell:(q + 1) * cell] = 220
    return x, y


def write_npz(path: Path, n_classes: int = 4, size: int = 16, channels: int = 3, seed: int = 0, **replace) -> Path:
    x_tr, y_tr = class_images(n_classes, 20, size, channels, seed)
    x_te, y_te = class_images(n_classes, 6, size, channels, seed + 1)
    arrays = {"x_train": x_tr, "y_train": y_tr, "x_test": x_te, "y_test": y_te}
    arrays.update(replace)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def write_folder(root: Path, n_classes: int = 4, size: int = 16, mode: str = "L", per_class=(12, 4)) -> Path:
    for split, n, seed in (("train", per_class[0], 0), ("test", per_class[1], 1)):
        x, y = class_images(n_classes, n, size, 1 if mode == "L" else 3, seed)
        for i, (img, c) in enumerate(zip(x, y)):
            folder = root / split / f"class_{c:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            PIL.fromarray(img[..., 0] if mode == "L" else img, mode=mode).save(folder / f"{i:04d}.png")
    return root


def tiny_run(bench: dict, method: str = "finetune", **fields) -> RunConfig:
    mc = {"backbone": "tiny", "width": 8, "epochs": 4, "batch_size": 16, "lr": 0.05, **fields}
    return RunConfig.from_dict({"method": method, "benchmark": bench, "method_config": mc})


def test_npz_spec_comes_from_the_data(tmp_path):
    path = write_npz(tmp_path / "four.npz", channels=3)
    cfg = BenchmarkConfig(name="npz", data_root=str(path), augment=False)
    spec = cfg.spec
    x = np.load(path)["x_train"].astype(np.float64) / 255
    assert spec.n_classes == 4 and spec.image_shape == (3, 16, 16)
    np.testing.assert_allclose(spec.mean, x.mean(axis=(0, 1, 2)), rtol=1e-9)
    np.testing.assert_allclose(spec.std, x.std(axis=(0, 1, 2), ddof=1), rtol=1e-9)
    assert cfg.task_sizes == (2, 2) and len(spec.fingerprint) == 32
    b = load_benchmark(cfg)
    assert [len(t.train) for t in b.tasks] == [40, 40] and b.tasks[0].train.x.dtype == torch.uint8


def test_a_method_learns_an_npz_benchmark_and_counts_its_real_bytes(tmp_path):
    path = write_npz(tmp_path / "gray.npz", n_classes=6, size=12, channels=1)
    cfg = tiny_run({"name": "npz", "data_root": str(path), "augment": False}, method="replay", memory_size=12)
    result = run(cfg)
    assert len(result.tasks) == 3  # 6 classes in tasks of 2
    assert result.final.test.avg_acc > 1 / 3  # above a one-task guess: it learns the data
    mem = result.final.memory
    assert mem.n_exemplars == 12 and mem.exemplar_bytes == 12 * 1 * 12 * 12  # uint8 bytes of a 1x12x12 image


def test_image_folder_benchmark(tmp_path):
    root = write_folder(tmp_path / "imgs", n_classes=5, size=20, mode="L")
    cfg = BenchmarkConfig(name="image_folder", data_root=str(root), augment=False)
    assert cfg.spec.n_classes == 5 and cfg.spec.image_shape == (1, 20, 20)
    assert cfg.task_sizes == (3, 2)  # an odd class count: the first task takes three
    b = load_benchmark(cfg)
    assert sum(len(t.train) for t in b.tasks) == 60 and sum(len(t.test) for t in b.tasks) == 20
    rgb = write_folder(tmp_path / "rgb", n_classes=4, size=16, mode="RGB")
    assert BenchmarkConfig(name="image_folder", data_root=str(rgb)).spec.image_shape == (3, 16, 16)
    result = run(tiny_run({"name": "image_folder", "data_root": str(root), "augment": False}))
    assert result.complete and result.final.test.avg_acc > 0.2


def test_relative_data_root_is_made_absolute(tmp_path, monkeypatch):
    write_npz(tmp_path / "rel.npz")
    monkeypatch.chdir(tmp_path)
    cfg = BenchmarkConfig(name="npz", data_root="rel.npz")
    assert cfg.data_root == str(tmp_path / "rel.npz")  # a Ray worker's working directory is its trial's


def test_the_prefix_key_follows_the_bytes_not_the_path(tmp_path):
    path = write_npz(tmp_path / "d.npz", seed=0)
    cfg = tiny_run({"name": "npz", "data_root": str(path)})
    before = (cfg.benchmark.spec.fingerprint, prefix_key(cfg, 1, "v"))
    write_npz(path, seed=5)  # same path, other images
    after = (cfg.benchmark.spec.fingerprint, prefix_key(cfg, 1, "v"))
    assert before[0] != after[0] and before[1] != after[1]


BAD_NPZ = {
    "missing key": ({"y_test": None}, "lacks ['y_test']"),
    "float images": ({"x_train": np.zeros((80, 16, 16, 3), np.float32)}, "x_train is float32; allowed: uint8"),
    "label out of range": ({"y_test": np.r_[np.zeros(23, np.int64), 9]}, "y_test holds label 9, out of range"),
    "negative label": ({"y_train": np.r_[np.repeat(np.arange(4), 20)[:-1], -1]}, "y_train holds label -1, out of range"),
    "class without training images": ({"y_train": np.repeat([0, 1, 3, 3], 20)}, "class 2 has no training images"),
    "label count": ({"y_train": np.zeros(5, np.int64)}, "y_train holds 5 labels for 80 images"),
    # a label of 2^40 used to allocate 8.8 TB of class counters
    "huge label": ({"y_train": np.r_[np.repeat(np.arange(4), 20)[:-1], 2**40]},
                   "y_train holds label 1099511627776 but only 80 training images"),
    "odd shape": ({"x_train": np.zeros((80, 16, 16, 5), np.uint8)}, "allowed: (N, H, W), (N, C, H, W)"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPZ))
def test_bad_npz_is_one_line_naming_the_file(tmp_path, case):
    replace, message = BAD_NPZ[case]
    path = write_npz(tmp_path / "bad.npz", **replace)
    with pytest.raises(DataFormatError) as err:
        BenchmarkConfig(name="npz", data_root=str(path))
    text = str(err.value)
    assert message in text and str(path) in text and "\n" not in text


def test_a_folder_of_mixed_sizes_is_an_image_set(tmp_path):
    """One image of another size made the whole folder an error; now the folder is read as an image
    set (crops of S x S, 224 by default) instead of one tensor."""
    mixed = write_folder(tmp_path / "mixed")
    odd = mixed / "train" / "class_01" / "0003.png"
    PIL.fromarray(np.zeros((17, 16), np.uint8), mode="L").save(odd)
    spec = BenchmarkConfig(name="image_folder", data_root=str(mixed)).spec
    assert spec.view is not None and spec.image_shape == (1, 224, 224)  # all greyscale: one channel
    small = BenchmarkConfig(name="image_folder", data_root=str(mixed), crop_size=12).spec
    assert small.image_shape == (1, 12, 12) and small.view.resize == round(12 * 256 / 224)
    same = write_folder(tmp_path / "same")
    assert BenchmarkConfig(name="image_folder", data_root=str(same)).spec.view is None  # one size: one tensor, as before


def test_bad_image_folders_name_the_file(tmp_path):
    empty = write_folder(tmp_path / "empty")
    for f in (empty / "test" / "class_02").iterdir():
        f.unlink()
    with pytest.raises(DataFormatError, match="class_02: class 'class_02' has no test images"):
        BenchmarkConfig(name="image_folder", data_root=str(empty))

    stray = write_folder(tmp_path / "stray")
    (stray / "test" / "class_99").mkdir()
    with pytest.raises(DataFormatError, match="class 'class_99' is not among the training classes"):
        BenchmarkConfig(name="image_folder", data_root=str(stray))

    broken = write_folder(tmp_path / "broken")
    (broken / "train" / "class_00" / "9999.png").write_bytes(b"not a png")
    with pytest.raises(DataFormatError, match="9999.png: not a readable image"):
        BenchmarkConfig(name="image_folder", data_root=str(broken))


@pytest.mark.parametrize("side, what", [(40, "warning band"), (64, "refused by PIL")])
def test_an_image_over_the_pixel_limit_is_one_line(tmp_path, monkeypatch, recwarn, side, what):
    """A 400-megapixel JPEG raised PIL's DecompressionBombError as a traceback; PIL's limit is
    lowered here (1,000 pixels) so the test writes small files: 40x40 is in PIL's warning band, 64x64
    beyond twice the limit."""
    import PIL.Image

    folder = write_folder(tmp_path / "big")
    big = folder / "train" / "class_00" / "0000.png"
    PIL.Image.fromarray(np.zeros((side, side), np.uint8), mode="L").save(big)
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataFormatError) as err:
        BenchmarkConfig(name="image_folder", data_root=str(folder))
    text = str(err.value)
    assert str(big) in text and "allowed: images up to 1000 pixels" in text and "\n" not in text, (what, text)
    # and only that line: not PIL's warning as well (its band, between the limit and twice it)
    assert not [w for w in recwarn if issubclass(w.category, PIL.Image.DecompressionBombWarning)], what


def test_file_benchmark_needs_a_data_root():
    with pytest.raises(ConfigError, match="benchmark 'npz' needs benchmark.data_root"):
        BenchmarkConfig(name="npz")


def test_cli_runs_an_npz_and_refuses_a_bad_one(tmp_path):
    good = write_npz(tmp_path / "good.npz")
    cmd = [sys.executable, "-m", "incsweep.cli", "run", "--benchmark", "npz", "--data-root", str(good),
           "--set", "backbone=tiny", "--set", "width=4", "--set", "batch_size=16"]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert "class-IL: average incremental accuracy" in ok.stdout
    bad = write_npz(tmp_path / "bad.npz", y_test=np.r_[np.zeros(23, np.int64), 7])
    cmd[7] = str(bad)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and str(bad) in out.stderr and "out of range" in out.stderr
