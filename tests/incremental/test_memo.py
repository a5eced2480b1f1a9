"""MEMO and DER: the split network, what stays frozen, the heads, weight aligning, exemplars and the
memory-fair budgets, against hand-computed values. Generic contract checks live in test_methods_contract.py."""

from __future__ import annotations

import dataclasses
import io
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_BENCHMARK

from incsweep.cli import main
from incsweep.core.errors import ConfigError
from incsweep.incremental.backbones import build_backbone, count_params
from incsweep.incremental.benchmarks import BenchmarkConfig, load_benchmark
from incsweep.incremental.cli import budget_report
from incsweep.incremental.exemplars import herding_order
from incsweep.incremental.memory import MB, module_bytes
from incsweep.incremental.methods import METHODS
from incsweep.incremental.methods._memo_net import SplitNet, split_points
from incsweep.incremental.methods.der import DERConfig
from incsweep.incremental.methods.memo import MEMOConfig, aux_targets
from incsweep.incremental.run import CHECKPOINT_FILE, RunConfig, build_method, load_checkpoint, load_run_config, run

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "memo"
FAST = {"backbone": "tiny", "width": 4, "epochs": 2, "init_epochs": 2, "batch_size": 16, "memory_size": 12}
CIFAR100 = {"name": "seq-cifar100", "init_classes": 10, "increment": 10}

# ResNet-32 by hand: stem conv 3*16*9 + BN 2*16 = 464; a 16-channel block 2*(16*16*9) + 2*2*16 = 4,672;
# the 64-channel stage (memo_resnet32's specialized part) 351,488; the whole backbone 463,504.
STEM, BLOCK16, STAGE64, P32 = 464, 4_672, 351_488, 463_504


@pytest.fixture(scope="module")
def bench():
    return load_benchmark(BenchmarkConfig(**TINY_BENCHMARK))


def config(method: str = "memo", **fields) -> RunConfig:
    """A run on the tiny synthetic benchmark (3 tasks x 2 classes) with the tiny network."""
    return RunConfig.from_dict({"method": method, "benchmark": TINY_BENCHMARK, "method_config": {**FAST, **fields}})


def begin_train_end(method, task) -> None:
    method.begin_task(task)
    method.train_task(task)
    method.end_task(task)


def states(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- what stays frozen ----------------------------------------------------------------------------
@pytest.mark.parametrize("train_base", [False, True])
def test_old_specialized_blocks_are_bit_identical_after_a_later_task(bench, train_base):
    method = build_method(config(train_base=train_base), torch.device("cpu"))
    begin_train_end(method, bench.tasks[0])
    s0, g0 = states(method.net.specialized[0]), states(method.net.shared)
    method.begin_task(bench.tasks[1])
    assert same(states(method.net.specialized[1]), s0)  # S_1 starts as a copy of S_0
    method.train_task(bench.tasks[1])
    method.end_task(bench.tasks[1])
    assert same(states(method.net.specialized[0]), s0)  # weights AND BN running statistics
    assert not same(states(method.net.specialized[1]), s0)  # the new copy learned
    assert same(states(method.net.shared), g0) is (not train_base)  # G moves only with train_base


def test_old_parts_stay_in_eval_mode_while_training(bench):
    method = build_method(config(train_base=False), torch.device("cpu"))
    begin_train_end(method, bench.tasks[0])
    method.begin_task(bench.tasks[1])
    method.net.train_mode(method.trains_shared(1))
    assert not method.net.shared.training and not method.net.specialized[0].training
    assert method.net.specialized[1].training and method.net.classifier.training
    trainable = {n for n, p in method.net.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("specialized.1.", "classifier.", "aux.")) for n in trainable)


# ---- heads ----------------------------------------------------------------------------------------
def test_classifier_expansion_keeps_old_weights_and_adds_an_aux_head():
    torch.manual_seed(0)
    net = SplitNet(build_backbone("tiny", 3, width=4), 1)
    net.grow(2, with_aux=False)
    d = net.out_dim
    with torch.no_grad():
        net.classifier.weight.normal_()
        net.classifier.bias.normal_()
    old_w, old_b = net.classifier.weight.clone(), net.classifier.bias.clone()
    net.grow(3, with_aux=True)
    w = net.classifier.weight
    assert w.shape == (5, 2 * d) and len(net.specialized) == 2
    assert torch.equal(w[:2, :d], old_w) and torch.equal(net.classifier.bias[:2], old_b)
    assert w[:2, d:].abs().sum() > 0  # old rows on the new features: freshly initialised (PyCIL), not kept
    assert torch.equal(net.classifier.bias[2:], torch.zeros(3))
    assert (net.aux.in_features, net.aux.out_features) == (d, 3 + 1)
    x = torch.randn(4, 3, 16, 16)
    net.eval()
    feats = net.features(x)
    assert feats.shape == (4, 2 * d) and torch.equal(feats[:, :d], feats[:, d:])  # S_1 = copy of S_0


def test_aux_labels_map_old_classes_to_one_extra_label():
    y = torch.tensor([0, 3, 4, 5, 9, 2])
    assert aux_targets(y, 4).tolist() == [0, 0, 1, 2, 6, 0]
    assert aux_targets(y, 0).tolist() == [1, 4, 5, 6, 10, 3]


def test_aux_loss_acts_from_task_1_on(bench):
    """alpha_aux changes nothing in task 0 (no aux head) and changes task 1's training."""
    runs = {a: run(config(alpha_aux=a), benchmark=bench, stop_after=2) for a in (0.0, 1.0)}
    assert runs[0.0].tasks[0].acc_row == runs[1.0].tasks[0].acc_row
    assert runs[0.0].tasks[0].memory.train_state_bytes == 0
    d = 8  # tiny at width 4: 2 * width features per task
    assert runs[1.0].tasks[1].memory.train_state_bytes == (d + 1) * (2 + 1) * 4  # aux head: training-time only
    a, b = (build_method(config(alpha_aux=x), torch.device("cpu")) for x in (0.0, 1.0))
    for m in (a, b):
        for task in bench.tasks[:2]:
            begin_train_end(m, task)
    assert not torch.equal(a.net.classifier.weight, b.net.classifier.weight)


def test_weight_aligning_equalises_mean_norms():
    net = SplitNet(build_backbone("tiny", 3, width=4), 1)
    net.grow(4, with_aux=False)
    with torch.no_grad():
        net.classifier.weight.normal_()
        net.classifier.weight[3:] *= 5.0  # new-class rows much larger, as after training on imbalanced data
    bias = net.classifier.bias.clone()
    old_rows = net.classifier.weight[:3].clone()
    gamma = net.align_weights(3)
    norms = net.classifier.weight.detach().norm(dim=1)
    assert gamma < 1.0
    assert math.isclose(float(norms[:3].mean()), float(norms[3:].mean()), rel_tol=1e-6)
    assert torch.equal(net.classifier.weight[:3], old_rows) and torch.equal(net.classifier.bias, bias)


def test_weight_aligning_scales_new_logits_by_gamma_and_leaves_old_ones():
    """logits_new' = gamma * (W_new f) + b_new; old classes' logits unchanged (biases are not scaled, as PyCIL)."""
    torch.manual_seed(1)
    net = SplitNet(build_backbone("tiny", 3, width=4), 1)
    net.grow(2, with_aux=False)
    net.grow(3, with_aux=False)
    with torch.no_grad():
        net.classifier.weight[2:] *= 4.0
        net.classifier.bias.normal_()
    net.eval()
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        feats = net.features(x)
        before = net(x)
    gamma = net.align_weights(2)
    w = net.classifier.weight.detach()
    w_old, w_new = w[:2], w[2:] / gamma  # pre-alignment new rows
    assert math.isclose(gamma, float(w_old.norm(dim=1).mean() / w_new.norm(dim=1).mean()), rel_tol=1e-6)
    with torch.no_grad():
        after = net(x)
        bias_new = net.classifier.bias[2:]
        want_new = gamma * (before[:, 2:] - bias_new) + bias_new
    assert torch.equal(after[:, :2], before[:, :2])
    torch.testing.assert_close(after[:, 2:], want_new)
    assert not torch.allclose(after[:, 2:], before[:, 2:])  # gamma ~ 1/4 here: the change is real
    torch.testing.assert_close(after, feats @ net.classifier.weight.T + net.classifier.bias)


def test_aux_head_exists_only_while_training_a_later_task(bench):
    method = build_method(config(), torch.device("cpu"))
    method.begin_task(bench.tasks[0])
    assert method.net.aux is None  # task 0: no old classes, no auxiliary head
    method.train_task(bench.tasks[0])
    method.end_task(bench.tasks[0])
    method.begin_task(bench.tasks[1])
    aux = method.net.aux
    assert (aux.in_features, aux.out_features) == (method.net.out_dim, 2 + 1)
    w0 = aux.weight.detach().clone()
    method.train_task(bench.tasks[1])
    assert not torch.equal(aux.weight.detach(), w0)  # it trained, with alpha_aux = 1
    method.end_task(bench.tasks[1])
    assert method.net.aux is None and not any(k.startswith("aux.") for k in method.net.state_dict())
    mem = method.memory()
    assert mem.model_bytes == module_bytes(method.net) and mem.train_state_bytes == module_bytes(aux)
    assert method.predict(bench.tasks[1].test.x, None).shape == (len(bench.tasks[1].test.y), 4)


# ---- exemplars ------------------------------------------------------------------------------------
def test_herding_runs_on_normalised_concatenated_features(bench):
    method = build_method(config(), torch.device("cpu"))
    for task in bench.tasks[:2]:
        begin_train_end(method, task)
    net, task = method.net, bench.tasks[1]
    m = 12 // 4  # budget // classes seen
    for c in task.classes:
        x = task.train.x[task.train.y == c]
        with torch.no_grad():
            net.eval()
            z = method.ctx.augmenter.normalize(x)
            base = net.shared(z)
            feats = torch.cat([net.specialized[0](base), net.specialized[1](base)], dim=1)
        assert feats.shape[1] == 2 * net.out_dim
        want = x[herding_order(F.normalize(feats, dim=1), m)]
        assert torch.equal(method.exemplars.store._x[c], want)


def test_exemplars_per_class_is_budget_over_classes_seen(bench):
    method = build_method(config(memory_size=12), torch.device("cpu"))
    kept: dict[int, torch.Tensor] = {}
    for task, per_class in zip(bench.tasks, (6, 3, 2)):  # 12 // 2, 12 // 4, 12 // 6
        begin_train_end(method, task)
        store = method.exemplars.store
        assert store.classes == list(range(task.classes[-1] + 1))
        for c in store.classes:
            assert len(store._x[c]) == per_class
            if c in kept:  # old classes shrink to a prefix of their herding order
                assert torch.equal(store._x[c], kept[c][:per_class])
        kept = {c: store._x[c].clone() for c in store.classes}
    assert method.memory().n_exemplars == 12


# ---- the split --------------------------------------------------------------------------------------
@pytest.mark.parametrize("k, g, s", [
    (10, P32 - STAGE64, STAGE64),  # paper default: the 64-channel stage per task
    (5, STEM + 5 * BLOCK16, P32 - STEM - 5 * BLOCK16),  # stem + the 16-channel stage shared
    (0, STEM, P32 - STEM),  # all 15 blocks per task, only the stem shared
    (14, P32 - (STAGE64 - 55_552) // 4, (STAGE64 - 55_552) // 4),  # only the last block per task
])
def test_parameter_counts_of_g_and_s_on_resnet32(k, g, s):
    plan = METHODS["memo"].plan(MEMOConfig(shared_blocks=k), BenchmarkConfig(**CIFAR100))
    d = plan.details
    assert (d["shared_params_g"], d["specialized_params_s"], plan.backbone_params) == (g, s, P32)
    assert d["n_tasks"] == 10
    # bytes: parameters + BN running mean/var, float32; classifier over 10 * 64 features -> 100 classes
    assert d["classifier_bytes"] == (640 + 1) * 100 * 4
    assert plan.model_bytes == d["shared_bytes"] + 10 * d["specialized_bytes_per_task"] + d["classifier_bytes"]


def test_der_shares_nothing_not_even_the_stem():
    plan = METHODS["der"].plan(DERConfig(), BenchmarkConfig(**CIFAR100))
    d = plan.details
    assert (d["shared_params_g"], d["specialized_params_s"]) == (0, P32)
    bb = build_backbone("resnet32", 3)
    assert d["specialized_bytes_per_task"] == module_bytes(bb)


def test_named_split_points_and_resnet18():
    assert split_points(build_backbone("resnet32", 3)) == {"stem": 0, "layer1": 5, "layer2": 10}
    r18 = build_backbone("resnet18", 3)
    assert count_params(r18) == 11_176_512  # torchvision resnet18 without its fc
    assert split_points(r18) == {"stem": 0, "layer1": 2, "layer2": 4, "layer3": 6}
    plan = METHODS["memo"].plan(MEMOConfig(backbone="resnet18_cifar", split_after="layer3"), BenchmarkConfig(**CIFAR100))
    layer4 = 3_673_088 + 4_720_640  # block with 1x1 downsampling + plain block, 512 channels
    assert plan.details["specialized_params_s"] == layer4 and plan.details["split"] == "layer3"
    assert MEMOConfig(backbone="resnet18").shared_blocks is None  # default resolves to layer3 (layer4 per task)
    assert METHODS["memo"].plan(MEMOConfig(backbone="resnet18"), BenchmarkConfig(**CIFAR100)).details["shared_blocks"] == 6


def test_split_is_validated_against_the_backbone():
    with pytest.raises(ConfigError, match=r"shared_blocks=2 does not fit tiny, which has 2 residual blocks; allowed 0\.\.1"):
        MEMOConfig(backbone="tiny", shared_blocks=2)
    with pytest.raises(ConfigError,
                       match=r"split_after='layer3' is not a split point of resnet32; allowed: \['layer1', 'layer2', 'stem'\]"):
        MEMOConfig(split_after="layer3")
    with pytest.raises(ConfigError, match="not both"):
        MEMOConfig(shared_blocks=5, split_after="layer1")
    with pytest.raises(ConfigError, match="unknown field"):
        load_run_config(None, ["shared_blocks=3"], method="der")


# ---- budgets ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("init, inc, memo_m", [(10, 10, 3312), (50, 10, 2729), (50, 5, 3458)])
def test_aligned_budgets_follow_the_paper_formula(init, inc, memo_m):
    b = BenchmarkConfig(name="seq-cifar100", init_classes=init, increment=inc)
    t = len(b.task_sizes)
    g, s = P32 - STAGE64, STAGE64
    assert memo_m == 2000 + (t * P32 - (g + t * s)) * 4 // 3072  # the numbers MEMO's README/paper use (-ms 3312)
    memo = METHODS["memo"].plan(MEMOConfig(budget="aligned"), b)
    der = METHODS["der"].plan(DERConfig(budget="aligned"), b)
    assert memo.exemplar_total == memo_m and der.exemplar_total == 2000
    assert memo.n_exemplars == 100 * (memo_m // 100) and der.n_exemplars == 2000
    # k = 0 keeps the stem once instead of T times: 5 images' worth more than DER on B0 Inc10
    k0 = METHODS["memo"].plan(MEMOConfig(budget="aligned", shared_blocks=0), b).exemplar_total
    assert k0 == 2000 + (t - 1) * STEM * 4 // 3072


@pytest.mark.parametrize("k", [0, 3, 4, 8])
def test_total_mb_is_equal_memory_for_every_split(k):
    """At one memory_mb, every split's model + exemplars fit, and a smaller model buys more exemplars."""
    b = BenchmarkConfig(name="seq-cifar100", init_classes=10, increment=10)
    mb = 15.0
    memo = METHODS["memo"].plan(MEMOConfig(backbone="resnet20", shared_blocks=k, budget="total_mb", memory_mb=mb), b)
    der = METHODS["der"].plan(DERConfig(backbone="resnet20", budget="total_mb", memory_mb=mb), b)
    for plan in (memo, der):
        m = plan.exemplar_total
        assert plan.model_bytes + m * 3072 <= mb * MB < plan.model_bytes + (m + 1) * 3072
        assert plan.total_bytes <= mb * MB
    assert memo.model_bytes < der.model_bytes
    assert memo.exemplar_total > der.exemplar_total and memo.n_exemplars >= der.n_exemplars


def test_memory_after_the_last_task_equals_plan_for_a_deeper_split(bench):
    cfg = config(backbone="resnet14", width=2, shared_blocks=3, epochs=1, init_epochs=1, budget="total_mb",
                 memory_mb=0.05)
    plan = METHODS["memo"].plan(cfg.method_config, cfg.benchmark)
    mem = run(cfg, benchmark=bench).final.memory
    assert (mem.model_bytes, mem.n_exemplars, mem.total_bytes) == (plan.model_bytes, plan.n_exemplars, plan.total_bytes)
    assert plan.n_exemplars > 0 and plan.total_bytes <= 0.05 * MB


# The tiny net at width 4 on 16x16x3 images (768 bytes each), float32, BN weight/bias/mean/var counted:
# stem conv 3*4*9 + BN 4*4 = 124 values; block 0 (4->4) 2*(4*4*9) + 2*16 = 320; block 1 (4->8, stride 2)
# 4*8*9 + 8*8*9 + 2*32 = 928. MEMO's default split for tiny is k = 1: G = stem + block 0, S = block 1.
G_TINY, S_TINY, P_TINY = (124 + 320) * 4, 928 * 4, (124 + 320 + 928) * 4  # 1,776 / 3,712 / 5,488 bytes
HEAD_TINY = (3 * 8 + 1) * 6 * 4  # after 3 tasks: 3 x 8 features -> 6 classes, weight and bias


def test_memory_by_hand_shared_once_copies_per_task_and_exemplars_at_equal_total(bench):
    """Equal total memory (30,000 bytes): G counted once, S once per task, DER a whole backbone per task;
    the bytes MEMO saves buy it exemplars: floor((30000 - model) / 768) in total, // 6 classes each."""
    budget = {"budget": "total_mb", "memory_mb": 30_000 / MB, "epochs": 1, "init_epochs": 1}
    memo = run(config("memo", **budget), benchmark=bench).final.memory
    der = run(config("der", **budget), benchmark=bench).final.memory
    assert memo.model_bytes == G_TINY + 3 * S_TINY + HEAD_TINY == 13_512
    assert der.model_bytes == 3 * P_TINY + HEAD_TINY == 17_064
    # memo: (30000 - 13512) // 768 = 21 -> 3 per class; der: (30000 - 17064) // 768 = 16 -> 2 per class
    assert (memo.n_exemplars, der.n_exemplars) == (6 * 3, 6 * 2)
    assert (memo.exemplar_bytes, der.exemplar_bytes) == (18 * 768, 12 * 768)
    assert memo.total_bytes == 13_512 + 18 * 768 <= 30_000 and der.total_bytes == 17_064 + 12 * 768 <= 30_000
    for m in (memo, der):  # the auxiliary head is training-time state, outside the total
        assert m.train_state_bytes == (8 + 1) * (2 + 1) * 4 and m.total_bytes == m.model_bytes + m.exemplar_bytes


def test_state_round_trip_continues_bit_identically(bench):
    """state_dict -> bytes -> a fresh method: same predictions, and the next task trains to the same state."""
    a = build_method(config(), torch.device("cpu"))
    for task in bench.tasks[:2]:
        begin_train_end(a, task)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b = build_method(config(), torch.device("cpu"))
    b.load_state_dict(torch.load(buf))
    assert len(b.net.specialized) == 2 and b.net.classifier.weight.shape == (4, 2 * b.net.out_dim)
    x = bench.tasks[1].test.x
    assert torch.equal(a.predict(x, None), b.predict(x, None))
    assert same(a.exemplars.store.state_dict(), b.exemplars.store.state_dict()) and a.memory() == b.memory()
    for m in (a, b):
        torch.manual_seed(3)  # the run loop reseeds before every task; the new classifier rows draw from it
        begin_train_end(m, bench.tasks[2])
    assert same(states(a.net), states(b.net)) and a.memory() == b.memory()


# ---- the paper's configs ----------------------------------------------------------------------------
@pytest.mark.parametrize("name, method, tasks, exemplars, mb", [
    ("cifar100_b0_inc10", "memo", 10, 3300, 23.80),
    ("cifar100_b50_inc10", "memo", 6, 2700, 16.56),
    ("cifar100_b50_inc5", "memo", 11, 3400, 25.46),
    ("der_cifar100_b0_inc10", "der", 10, 2000, 23.87),
])
def test_paper_configs_load_and_plan_the_papers_memory(name, method, tasks, exemplars, mb):
    cfg = load_run_config(str(CONFIGS / f"{name}.yaml"), ["device=cpu"])
    mc = cfg.method_config
    assert cfg.method == method and cfg.augment_policy == "cifar_memo" and cfg.seed == 1993
    assert cfg.benchmark.class_order == "seed1993" and len(cfg.benchmark.task_sizes) == tasks
    assert (mc.init_epochs, mc.epochs, mc.init_milestones, mc.milestones) == (200, 170, (60, 120, 170), (80, 120, 150))
    assert (mc.init_weight_decay, mc.weight_decay, mc.batch_size, mc.budget) == (5e-4, 2e-4, 128, "aligned")
    report = budget_report(cfg)
    assert report["n_exemplars"] == exemplars
    # The paper's 23.5 / 16.45 / 25.3 MB count parameters only; BN statistics and the classifier add ~0.3 MB.
    assert abs(report["total_mb"] - mb) < 0.005


def test_budget_cli_plans_a_gpu_config_on_any_machine(capsys):
    """The configs say device: cuda; planning never touches the device, so `incsweep budget` works without one."""
    assert main(["budget", "--config", str(CONFIGS / "cifar100_b0_inc10.yaml"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["details"]["aligned_formula"].endswith("= 3312") and r["n_exemplars"] == 3300
    assert main(["budget", "--config", str(CONFIGS / "der_cifar100_b0_inc10.yaml"), "--memory-mb", "23.5"]) == 0
    text = capsys.readouterr().out
    fits = (int(23.5 * MB) - 18_887_440) // 3072  # DER's 10 backbones + classifier, then whole exemplars
    assert "18,887,440 bytes" in text and f"{fits // 100 * 100:,} exemplars fit" in text


def test_defaults_are_the_papers():
    for cfg in (MEMOConfig(), DERConfig()):
        s0, s1 = cfg.task_schedule(0), cfg.task_schedule(1)
        assert (s0.epochs, s0.lr, s0.weight_decay, s0.milestones) == (200, 0.1, 5e-4, (60, 120, 170))
        assert (s1.epochs, s1.lr, s1.weight_decay, s1.milestones) == (170, 0.1, 2e-4, (80, 120, 150))
        assert (s0.momentum, s0.batch_size, cfg.alpha_aux, cfg.backbone) == (0.9, 128, 1.0, "resnet32")
    assert MEMOConfig().train_base is True


# ---- prefix cache declaration -------------------------------------------------------------------------
def test_task0_state_ignores_fields_declared_later_only(bench, tmp_path):
    """The prefix cache may reuse task 0 across these fields: the checkpoint after task 0 is identical."""
    base = config()
    later = {"alpha_aux": 0.3, "train_base": False, "weight_align": False, "epochs": 1, "lr": 0.05}
    declared = METHODS["memo"].fields_for_tasks(base.method_config, 1)
    assert not declared & set(later) and {"shared_blocks", "memory_size", "init_epochs"} <= declared
    other = dataclasses.replace(base, method_config=dataclasses.replace(base.method_config, **later))
    saved = []
    for i, cfg in enumerate((base, other)):
        run(cfg, benchmark=bench, checkpoint_dir=tmp_path / str(i), stop_after=1)
        saved.append(load_checkpoint(tmp_path / str(i) / CHECKPOINT_FILE)["method"])
    a, b = saved
    assert same(a["net"], b["net"]) and same(a["exemplars"]["store"], b["exemplars"]["store"])


def test_memo_learns_the_synthetic_tasks():
    """Class-IL after 3 tasks: old tasks are remembered (finetune forgets them entirely: 0.0 on both)."""
    b = {**TINY_BENCHMARK, "train_per_class": 60, "test_per_class": 20}  # as test_synthetic_data_is_learnable
    net = {"backbone": "tiny", "width": 8, "batch_size": 16, "epochs": 6, "lr": 0.05}
    memo = RunConfig.from_dict({"method": "memo", "benchmark": b,
                                "method_config": {**net, "init_epochs": 6, "init_lr": 0.05, "memory_size": 30}})
    finetune = RunConfig.from_dict({"method": "finetune", "benchmark": b, "method_config": net})
    bench = load_benchmark(memo.benchmark)
    m, f = (run(c, benchmark=bench).final for c in (memo, finetune))
    assert max(f.acc_row[:-1]) == 0.0  # finetune: only the last task's classes are ever predicted
    assert min(m.acc_row[:-1]) > 0.3 and m.test.last_acc > 0.6 > f.test.last_acc
