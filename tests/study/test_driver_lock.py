"""One live driver per study (study/driver_lock.py): a second driver is refused in one line naming the
holder; a dead holder's lock (kill -9, a reused pid, a host whose heartbeat stopped) is taken over."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from incsweep.core.errors import ConfigError
from incsweep.study.driver_lock import LOCK_FILE, STALE_S, DriverLock, Holder


def _plant(folder: Path, holder: Holder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / LOCK_FILE).write_text(json.dumps(asdict(holder)))


def test_a_live_holder_refuses_a_second_driver_and_release_frees_the_study(tmp_path):
    first = DriverLock(str(tmp_path / "s"))
    first.acquire()
    try:
        with pytest.raises(ConfigError) as err:
            DriverLock(str(tmp_path / "s")).acquire()
        message = str(err.value)
        assert "\n" not in message and f"pid {os.getpid()} on {socket.gethostname()}" in message
        assert "incsweep study resume" in message
    finally:
        first.release()
    assert not (tmp_path / "s" / LOCK_FILE).exists()
    with DriverLock(str(tmp_path / "s")):
        assert (tmp_path / "s" / LOCK_FILE).exists()


def test_a_dead_holders_lock_is_taken_over(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    _plant(tmp_path, replace(Holder.me(), pid=gone.pid))  # a pid whose process has exited (kill -9 alike)
    with DriverLock(str(tmp_path)) as lock:
        assert lock.read().token == lock.me.token


def test_a_reused_pid_is_not_the_holder(tmp_path):
    me = Holder.me()
    if me.start is None:
        pytest.skip("no /proc start times on this system")
    _plant(tmp_path, replace(me, start=me.start - 1000.0, token="old"))  # this pid, but another process
    with DriverLock(str(tmp_path)) as lock:
        assert lock.read().token == lock.me.token


def test_another_hosts_lock_holds_while_its_heartbeat_is_fresh(tmp_path):
    elsewhere = replace(Holder.me(), host="node-7.cluster", pid=1, token="remote")
    _plant(tmp_path, replace(elsewhere, heartbeat=time.time()))
    with pytest.raises(ConfigError, match="pid 1 on node-7.cluster"):
        DriverLock(str(tmp_path)).acquire()
    _plant(tmp_path, replace(elsewhere, heartbeat=time.time() - STALE_S - 1))
    with DriverLock(str(tmp_path)) as lock:
        assert lock.read().token == lock.me.token


def test_a_torn_lock_file_holds_nobody(tmp_path):
    (tmp_path / LOCK_FILE).write_text('{"host": "x", "pi')
    with DriverLock(str(tmp_path)) as lock:
        assert lock.read().token == lock.me.token


@pytest.mark.ray
@pytest.mark.slow
def test_a_second_driver_on_a_live_study_is_refused_and_the_study_ends_whole(tmp_path):
    spec = {"name": "lock", "methods": ["finetune"], "trials": 4, "concurrency": 1, "seed": 0,
            "benchmark": {"name": "synthetic", "n_classes": 4, "image_size": 16, "train_per_class": 24,
                          "test_per_class": 4},
            "search": {"finetune": {"backbone": "tiny", "width": 4, "epochs": 3, "batch_size": 8,
                                    "lr": {"low": 0.01, "high": 0.1}}},
            "sampler": {"name": "random"}, "resources": {"cpu": 1}}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    storage = tmp_path / "study"
    cli = [sys.executable, "-m", "incsweep.cli"]
    first = subprocess.Popen([*cli, "study", "run", str(path), "--storage", str(storage)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while not list(storage.glob("results/**/*.parquet")):
        assert first.poll() is None, first.communicate()[0][-2000:]
        assert time.time() < deadline, "the first driver recorded no result within 240 s"
        time.sleep(0.3)
    # the first driver is held still (alive, mid-study) while the second ones try: tiny trials would
    # otherwise finish the study before a second driver's launch checks end
    os.kill(first.pid, signal.SIGSTOP)
    try:
        for argv in (["study", "resume", str(storage)], ["study", "run", str(path), "--storage", str(storage)]):
            second = subprocess.run([*cli, *argv], capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stdout[-1000:] + second.stderr[-1000:]
            err = second.stderr.strip()
            assert err.count("\n") == 0 and f"pid {first.pid} on {socket.gethostname()}" in err, err
    finally:
        os.kill(first.pid, signal.SIGCONT)
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0, out[-2000:]
    finals = [r for f in storage.glob("results/**/*.parquet") for r in pq.read_table(f).to_pylist() if r["is_final"]]
    assert len(finals) == 4 and all(r["status"] == "complete" for r in finals)  # 4 trials of 4, none overwritten
    assert not (storage / LOCK_FILE).exists()
