"""a study killed (kill -9 of its process group and Ray session) in its first seconds is
finished by one resume, nothing lost or duplicated. Two moments of benchmarks/kill_sweep.py's
sweep (which covers every second of the first 30, benchmarks/results/kill_sweep.txt): during Ray's
start-up and with trials mid-task; and a resume killed in its turn. The same kill, check and study
as the benchmark (imported from it: one definition of what "nothing lost" means)."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from tests.conftest import load_benchmark

sweep = load_benchmark("kill_sweep")


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("seconds", [3, 15])
def test_a_study_killed_in_its_first_seconds_is_finished_by_one_resume(seconds, tmp_path):
    spec_path = tmp_path / "ks.yaml"
    spec_path.write_text(yaml.safe_dump(sweep.SPEC))
    storage = tmp_path / "s"
    assert sweep.kill_at(spec_path, storage, seconds), "the study ended before the kill"
    stored = (storage / "study.yaml").exists()
    again = ["study", "resume", str(storage)] if stored else ["study", "run", str(spec_path), "--storage", str(storage)]
    done = subprocess.run([sys.executable, "-m", "incsweep.cli", *again], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sweep.check(storage) == []


@pytest.mark.ray
@pytest.mark.slow
def test_a_resume_killed_in_its_turn_is_finished_by_the_next_one(tmp_path):
    """kill -9 during `study resume` (continuations mid-task), then one resume finishes the study."""
    spec_path = tmp_path / "ks.yaml"
    spec_path.write_text(yaml.safe_dump(sweep.SPEC))
    storage = tmp_path / "s"
    assert sweep.kill_at(spec_path, storage, 15)
    assert (storage / "study.yaml").exists()
    assert sweep.kill_at(spec_path, storage, 12, resume=True), "the resume ended before the kill"
    done = subprocess.run([sys.executable, "-m", "incsweep.cli", "study", "resume", str(storage)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert sweep.check(storage) == []
