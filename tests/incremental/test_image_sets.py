"""Image sets (incremental/image_sets.py, image_folders.py): ImageNet-100 and mixed-size folders, read
from JPEGs the tests write in ImageNet's layout. The transforms match torchvision's; results do not
depend on the decoding thread count or on the resident/streamed path; memory is counted exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from incsweep.core.errors import ConfigError, DataFormatError, DataNotFoundError
from incsweep.incremental.backbones import build_backbone, count_params
from incsweep.incremental.benchmarks import BenchmarkConfig, load_benchmark
from incsweep.incremental.budget import aligned_exemplars
from incsweep.incremental.census import take_census
from incsweep.incremental.image_folders import IMAGENET100_WNIDS, check_image_set_data
from incsweep.incremental.image_sets import ImageSet, ImageView, TensorImages, crop_box, eval_view, train_view
from incsweep.incremental.run import RunConfig, run, run_plan

sys.path.insert(0, str(Path(__file__).parents[1]))
from image_folder_maker import write_folder  # noqa: E402 - tests/ helper

PIL = pytest.importorskip("PIL.Image")
TF = pytest.importorskip("torchvision.transforms.functional")
REPO = Path(__file__).parents[2]
# ImageNet-100 in miniature: PODNet's 100 wnids, 6 training and 2 validation JPEGs a class of 40-96 px
# (mixed sizes, every 97th greyscale), cropped to 32 px.
PER_CLASS = (6, 2)
SMALL = {"name": "seq-imagenet100", "crop_size": 32, "init_classes": 50, "increment": 25}
TINY_NET = {"backbone": "tiny", "width": 8, "epochs": 2, "lr": 0.05, "batch_size": 32}


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("data") / "imagenet100", IMAGENET100_WNIDS, train_per_class=PER_CLASS[0],
                        test_per_class=PER_CLASS[1], grey_every=97)


def _config(root: Path, method: str = "replay", bench: dict | None = None, **fields) -> RunConfig:
    mc = {**TINY_NET, **({"memory_size": 200} if method == "replay" else {}), **fields}
    return RunConfig.from_dict({"method": method, "benchmark": {**SMALL, "data_root": str(root), **(bench or {})},
                                "method_config": mc})


def _rgb(w: int, h: int, seed: int = 0):
    return PIL.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


# ---- the transforms are torchvision's ------------------------------------------------------------------

@pytest.mark.parametrize("w, h", [(500, 375), (375, 500), (97, 64), (256, 256)])
def test_the_evaluation_view_is_torchvisions_resize_and_centre_crop(w, h):
    img, view = _rgb(w, h), ImageView()
    expected = np.asarray(TF.center_crop(TF.resize(img, 256), 224)).transpose(2, 0, 1)
    assert np.array_equal(eval_view(img, view), expected)


def test_a_training_crop_is_torchvisions_resized_crop_of_its_box():
    img, view = _rgb(300, 200, seed=1), ImageView(size=64, resize=73)
    for seed in range(20):
        left, top, cw, ch = crop_box(300, 200, view, np.random.default_rng([seed, 0]))
        assert 0 <= left and left + cw <= 300 and 0 <= top and top + ch <= 200
        assert 0.08 * 300 * 200 * 0.99 <= cw * ch and 3 / 4 * 0.95 <= cw / ch <= 4 / 3 * 1.05  # scale, ratio
        got = train_view(img, view, np.random.default_rng([seed, 0]), flip=False)
        expected = np.asarray(TF.resized_crop(img, top, left, ch, cw, [64, 64])).transpose(2, 0, 1)
        assert np.array_equal(got, expected)


# ---- an ImageSet stands where a uint8 tensor stands --------------------------------------------------

def test_an_image_set_indexes_and_concatenates_like_a_tensor(imagenet):
    bench = load_benchmark(BenchmarkConfig(**SMALL, data_root=str(imagenet)))
    x, y = bench.tasks[0].train.x, bench.tasks[0].train.y
    assert isinstance(x, ImageSet) and x.shape == (300, 3, 32, 32) and len(x) == len(y) == 300
    views = x.materialize(workers=0)
    assert views.dtype == torch.uint8 and views.shape == (300, 3, 32, 32)
    assert torch.equal(x[5], views[5]) and torch.equal(x[10:20].materialize(), views[10:20])
    mask = (y == 3).numpy()
    assert torch.equal(x[y == 3].materialize(), views[mask]) and torch.equal(x[torch.tensor([7, 2])].materialize(),
                                                                           views[[7, 2]])
    stored = views[:4].clone()
    joined = torch.cat([x[:3], stored])  # a task's images followed by exemplars (with_exemplars)
    assert isinstance(joined, ImageSet) and len(joined) == 7
    assert torch.equal(joined.materialize(), torch.cat([views[:3], stored]))
    assert x.to("cpu") is x  # pixels reach the device batch by batch
    with pytest.raises(ValueError, match="allowed: uint8 images of the set's shape"):
        torch.cat([x[:2], torch.zeros(1, 3, 16, 16, dtype=torch.uint8)])


def test_crops_do_not_depend_on_the_thread_count(imagenet):
    x = load_benchmark(BenchmarkConfig(**SMALL, data_root=str(imagenet))).tasks[0].train.x
    batches, seeds = [torch.arange(0, 40), torch.arange(100, 137), torch.tensor([5, 3])], [11, 12, 13]
    runs = {n: list(x.train_batches(batches, seeds, crop=True, flip=True, workers=n)) for n in (0, 1, 3)}
    for a, b in zip(runs[0], runs[3]):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(runs[0], runs[1]))
    again = list(x.train_batches(batches, [21, 22, 23], crop=True, flip=True, workers=2))
    assert not torch.equal(again[0], runs[0][0])  # another seed, other crops


# ---- runs: identical whichever way the pixels come, learning, exact memory -----------------------------

def test_streamed_and_resident_paths_and_thread_counts_give_identical_runs(imagenet, monkeypatch):
    rows = {}
    for path, workers in (("resident", "0"), ("streamed", "2"), ("streamed", "0")):
        monkeypatch.setenv("INCSWEEP_LOADER_WORKERS", workers)
        result = run(_config(imagenet, bench={"data_path": path, "val_fraction": 0.34}))
        rows[path, workers] = ([t.acc_row for t in result.tasks], [t.val_acc_row for t in result.tasks],
                               result.final.memory)
    assert rows["resident", "0"] == rows["streamed", "2"] == rows["streamed", "0"]


def test_replay_learns_imagenet100_and_its_exemplars_cost_3_x_s_x_s_bytes(imagenet):
    cfg = _config(imagenet, bench={"augment": False}, epochs=10, width=16)
    result = run(cfg)  # the engine's census checks every memory() report against what the method holds
    acc = [t.acc_row for t in result.tasks]
    assert acc[0][0] > 0.3  # 50 classes: chance is 0.02
    assert min(acc[-1]) > 0.3  # old tasks kept by replay
    mem = result.final.memory
    assert mem.n_exemplars == 200 and mem.exemplar_bytes == 200 * 3 * 32 * 32
    assert result.final.memory.total_bytes == run_plan(cfg).report().total_bytes  # plan() exact


def test_a_resumed_run_continues_exactly(imagenet, tmp_path):
    cfg = _config(imagenet, bench={"data_path": "streamed"})
    whole = run(cfg)
    run(cfg, checkpoint_dir=tmp_path, stop_after=1)
    resumed = run(cfg, checkpoint_dir=tmp_path)
    assert [t.acc_row for t in resumed.tasks] == [t.acc_row for t in whole.tasks]
    assert resumed.final.memory == whole.final.memory


def test_the_census_counts_images_an_image_set_names():
    """A method keeping a lazy reference to training images holds them: each costs C x S x S once."""
    view = ImageView(size=8, resize=9)
    source = TensorImages(torch.zeros(10, 3, 8, 8, dtype=torch.uint8))

    class Holder:
        pass

    files = ImageSet.of(_FakeFiles(50), view)
    holder = Holder()
    holder.kept = [files[:20], files[10:30]]  # overlapping: images 10..19 once
    assert take_census(holder).total == 30 * 3 * 8 * 8
    holder.kept = torch.cat([files[:5], source.x[:2]])  # names 5 files and stores a 10-image tensor
    assert take_census(holder).total == 5 * 3 * 8 * 8 + source.x.numel()


class _FakeFiles:
    """A source of ``n`` images that are never opened (the census does not decode)."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n


# ---- the layout, one-line errors ----------------------------------------------------------------------

def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "incsweep", *args], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, **(env or {})}, timeout=600)


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_layout_errors_are_one_line_and_caught_before_training(imagenet, tmp_path):
    missing = _copy(imagenet, tmp_path / "missing")
    for f in (missing / "val" / IMAGENET100_WNIDS[7]).iterdir():
        f.unlink()
    (missing / "val" / IMAGENET100_WNIDS[7]).rmdir()
    with pytest.raises(DataNotFoundError, match=f"{missing / 'val' / IMAGENET100_WNIDS[7]} is missing"):
        BenchmarkConfig(**SMALL, data_root=str(missing))

    corrupt = _copy(imagenet, tmp_path / "corrupt")
    bad = corrupt / "train" / IMAGENET100_WNIDS[3] / f"{IMAGENET100_WNIDS[3]}_train_1.JPEG"
    bad.write_bytes(b"\xff\xd8 not really a JPEG")
    with pytest.raises(DataFormatError, match=f"{bad}: not a readable image"):
        BenchmarkConfig(**SMALL, data_root=str(corrupt))  # every header is read before anything trains
    out = _cli("run", "--benchmark", "seq-imagenet100", "--data-root", str(corrupt), "--set", "benchmark.crop_size=32")
    errors = [line for line in out.stderr.splitlines() if "error" in line]
    assert out.returncode == 2 and len(errors) == 1 and str(bad) in errors[0], out.stderr
    assert "task" not in out.stdout  # nothing trained

    # a JPEG whose header is whole but whose data is cut: found when it is decoded, still one line
    truncated = _copy(imagenet, tmp_path / "truncated")
    cut = truncated / "val" / IMAGENET100_WNIDS[1] / f"{IMAGENET100_WNIDS[1]}_val_0.JPEG"
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the header (tables, size) whole, half the scan data gone
    cfg = _config(truncated, bench={"data_path": "streamed"}, epochs=1)
    with pytest.raises(DataFormatError, match=f"{cut}: not a readable image"):
        run(cfg)

    empty = tmp_path / "empty"
    empty.mkdir()
    nowhere = BenchmarkConfig(**SMALL, data_root=str(empty))  # no ImageNet here: `incsweep budget` still works
    assert nowhere.spec.class_counts == (1300,) * 100
    with pytest.raises(DataNotFoundError, match="holds no train/ and val/ folders"):
        load_benchmark(nowhere)
    with pytest.raises(DataNotFoundError, match="holds no train/ and val/ folders"):
        check_image_set_data(nowhere)  # a study's pre-flight


def test_podnet_split_files_choose_the_images(imagenet, tmp_path):
    root = _copy(imagenet, tmp_path / "split")
    lines = {"train_100.txt": [], "val_100.txt": []}
    for k, wnid in enumerate(IMAGENET100_WNIDS):
        lines["train_100.txt"] += [f"train/{wnid}/{wnid}_train_{i}.JPEG {k}" for i in range(4)]  # 4 of the 6
        lines["val_100.txt"].append(f"val/{wnid}/{wnid}_val_0.JPEG {k}")
    for name, text in lines.items():
        (root / name).write_text("\n".join(text) + "\n")
    cfg = BenchmarkConfig(**SMALL, data_root=str(root))
    assert cfg.spec.class_counts == (4,) * 100
    bench = load_benchmark(cfg)
    assert sum(len(t.train) for t in bench.tasks) == 400 and sum(len(t.test) for t in bench.tasks) == 100

    lines["train_100.txt"][0] = "train/n09999999/n09999999_1.JPEG 0"
    (root / "train_100.txt").write_text("\n".join(lines["train_100.txt"]) + "\n")
    with pytest.raises(DataFormatError, match="train_100.txt:1: class n09999999 is not one of ImageNet-100's"):
        BenchmarkConfig(**SMALL, data_root=str(root))
    wnid = IMAGENET100_WNIDS[9]
    lines["train_100.txt"][0] = f"train/{IMAGENET100_WNIDS[0]}/{IMAGENET100_WNIDS[0]}_train_0.JPEG 0"
    (root / "train_100.txt").write_text("\n".join(lines["train_100.txt"]) + "\n")
    import shutil

    shutil.rmtree(root / "train" / wnid)
    with pytest.raises(DataNotFoundError, match=f"train_100.txt:37 names class {wnid}, but .* is missing"):
        BenchmarkConfig(**SMALL, data_root=str(root))


def test_bad_settings_are_one_line(imagenet, monkeypatch):
    monkeypatch.setenv("INCSWEEP_LOADER_WORKERS", "many")
    with pytest.raises(ConfigError, match="INCSWEEP_LOADER_WORKERS='many'; allowed: a whole number"):
        run(_config(imagenet))
    monkeypatch.delenv("INCSWEEP_LOADER_WORKERS")
    with pytest.raises(ConfigError, match="crop_size=32 applies to image-set benchmarks only"):
        BenchmarkConfig(name="synthetic", crop_size=32)
    with pytest.raises(ConfigError, match="takes a random resized crop of the original image"):
        RunConfig.from_dict({"benchmark": {"name": "synthetic"}, "augment_policy": "imagenet"})
    with pytest.raises(ConfigError, match="an image-set benchmark takes resized crops instead"):
        RunConfig.from_dict({"benchmark": {"name": "seq-imagenet100"}, "augment_policy": "cifar"})
    with pytest.raises(ConfigError, match="data_path"):
        BenchmarkConfig(name="seq-imagenet100", data_path="mmap")


# ---- the paper configs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, tasks", [("imagenet100_b0_inc10", 10), ("imagenet100_b50_inc10", 6),
                                         ("imagenet100_b50_inc5", 11)])
def test_budget_prints_the_papers_aligned_exemplars(name, tasks, tmp_path):
    """MEMO's aligned budget for ResNet-18 at 3x224x224 bytes an exemplar, computed here from the
    backbone's own parameter counts (layer4 per task), against what `incsweep budget` prints."""
    out = _cli("budget", "--config", f"configs/memo/{name}.yaml", "--set", "device=cpu", "--json",
               env={"INCSWEEP_DATA": str(tmp_path)})  # no data here: ImageNet's nominal counts
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    net = build_backbone("resnet18", 3)
    p = count_params(net)
    # layer4 of the torchvision layout: the last two of its eight residual blocks
    s = sum(q.numel() for n, q in net.named_parameters() if n.startswith(("blocks.6.", "blocks.7.")))
    assert s == 8_393_728  # torchvision's resnet18().layer4
    expected = aligned_exemplars(base=2000, n_tasks=tasks, backbone_params=p, kept_params=(p - s) + tasks * s,
                                 image_bytes=3 * 224 * 224)
    assert plan["bytes_per_exemplar"] == 150528 and plan["exemplar_total"] == expected
    assert expected == 2000 + (tasks * p - ((p - s) + tasks * s)) * 4 // 150528


def test_the_paper_config_runs_on_the_imagenet_layout(imagenet, tmp_path):
    """`incsweep run --config configs/memo/imagenet100_b0_inc10.yaml --data-root DIR`, shrunk for a CPU
    (32 px crops, a narrow ResNet-18, few epochs): every task runs, MEMO learns, memory is exact."""
    out = _cli("run", "--config", "configs/memo/imagenet100_b0_inc10.yaml", "--data-root", str(imagenet),
               "--set", "device=cpu", "--set", "benchmark.crop_size=32", "--set", "benchmark.augment=false",
               "--set", "width=8", "--set", "init_epochs=8", "--set", "epochs=4", "--set", "init_milestones=[]",
               "--set", "milestones=[]", "--set", "lr=0.05", "--set", "init_lr=0.05", "--set", "batch_size=32",
               "--out", str(tmp_path / "result.json"))
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads((tmp_path / "result.json").read_text())
    tasks = result["tasks"]
    assert len(tasks) == 10 and tasks[0]["acc_row"][0] >= 0.2  # 10 classes, 60 images: chance 0.1 (0.3 here)
    assert tasks[-1]["seen_acc"] > 0.2  # 100 classes: chance 0.01 (0.44 here)
    mem = tasks[-1]["memory"]
    assert mem["exemplar_bytes"] == mem["n_exemplars"] * 3 * 32 * 32 and mem["n_exemplars"] == 600  # all 6 a class fit


def test_a_study_over_imagenet100_runs(imagenet, tmp_path):
    """`incsweep study run` (embedded Ray, Tune, Optuna, the Parquet sink) over the streamed folder."""
    import pyarrow.parquet as pq
    import yaml

    spec = {"name": "in100", "storage": str(tmp_path / "study"), "methods": ["replay"], "trials": 2, "concurrency": 2,
            "benchmark": {**SMALL, "data_root": str(imagenet), "val_fraction": 0.34, "data_path": "streamed"},
            "search": {"replay": {**TINY_NET, "memory_size": {"low": 50, "high": 300}}}}
    path = tmp_path / "in100.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = _cli("study", "run", str(path), env={"INCSWEEP_LOADER_WORKERS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    rows = pq.read_table(tmp_path / "study" / "results").to_pylist()
    final = [r for r in rows if r["is_final"]]
    assert len(final) == 2 and len(rows) == 2 * 3 + 2  # 3 tasks a trial, and each trial's final row
    for r in final:
        assert r["exemplar_bytes"] == r["n_exemplars"] * 3 * 32 * 32 > 0
        assert r["n_exemplars"] <= r["param_memory_size"] and 0 < r["test_avg_acc"] <= 1
