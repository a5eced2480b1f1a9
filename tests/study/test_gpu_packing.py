"""Fractional-GPU packing: ``resources.gpu`` below 1 puts several trials of a study
on one GPU at once, through run_study's real Ray Tune. On a machine without a GPU, Ray is given one
*logical* GPU: Ray schedules on it exactly as on a real one, and each trial runs on the CPU (a trial
uses CUDA only where Ray gave it a GPU id and torch sees a device), so the test measures the
scheduling a packed study gets, not GPU speed (benchmarks/gpu_packing.py measures that on a GPU)."""

from __future__ import annotations

from collections import Counter

import pytest

from incsweep.study.results import list_trial_files, read_trial_file
from incsweep.study.spec import StudySpec

BENCH = {"name": "synthetic", "n_classes": 6, "image_size": 16, "train_per_class": 48, "test_per_class": 8,
         "val_fraction": 0.25}
NET = {"backbone": "tiny", "width": 8, "epochs": 3, "batch_size": 16}  # ~1 s a task: trials overlap measurably


@pytest.fixture(scope="module")
def ray_with_one_gpu():
    """An embedded Ray with 4 logical CPUs and one logical GPU (Ray's ``num_gpus``)."""
    import tempfile

    import ray

    tmp = tempfile.mkdtemp(prefix="rg", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
    yield
    ray.shutdown()


def _intervals(storage: str) -> list[tuple[float, float]]:
    """A part of every trial's hold on its resources, from its Parquet rows: from started_at (the trial's
    own clock, once Ray placed it) to the driver's receipt of its last task (before the trial returns
    and Ray frees its share). Not the final row's finished_at: the driver stamps that after the trial
    ended, when Ray may already have started the next one, which would fake an overlap."""
    spans = []
    for method, tid in list_trial_files(storage, "p"):
        rows = read_trial_file(storage, "p", method, tid)
        final = [r for r in rows if r["is_final"]]
        assert len(final) == 1 and final[0]["status"] == "complete", rows
        last_task = max(r["finished_at"] for r in rows if not r["is_final"])
        spans.append((final[0]["started_at"].timestamp(), last_task.timestamp()))
    return sorted(spans)


def _max_overlap(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


@pytest.mark.parametrize("gpu, expected_at_once", [(0.25, 4), (0.5, 2), (1.0, 1)])
def test_fractional_gpu_shares_pack_trials_onto_one_gpu(ray_with_one_gpu, tmp_path, gpu, expected_at_once):
    """4 trials, concurrency 4, 4 CPUs: the GPU share alone decides how many run at once (1/share)."""
    from incsweep.study.runner import run_study

    spec = StudySpec.from_dict({"name": "p", "methods": ["finetune"], "benchmark": BENCH, "search": {"finetune": NET},
                                "trials": 4, "concurrency": 4, "resources": {"cpu": 1, "gpu": gpu},
                                "storage": str(tmp_path / "s")})
    summary = run_study(spec)
    assert summary.done and summary.statuses == Counter(complete=4)
    spans = _intervals(spec.storage)
    assert len(spans) == 4
    assert _max_overlap(spans) == expected_at_once, spans
