"""recompute_bn_stats: BatchNorm statistics re-estimated for the final weights (the collapses of docs/bmkp.md, docs/memo.md)."""

from __future__ import annotations

import torch
from torch import nn

from incsweep.incremental.augment import AUGMENTATIONS, Augmenter
from incsweep.incremental.benchmarks import load_benchmark
from incsweep.incremental.methods._exemplar import with_exemplars
from incsweep.incremental.run import RunConfig, build_method
from incsweep.incremental.training import BN_STATS_MAX_IMAGES, recompute_bn_stats


def _augmenter() -> Augmenter:
    return Augmenter(AUGMENTATIONS["none"], (0.5,), (0.25,), torch.device("cpu"))


def test_statistics_are_the_data_moments_and_state_is_restored():
    torch.manual_seed(0)
    conv, bn, frozen = nn.Conv2d(1, 3, 3, bias=False), nn.BatchNorm2d(3, momentum=0.3), nn.BatchNorm2d(3)
    frozen.eval()
    before = frozen.running_mean.clone()
    x = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8)
    bn.eval()
    recompute_bn_stats([bn], lambda xb: frozen(bn(conv(xb))), x, _augmenter(), batch_size=64)
    z = conv(_augmenter().normalize(x)).detach()
    assert torch.allclose(bn.running_mean, z.mean((0, 2, 3)), atol=1e-6)
    assert torch.allclose(bn.running_var, z.transpose(0, 1).reshape(3, -1).var(1), rtol=1e-4)
    assert bn.momentum == 0.3 and not bn.training  # restored, as it was
    assert torch.equal(frozen.running_mean, before) and not frozen.training  # outside ``modules``: untouched


def test_large_inputs_are_subsampled_evenly():
    seen = []
    bn = nn.BatchNorm2d(1)
    x = torch.arange(3000, dtype=torch.float32).div(3000).reshape(3000, 1, 1, 1).expand(3000, 1, 2, 2).contiguous()
    recompute_bn_stats([bn], lambda xb: seen.append(len(xb)) or bn(xb), x, _augmenter(), batch_size=500)
    assert sum(seen) == BN_STATS_MAX_IMAGES
    assert abs(float(bn.running_mean) - float(_augmenter().normalize(x).mean())) < 0.01  # the whole range


def test_memo_recomputes_what_trained_and_keeps_frozen_copies():
    """After task 1 the newest specialized copy's BN statistics are recomputed; task 0's frozen copy
    keeps the statistics it had after task 0; ``bn_stats: running`` leaves torch's averages."""
    bench_cfg = {"name": "synthetic", "n_classes": 4, "image_size": 16, "train_per_class": 20, "test_per_class": 5}
    for mode in ("recompute", "running"):
        cfg = RunConfig.from_dict({"method": "memo", "benchmark": bench_cfg, "method_config": {
            "backbone": "resnet14", "width": 4, "epochs": 2, "init_epochs": 2, "batch_size": 64,
            "memory_size": 8, "bn_stats": mode}})
        bench = load_benchmark(cfg.benchmark)
        method = build_method(cfg, torch.device("cpu"))
        t0, t1 = bench.tasks[0], bench.tasks[1]
        method.begin_task(t0), method.train_task(t0), method.end_task(t0)
        old_bn = next(m for m in method.net.specialized[0].modules() if isinstance(m, nn.BatchNorm2d))
        saved = old_bn.running_mean.clone()
        method.begin_task(t1), method.train_task(t1)
        assert torch.equal(old_bn.running_mean, saved)  # frozen copy: never re-estimated
        newest = method.net.specialized[-1]
        bn = next(m for m in newest.modules() if isinstance(m, nn.BatchNorm2d))
        inputs = []
        handle = bn.register_forward_hook(lambda mod, inp, out: inputs.append(inp[0]))
        x, _ = with_exemplars(t1, method.exemplars)
        with torch.no_grad():
            method.net.eval()
            newest(method.net.shared(method.ctx.augmenter.normalize(x)))
        handle.remove()
        # One batch (48 images < batch_size): the recomputed statistics are the eval-mode inputs' moments
        # up to G's train-mode normalisation by the biased variance (measured: 0.1% of the mean here);
        # torch's running average after two steps is off by most of the mean.
        mean = inputs[0].mean((0, 2, 3))
        exact = float((bn.running_mean - mean).abs().max() / mean.abs().max()) < 0.02
        assert exact is (mode == "recompute"), mode
