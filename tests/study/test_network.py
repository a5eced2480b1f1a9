"""What an embedded study listens on (docs/cluster.md "Trust"): measured with ``ss -ltnp``
while ``incsweep study run`` runs. Ray 2.60.0 cannot bind its gRPC servers to loopback (the node IP
of ``ray.init`` is never 127.0.0.1 by design: docs/cluster.md), so the test pins what incsweep
controls: the dashboard stays off, and every socket listening beyond loopback belongs to a process
of Ray's own (its servers, agents, workers, or the driver's core worker), none to anything else."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import load_benchmark

sweep = load_benchmark("kill_sweep")
# the kill sweep's study, shorter: 6 trials of 2 tasks, 20 epochs
SPEC = {**sweep.SPEC, "name": "net", "trials": 6,
        "benchmark": {**sweep.SPEC["benchmark"], "n_classes": 4, "train_per_class": 48, "test_per_class": 4},
        "search": {"finetune": {**sweep.SPEC["search"]["finetune"], "epochs": 20}}}
LOOPBACK = ("127.", "[::1]", "::1")
USERS = re.compile(r'\("([^"]*)",pid=(\d+)')


def _listeners() -> list[tuple[str, str, int, str]]:
    """(local address, process name, pid, command line) of every listening TCP socket whose process
    is still there when its command line is read (a worker can exit between the two reads)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        for name, pid in USERS.findall(line):
            cmd = _cmdline(int(pid))
            if cmd:
                found.append((parts[3], name, int(pid), cmd))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ss") is None or not Path("/proc").is_dir(), reason="needs ss and /proc (Linux)")
def test_an_embedded_study_listens_beyond_loopback_only_through_rays_own_processes(tmp_path):
    spec_path = tmp_path / "net.yaml"
    spec_path.write_text(yaml.safe_dump(SPEC))
    storage = tmp_path / "st"
    marker = tempfile.mkdtemp(prefix="nt", dir="/tmp")
    proc = subprocess.Popen([sys.executable, "-m", "incsweep.cli", "study", "run", str(spec_path), "--storage",
                             str(storage)], env={**os.environ, "RAY_TMPDIR": marker},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while time.time() < deadline and not list(storage.glob("results/**/*.parquet")):
            assert proc.poll() is None, "the study ended before it could be observed"
            time.sleep(0.3)
        ours = set(sweep.session_pids(marker)) | {proc.pid}
        listening = [(addr, name, pid, cmd) for addr, name, pid, cmd in _listeners() if pid in ours]
    finally:
        proc.wait(timeout=300)
    assert proc.returncode == 0
    assert listening, "no listener found: the measurement saw nothing"
    assert not [a for a, _, _, _ in listening if a.endswith(":8265")], "the Ray dashboard is on"
    outside = [entry for entry in listening if not entry[0].startswith(LOOPBACK)]
    for addr, name, pid, cmd in outside:
        rays = name in ("gcs_server", "raylet") or name.startswith("ray::") or "/ray/" in cmd or "ray::" in cmd
        driver = pid == proc.pid  # Ray's core worker inside the driver
        assert rays or driver, f"{addr} is held by {name} (pid {pid}: {cmd[:200]}), not a Ray component"
