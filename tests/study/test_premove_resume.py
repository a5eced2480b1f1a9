"""A study stored by incsweep before the shared core moved (incsweep/core/, commit 766763d's layout)
still resumes: storage holds data (YAML, the Optuna journal, Parquet, weights-only checkpoints), never
a module path that the move could break. The archive is that study killed -9 15 s in (two trials
mid-task, benchmarks/kill_sweep.py's study), made with 766763d's code and committed unchanged."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import load_benchmark

sweep = load_benchmark("kill_sweep")
ARCHIVE = Path(__file__).parents[1] / "data" / "study_before_core_move.tgz"


@pytest.mark.ray
@pytest.mark.slow
def test_a_study_stored_before_the_core_move_resumes_to_the_end(tmp_path):
    storage = tmp_path / "s"
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(storage, filter="data")
    assert sorted(p.name for p in (storage / "results" / "study=ks" / "method=finetune").iterdir()) == [
        "1d2ad65f.parquet", "5939cb2f.parquet"]  # the killed study's two trials, mid-stream
    done = subprocess.run([sys.executable, "-m", "incsweep.cli", "study", "resume", str(storage)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sweep.check(storage) == []
