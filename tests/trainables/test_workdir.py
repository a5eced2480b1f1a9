"""Scratch directories of stopped trials are swept (trainables/workdir.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from incsweep.trainables.workdir import WORKDIR_PREFIX, sweep_orphaned_workdirs, trial_workdir

pytestmark = pytest.mark.skipif(os.name != "posix", reason="pids and os.kill(pid, 0) are POSIX")


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_only_directories_of_exited_processes_are_removed(tmp_path):
    dead = tmp_path / f"{WORKDIR_PREFIX}{_dead_pid()}-abc"
    live = tmp_path / f"{WORKDIR_PREFIX}{os.getpid()}-def"
    old_style = tmp_path / f"{WORKDIR_PREFIX}x1y2z3"  # an older incsweep's name, without a pid
    other = tmp_path / "someone-else-123-"
    for d in (dead, live, old_style, other):
        d.mkdir()
        (d / "state.pt").write_bytes(b"x" * 100)
    assert sweep_orphaned_workdirs(tmp_path) == [dead]
    assert not dead.exists() and live.exists() and old_style.exists() and other.exists()


def test_a_trial_workdir_is_named_after_its_process_and_sweeps_first(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    orphan = tmp_path / f"{WORKDIR_PREFIX}{_dead_pid()}-orphan"
    orphan.mkdir()
    with trial_workdir() as work:
        assert os.path.basename(work).startswith(f"{WORKDIR_PREFIX}{os.getpid()}-")
        assert not orphan.exists()
