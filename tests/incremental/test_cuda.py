"""The CUDA path of every registered method, by real tiny runs on a GPU; skipped where there is none.

CI has no GPU, so these run only where one is present (they were run on an H100: docs/gpu.md).
What they check is what the CPU contract checks plus what only a GPU can break: the network and
its data really live on the device, the same seed gives bit-identical metrics and state there
(run() turns cuDNN's autotuning off and its deterministic kernels on for this), resuming
equals an uninterrupted run, and memory accounting does not depend on the device (exactly, where
the method's plan is exact).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_methods_contract import N_TASKS, bench, tiny_config  # noqa: F401 (bench: a fixture)

from incsweep.incremental.contract import assert_same_state as _assert_same_state
from incsweep.incremental.contract import comparable
from incsweep.incremental.methods import METHODS
from incsweep.incremental.run import CHECKPOINT_FILE, RunConfig, build_method, evaluate, load_checkpoint, run


def final_state(ckpt):
    return load_checkpoint(ckpt / CHECKPOINT_FILE)["method"]

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")

CUDA = "cuda"


def cuda_config(name: str) -> RunConfig:
    """The contract's tiny config of ``name``, on the GPU."""
    return dataclasses.replace(tiny_config(name), device=CUDA)


@pytest.fixture(scope="module", params=sorted(METHODS))
def cuda_reference(request, bench, tmp_path_factory):
    """One uninterrupted CUDA run per method, the checkpoint it leaves and the GPU memory it peaked
    at, beside the CPU run of the same config."""
    cfg = cuda_config(request.param)
    ckpt = tmp_path_factory.mktemp(f"cuda-{request.param}")
    cpu = run(tiny_config(request.param), benchmark=bench)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    result = run(cfg, benchmark=bench, checkpoint_dir=ckpt)
    return cfg, result, ckpt, cpu, torch.cuda.max_memory_allocated()


def test_the_run_trained_on_the_gpu(cuda_reference):
    """The network and its batches were in GPU memory: the run's peak allocation holds at least the
    stored model (weights alone; activations and the optimizer come on top)."""
    _, result, _, _, peak = cuda_reference
    assert peak >= result.final.memory.model_bytes > 0


def test_same_seed_same_metrics_and_state_on_cuda(cuda_reference, bench, tmp_path):
    cfg, result, ckpt, _, _ = cuda_reference
    assert comparable(run(cfg, benchmark=bench, checkpoint_dir=tmp_path)) == comparable(result)
    _assert_same_state(final_state(tmp_path), final_state(ckpt))


def test_resume_equals_uninterrupted_on_cuda(cuda_reference, bench, tmp_path):
    cfg, result, _, _, _ = cuda_reference
    first = run(cfg, benchmark=bench, checkpoint_dir=tmp_path, stop_after=1)
    assert len(first.tasks) == 1 and not first.complete
    resumed = run(cfg, benchmark=bench, checkpoint_dir=tmp_path)
    assert resumed.complete and comparable(resumed) == comparable(result)


def test_memory_accounting_does_not_depend_on_the_device(cuda_reference):
    """Exact-plan methods store the same bytes on any device. BMKP's basis ranks come from an SVD
    threshold, so GPU rounding can move a rank by one (seen on an H100: 48 bytes apart after task 0);
    there both devices stay within the plan."""
    cfg, result, _, cpu, _ = cuda_reference
    assert len(result.tasks) == N_TASKS
    method_cls = METHODS[cfg.method]
    if method_cls.plan_is_exact:
        assert [t.memory for t in result.tasks] == [t.memory for t in cpu.tasks]
    else:
        plan = method_cls.plan(cfg.method_config, cfg.benchmark)
        assert max(result.final.memory.total_bytes, cpu.final.memory.total_bytes) <= plan.total_bytes


def test_checkpoint_predicts_what_the_run_reported(cuda_reference, bench):
    cfg, result, ckpt, _, _ = cuda_reference
    method = build_method(cfg, torch.device(CUDA))
    method.load_state_dict(final_state(ckpt))
    row, seen = evaluate(method, bench.tasks, "test", cfg.scenario)
    assert tuple(row) == result.final.acc_row and seen == result.final.seen_acc


def test_bf16_runs_deterministically_and_keys_its_own_prefix(bench, tmp_path):
    """precision=bf16 (opt-in) trains under autocast: same seed, same metrics; its weights differ from
    fp32's; a prefix stored at fp32 is never served to it (the prefix key holds the precision)."""
    from incsweep.incremental.prefix_cache import prefix_key

    fp32 = cuda_config("finetune")
    bf16 = dataclasses.replace(fp32, precision="bf16")
    first = run(bf16, benchmark=bench, checkpoint_dir=tmp_path / "a")
    assert comparable(run(bf16, benchmark=bench)) == comparable(first)
    run(fp32, benchmark=bench, checkpoint_dir=tmp_path / "b")
    a, b = final_state(tmp_path / "a"), final_state(tmp_path / "b")
    tensors = [(k, v) for k, v in a["net"].items() if v.is_floating_point()]
    assert tensors and any(not torch.equal(v, b["net"][k]) for k, v in tensors)
    assert prefix_key(bf16, 1, "v") != prefix_key(fp32, 1, "v")
