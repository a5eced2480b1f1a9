"""Shared, generic fixtures. Keep this small: method-specific fixtures belong in their own test files."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from incsweep.incremental.run import RunConfig

# 6 synthetic classes of 16x16x3 in 3 tasks of 2: enough for forgetting and exemplars to matter,
# small enough that a tiny network trains a task in well under a second on one core.
TINY_BENCHMARK: dict[str, Any] = {"name": "synthetic", "n_classes": 6, "image_size": 16, "train_per_class": 24,
                                  "test_per_class": 8, "val_fraction": 0.25}
# The tiny network for single-backbone methods (finetune, replay, icarl, joint, ...).
TINY_NET: dict[str, Any] = {"backbone": "tiny", "width": 8, "epochs": 1, "batch_size": 16}


@pytest.fixture
def tiny_run_config() -> Callable[..., RunConfig]:
    """``make(method="finetune", benchmark=None, seed=0, **method_config) -> RunConfig`` on TINY_BENCHMARK.

    ``benchmark`` entries are merged into TINY_BENCHMARK; ``method_config`` is taken as given
    (pass ``**TINY_NET`` for the tiny network).
    """

    def make(method: str = "finetune", benchmark: dict[str, Any] | None = None, seed: int = 0,
             **method_config: Any) -> RunConfig:
        return RunConfig.from_dict({"method": method, "seed": seed, "benchmark": {**TINY_BENCHMARK, **(benchmark or {})},
                                    "method_config": method_config})

    return make


@pytest.fixture
def tiny_net() -> dict[str, Any]:
    """Method-config fields for the tiny network (a fresh copy each time)."""
    return dict(TINY_NET)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """The tests train tiny models, where torch's intra-op thread pool costs more than it gives and,
    on a loaded 2-core machine, oversubscribes the cores (a tiny run measured 20 s with 2 threads
    under load against 0.34 s with 1). Trials in Ray use 1 thread per CPU requested too."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def local_ray():
    """An embedded local Ray (2 CPUs) for one test module, shut down after it."""
    import tempfile

    import ray

    tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=tmp, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def kill_driver_when() -> Callable[..., None]:
    """``kill(spec_path, ready, timeout=240)``: start ``incsweep study run SPEC`` (or, given a list,
    ``incsweep ARGS...``) in its own process group (with its own embedded Ray), wait until
    ``ready()`` holds, then SIGKILL the whole group: the driver and every Ray process it started, as
    a crash or ``kill -9`` would."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    import time

    def kill(spec_path: Any, ready: Callable[[], bool], timeout: float = 240.0) -> None:
        env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="rk", dir="/tmp")}
        args = [str(a) for a in spec_path] if isinstance(spec_path, list) else ["study", "run", str(spec_path)]
        proc = subprocess.Popen([sys.executable, "-m", "incsweep.cli", *args], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.time() + timeout
            while not ready():
                assert proc.poll() is None, "the study finished before it could be killed"
                if time.time() > deadline:
                    pytest.fail(f"the study was not ready to be killed within {timeout:.0f} s")
                time.sleep(0.2)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            # Ray starts some workers in sessions of their own: outside the group, they would live on
            # until they notice their raylet is gone. A crash takes them all: so does this.
            load_benchmark("kill_sweep").kill_ray_session(env["RAY_TMPDIR"])

    return kill


def load_benchmark(name: str) -> Any:
    """A module of benchmarks/ (not a package), for the tests that share its definitions."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fresh_python() -> Callable[[str], str]:
    """``run(code) -> stdout``: ``code`` in a new interpreter (what a fresh process imports, not what
    this test session already has); its failure fails the test with its stderr."""
    import subprocess
    import sys

    def run(code: str) -> str:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-800:]
        return done.stdout

    return run
