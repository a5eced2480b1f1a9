"""Engine units against hand-computed values: metrics, memory anchors, budgets, herding, class order,
config validation, --set parsing, the exemplar helpers, and what a seed and a checkpoint mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from incsweep.core.configs import parse_override
from incsweep.core.errors import ConfigError, DataNotFoundError
from incsweep.core.metrics import backward_transfer, compute_metrics, forgetting
from incsweep.incremental.api import kd_loss
from incsweep.incremental.backbones import build_backbone, count_params
from incsweep.incremental.benchmarks import BenchmarkConfig, class_order, load_benchmark
from incsweep.incremental.budget import (
    aligned_exemplars,
    exemplars_for_budget,
    planned_exemplars,
    quota,
    train_images_per_class,
)
from incsweep.incremental.exemplars import herding_order
from incsweep.incremental.memory import MB, module_bytes
from incsweep.incremental.methods._exemplar import (
    ExemplarMemory,
    class_means,
    nme_logits,
    rehearsal_ce,
)
from incsweep.incremental.prefix_cache import prefix_key
from incsweep.incremental.run import RunConfig, run, with_overrides

# ---- metrics (docs/protocols.md definitions) ---------------------------------------------------------
ACC = [[0.5], [0.9, 0.8], [0.6, 0.7, 0.9]]  # task 0 improves after task 1, then is forgotten


def test_forgetting_and_bwt_by_hand():
    # forgetting: j=0: max(0.5, 0.9) - 0.6 = 0.3; j=1: 0.8 - 0.7 = 0.1 -> 0.2
    assert forgetting(ACC) == pytest.approx(0.2)
    # BWT: j=0: 0.6 - 0.5 = 0.1; j=1: 0.7 - 0.8 = -0.1 -> 0.0
    assert backward_transfer(ACC) == pytest.approx(0.0)
    m = compute_metrics(ACC, [0.5, 0.85, 0.7])
    assert (m.avg_acc, m.last_acc) == (pytest.approx(2.05 / 3), 0.7)
    # the final row is not part of the max: a task learnt only now cannot be forgotten yet
    assert forgetting([[0.2], [0.1, 1.0]]) == pytest.approx(0.1)


def test_metrics_after_one_task_and_none():
    m = compute_metrics([[0.7]], [0.7])
    assert (m.avg_acc, m.last_acc, m.forgetting, m.bwt) == (0.7, 0.7, 0.0, 0.0)
    assert all(math.isnan(v) for v in compute_metrics([], []).as_dict().values())


# ---- memory anchors (docs/protocols.md) ---------------------------------------------------------------
def test_resnet32_anchor_and_603_images():
    bb = build_backbone("resnet32", 3)
    assert count_params(bb) == 463_504
    assert count_params(bb) * 4 // 3072 == 603  # one ResNet-32 costs 603 CIFAR images
    assert module_bytes(bb) > 463_504 * 4  # BN running statistics are stored too


def test_module_bytes_counts_stored_dtypes_and_skips_batch_counter():
    assert module_bytes(nn.Linear(3, 2)) == (6 + 2) * 4
    assert module_bytes(nn.BatchNorm2d(5)) == 4 * 5 * 4  # weight, bias, running mean, running var
    assert module_bytes(nn.Linear(3, 2).double()) == (6 + 2) * 8


def test_aligned_formula_and_total_mb():
    p, img = 463_504, 3072
    assert aligned_exemplars(base=2000, n_tasks=10, backbone_params=p, kept_params=p, image_bytes=img) \
        == 2000 + (9 * p * 4) // img == 7431
    assert aligned_exemplars(base=2000, n_tasks=10, backbone_params=p, kept_params=10 * p, image_bytes=img) == 2000  # DER
    assert exemplars_for_budget(10.0, 1_889_104, img) == (10 * MB - 1_889_104) // img
    assert exemplars_for_budget(1.0, 2 * MB, img) == 0


# ---- herding --------------------------------------------------------------------------------
def _greedy_reference(f: np.ndarray, m: int) -> list[int]:
    """iCaRL's greedy rule by exhaustive search over the remaining candidates at every step."""
    mu, chosen = f.mean(0), []
    for k in range(1, m + 1):
        best, best_d = None, math.inf
        for i in range(len(f)):
            if i in chosen:
                continue
            d = float(np.linalg.norm(mu - (f[chosen].sum(0) + f[i]) / k))
            if d < best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_herding_matches_brute_force_greedy(seed):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(9, 4, generator=g, dtype=torch.float64)
    f = f / f.norm(dim=1, keepdim=True)
    order = herding_order(f, 6).tolist()
    assert order == _greedy_reference(f.numpy(), 6)
    assert len(set(order)) == 6
    assert herding_order(f, 20).tolist() == _greedy_reference(f.numpy(), 9)  # m > n: every sample once


def test_exemplar_memory_shrinks_to_herding_prefix(tiny_run_config):
    bench = load_benchmark(tiny_run_config("finetune").benchmark)
    feature = lambda x: x.float().flatten(1)  # noqa: E731 - a fixed, model-free feature map
    mem = ExemplarMemory(total=12, per_class=0)
    mem.update(bench.tasks[0], feature)
    x0, y0 = mem.data()
    assert len(mem) == 12 and mem.nbytes == 12 * 16 * 16 * 3  # 2 classes x 12 // 2
    first = {c: x0[y0 == c] for c in (0, 1)}
    mem.update(bench.tasks[1], feature)  # 4 classes seen: 3 each
    x1, y1 = mem.data()
    assert torch.bincount(y1).tolist() == [3, 3, 3, 3]
    for c in (0, 1):
        assert torch.equal(x1[y1 == c], first[c][:3])
    cls2 = bench.tasks[1].train.x[bench.tasks[1].train.y == 2]
    want = herding_order(F.normalize(feature(cls2), dim=1), 3)
    assert torch.equal(x1[y1 == 2], cls2[want])
    assert quota(None, 7, 100) == 7 and quota(2000, 20, 30) == 66


def test_planned_exemplars_cap_at_available_images(tiny_run_config):
    cfg = tiny_run_config("finetune").benchmark  # 24 images per class, a quarter held out
    assert train_images_per_class(cfg) == 18
    assert planned_exemplars(60, 0, cfg) == 6 * 10
    assert planned_exemplars(6000, 0, cfg) == 6 * 18  # a class cannot give more than it has
    assert planned_exemplars(None, 5, cfg) == 30
    bench = load_benchmark(cfg)
    assert all(int(n) == 18 for t in bench.tasks for n in torch.bincount(t.train.y)[t.offset:])


def test_train_images_per_class_of_real_fashion_mnist():
    cfg = BenchmarkConfig(name="seq-fashionmnist", val_fraction=0.1)
    try:
        bench = load_benchmark(cfg)
    except DataNotFoundError:
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    counts = torch.cat([torch.bincount(t.train.y)[t.offset:] for t in bench.tasks])
    assert counts.tolist() == [train_images_per_class(cfg)] * 10 == [5400] * 10


def test_val_per_class_on_synthetic_data_keeps_the_training_size_and_the_exemplar_plan():
    cfg = BenchmarkConfig(name="synthetic", train_per_class=8, val_per_class=20, n_classes=4, image_size=8)
    bench = load_benchmark(cfg)
    for task in bench.tasks:
        assert torch.bincount(task.train.y)[task.offset:].tolist() == [8, 8] == [train_images_per_class(cfg)] * 2
        assert torch.bincount(task.val.y)[task.offset:].tolist() == [20, 20]
        flat = torch.cat([task.train.x, task.val.x]).flatten(1)
        assert len(torch.unique(flat, dim=0)) == len(flat)  # no image both trained on and validated on
    # The validation split enters the prefix cache's key like every other benchmark field.
    base = RunConfig.from_dict({"method": "finetune", "benchmark": {"name": "synthetic", "val_fraction": 0.25}})
    held = RunConfig.from_dict({"method": "finetune", "benchmark": {"name": "synthetic", "val_per_class": 15}})
    assert prefix_key(base, 1, "v") != prefix_key(held, 1, "v")


def test_class_means_and_nme():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([0, 0, 1])
    means = class_means(lambda v: v, x, y, 3)
    assert torch.allclose(means, torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), atol=1e-6)
    q = torch.tensor([[0.9, 0.1], [0.2, 5.0]])
    logits = nme_logits(q, means)
    assert logits.argmax(1).tolist() == [0, 1]
    unit = F.normalize(q, dim=1)
    assert torch.allclose(logits, -torch.cdist(unit, means).square(), atol=1e-6)


def test_rehearsal_ce_task_il_uses_each_samples_own_task():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, generator=g)
    y = torch.tensor([0, 3, 5, 2])
    got = rehearsal_ce(logits, y, 6, "task_il", (2, 2, 2))
    want = torch.stack([F.cross_entropy(logits[i : i + 1, lo : lo + 2], y[i : i + 1] - lo)
                        for i, lo in enumerate([0, 2, 4, 2])]).mean()
    assert torch.allclose(got, want)
    assert torch.allclose(rehearsal_ce(logits, y, 6, "class_il", (2, 2, 2)), F.cross_entropy(logits, y))


def test_kd_loss_is_pycil_soft_cross_entropy():
    a, b = torch.tensor([[1.0, 2.0, 0.5]]), torch.tensor([[0.0, 3.0, 1.0]])
    q = torch.softmax(b / 2, 1)
    assert torch.allclose(kd_loss(a, b, 2.0), -(q * torch.log_softmax(a / 2, 1)).sum())
    # minimised (over a) where a's tempered softmax equals b's
    assert kd_loss(b, b, 2.0) < kd_loss(a, b, 2.0)


# ---- class order, configs, overrides ---------------------------------------------------------
def test_class_order_seed1993_cifar100():
    assert class_order(BenchmarkConfig(name="seq-cifar100"))[:5].tolist() == [68, 56, 78, 8, 23]
    assert class_order(BenchmarkConfig(name="seq-cifar100", class_order="natural"))[:3].tolist() == [0, 1, 2]


def test_config_errors_name_field_and_allowed_values():
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['lrr'\]; allowed: \[.*'lr'"):
        RunConfig.from_dict({"method": "replay", "method_config": {"lrr": 0.1}})
    with pytest.raises(ConfigError, match=r"lr=20.0 is out of range; allowed \[1e-06, 10.0\]"):
        RunConfig.from_dict({"method": "replay", "method_config": {"lr": 20}})
    with pytest.raises(ConfigError, match=r"memory_size=-1 is out of range; allowed \[0, None\]"):
        RunConfig.from_dict({"method": "icarl", "method_config": {"memory_size": -1}})
    with pytest.raises(ConfigError, match=r"classifier='knn' is not allowed; choose one of \['nme', 'cnn'\]"):
        RunConfig.from_dict({"method": "icarl", "method_config": {"classifier": "knn"}})
    with pytest.raises(ConfigError, match="scenario='task_il' is not supported by icarl"):
        RunConfig.from_dict({"method": "icarl", "scenario": "task_il"})
    with pytest.raises(ConfigError, match="budget=total_mb needs memory_mb > 0"):
        RunConfig.from_dict({"method": "replay", "method_config": {"budget": "total_mb"}})
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        RunConfig.from_dict({"method": "nope"})
    with pytest.raises(ConfigError, match=r"precision='fp16' is not allowed; choose one of \['fp32', 'bf16'\]"):
        RunConfig.from_dict({"precision": "fp16"})
    with pytest.raises(ConfigError, match=r"precision='bf16' needs device=cuda \(got device='cpu'\)"):
        RunConfig.from_dict({"precision": "bf16"})


def test_set_overrides_reach_method_benchmark_and_top_level():
    data = with_overrides({"method": "replay"}, ["lr=0.05", "benchmark.train_per_class=200", "milestones=[2, 4]",
                                                 "seed=3", "benchmark.augment=false", "retrain=true"])
    assert data == {"method": "replay", "seed": 3,
                    "method_config": {"lr": 0.05, "milestones": [2, 4], "retrain": True},
                    "benchmark": {"train_per_class": 200, "augment": False}}
    assert parse_override("a.b=") == (["a", "b"], None)
    for bad in ("lr", "=3", "a..b=1", "lr=[1, 2"):
        with pytest.raises(ConfigError, match="--set"):
            parse_override(bad)
    cfg = RunConfig.from_dict(with_overrides({"method": "replay"}, ["memory_size=500", "benchmark.name=synthetic",
                                                                    "weight_decay=5e-4"]))
    assert cfg.method_config.memory_size == 500 and cfg.benchmark.name == "synthetic"
    assert cfg.method_config.weight_decay == 5e-4  # YAML 1.1 reads "5e-4" as a string; float fields accept it
    with pytest.raises(ConfigError, match="weight_decay='lots' must be a number"):
        RunConfig.from_dict(with_overrides({"method": "replay"}, ["weight_decay=lots"]))


# ---- runs ---------------------------------------------------------------------------------
def test_synthetic_data_is_learnable(tiny_run_config, tiny_net):
    """A tiny net learns task 0 (2 classes, chance 0.5) far above chance in ~40 SGD steps, for every seed."""
    for seed in (0, 1):
        cfg = tiny_run_config("finetune", benchmark={"train_per_class": 60, "test_per_class": 20}, seed=seed,
                              **{**tiny_net, "epochs": 6, "lr": 0.05})
        first = run(cfg, stop_after=1).tasks[0]
        assert first.seen_acc >= 0.85 and first.val_seen_acc >= 0.85, (seed, first.acc_row, first.val_acc_row)


def test_seed_matters_and_a_foreign_checkpoint_is_refused(tiny_run_config, tiny_net, tmp_path):
    from incsweep.incremental.run import CHECKPOINT_FILE, load_checkpoint

    for seed in (0, 1):
        run(tiny_run_config("replay", seed=seed, memory_size=12, **tiny_net), checkpoint_dir=tmp_path / str(seed),
            stop_after=1)
    nets = [load_checkpoint(tmp_path / str(seed) / CHECKPOINT_FILE)["method"]["net"] for seed in (0, 1)]
    assert not torch.equal(nets[0]["backbone.stem.conv.weight"], nets[1]["backbone.stem.conv.weight"])
    with pytest.raises(ConfigError, match="different config"):
        run(tiny_run_config("replay", seed=1, memory_size=12, **tiny_net), checkpoint_dir=tmp_path / "0")


def test_icarl_keeps_the_old_model_only_while_training(tiny_run_config, tiny_net):
    from incsweep.incremental.run import build_method

    cfg = tiny_run_config("icarl", memory_size=12, **tiny_net)
    bench = load_benchmark(cfg.benchmark)
    method = build_method(cfg, torch.device("cpu"))
    sizes = []
    for task in bench.tasks[:2]:
        method.begin_task(task)
        sizes.append(None if method.old_net is None else method.old_net.head.out_features)
        method.train_task(task)
        method.end_task(task)
        assert method.old_net is None
    assert sizes == [None, 2]  # task 1 distils from the 2-class model of task 0
    mem = method.memory()
    assert mem.train_state_bytes > 0 and mem.total_bytes == mem.model_bytes + mem.exemplar_bytes + mem.extra_bytes
    assert mem.extra_bytes == 4 * method.net.backbone.out_dim * 4  # 4 class means, float32


def test_joint_retrain_changes_later_tasks_only(tiny_run_config, tiny_net, tmp_path):
    from incsweep.incremental.run import CHECKPOINT_FILE, load_checkpoint

    weights = {}
    for retrain in (False, True):
        cfg = tiny_run_config("joint", retrain=retrain, **tiny_net)
        for n_done in (1, 2):
            d = tmp_path / f"{retrain}-{n_done}"
            result = run(cfg, checkpoint_dir=d, stop_after=n_done)
            weights[retrain, n_done] = load_checkpoint(d / CHECKPOINT_FILE)["method"]["net"]["backbone.stem.conv.weight"]
        assert result.tasks[1].memory.n_exemplars == 4 * 18  # every training image of tasks 0 and 1
    assert torch.equal(weights[False, 1], weights[True, 1])
    assert not torch.equal(weights[False, 2], weights[True, 2])
