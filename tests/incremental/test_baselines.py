"""LwF and EWC specifics beyond the contract: EWC's penalty holds the important weights and cannot
make SGD diverge; LwF distils the previous model and keeps it only while training."""

from __future__ import annotations

import torch
from conftest import TINY_BENCHMARK

from incsweep.incremental.benchmarks import load_benchmark
from incsweep.incremental.run import RunConfig, build_method, run

NET = {"backbone": "tiny", "width": 8, "epochs": 2, "batch_size": 16, "lr": 0.1}


def config(method: str, **fields) -> RunConfig:
    return RunConfig.from_dict({"method": method, "benchmark": TINY_BENCHMARK, "method_config": {**NET, **fields}})


def _after_two_tasks(cfg: RunConfig):
    bench = load_benchmark(cfg.benchmark)
    method = build_method(cfg, torch.device("cpu"))
    anchors = None
    for task in bench.tasks[:2]:
        method.begin_task(task)
        method.train_task(task)
        method.end_task(task)
        if anchors is None:
            anchors = {k: v.detach().clone() for k, v in method.net.backbone.named_parameters()}
    moved = sum(float((p.detach() - anchors[k]).pow(2).sum()) for k, p in method.net.backbone.named_parameters())
    return method, moved


def test_ewc_penalty_holds_the_weights_and_its_curvature_is_capped():
    free, moved_free = _after_two_tasks(config("ewc", ewc_lambda=0.0))
    held, moved_held = _after_two_tasks(config("ewc", ewc_lambda=1e6))
    assert moved_held < 0.5 * moved_free  # the penalty pulls task 1's backbone towards task 0's weights
    curvature = held.curvature(lr=0.1)
    assert max(float(c.max()) for c in curvature.values()) <= 1 / 0.1 + 1e-6  # lambda * F <= 1 / lr
    assert any(float(c.max()) == 1 / 0.1 for c in curvature.values())  # lambda = 1e6 hits the cap somewhere


def test_ewc_with_a_huge_lambda_does_not_diverge():
    result = run(config("ewc", ewc_lambda=1e9, lr=0.5), stop_after=3)  # uncapped: lr * lambda * F >> 2
    assert result.complete and all(0.0 <= a <= 1.0 for a in result.final.acc_row)


def test_lwf_keeps_the_old_model_only_while_training():
    cfg = config("lwf")
    result = run(cfg)
    mem = result.final.memory
    assert mem.exemplar_bytes == 0 and mem.extra_bytes == 0
    assert 0 < mem.train_state_bytes < mem.model_bytes  # the previous model, one task's head smaller
    method = build_method(cfg, torch.device("cpu"))
    assert method.old_net is None


def test_lwf_distillation_keeps_more_of_the_old_task_than_finetune():
    """On the tiny benchmark's 3 tasks, summed over 3 seeds: old-task accuracy after the last task."""
    def old_accuracy(method: str, **fields) -> float:
        total = 0.0
        for seed in range(3):
            cfg = RunConfig.from_dict({"method": method, "seed": seed, "benchmark": TINY_BENCHMARK,
                                       "method_config": {**NET, "epochs": 3, **fields}})
            row = run(cfg).final.acc_row
            total += sum(row[:-1])
        return total

    assert old_accuracy("lwf", kd_weight=3.0) > old_accuracy("finetune")
