"""RunConfig.compile: the training step runs under torch.compile and trains like eager.

Compiling on CPU needs a C++ compiler (the Debian image has g++); each case compiles a tiny network.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from incsweep.incremental.augment import AUGMENTATIONS, Augmenter
from incsweep.incremental.prefix_cache import prefix_key
from incsweep.incremental.run import run
from incsweep.incremental.training import Schedule, fit

CPU = torch.device("cpu")


def _fit_losses(compile_step: bool) -> tuple[list[float], dict[str, int]]:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 1, 8, 8), dtype=torch.uint8, generator=gen)
    y = torch.arange(40) % 3
    aug = Augmenter(AUGMENTATIONS["none"], (0.5,), (0.25,), CPU, compile_step=compile_step)
    torch._dynamo.utils.counters.clear()
    losses = fit(net.parameters(), lambda xb, yb: F.cross_entropy(net(xb), yb), x, y,
                 Schedule(epochs=3, lr=0.1, batch_size=16), aug, torch.Generator().manual_seed(1))
    return losses, dict(torch._dynamo.utils.counters["stats"])


def test_compiled_fit_trains_like_eager():
    eager, eager_stats = _fit_losses(False)
    compiled, stats = _fit_losses(True)
    assert not eager_stats.get("unique_graphs")
    assert stats.get("unique_graphs", 0) >= 1  # the step really went through dynamo
    # fused kernels round differently, so close rather than bit-equal
    assert compiled == pytest.approx(eager, rel=1e-3)


def test_run_with_compile_matches_eager_and_has_its_own_prefix_key(tiny_run_config, tiny_net):
    cfg = tiny_run_config(**tiny_net)
    compiled_cfg = dataclasses.replace(cfg, compile=True)
    torch._dynamo.utils.counters.clear()
    a = run(cfg, stop_after=2)
    b = run(compiled_cfg, stop_after=2)
    assert torch._dynamo.utils.counters["stats"].get("unique_graphs", 0) >= 1
    for ta, tb in zip(a.tasks, b.tasks, strict=True):
        assert tb.test.avg_acc == pytest.approx(ta.test.avg_acc, abs=0.05)
    # a compiled prefix never serves an eager trial (and the other way round)
    assert prefix_key(cfg, 1, "v") != prefix_key(compiled_cfg, 1, "v")
