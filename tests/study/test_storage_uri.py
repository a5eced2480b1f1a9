"""A study whose storage is an object-store URI (S3 API, served locally by moto): results, Tune's
experiment state and checkpoints go through pyarrow's S3 filesystem; a driver killed mid-study is
resumed from the bucket; the analysis reads the same URI."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections import Counter

import optuna
import pytest
import yaml

from incsweep.core.errors import ConfigError
from incsweep.study.results import list_trial_files, read_trial_file, write_trial_file
from incsweep.study.spec import StudySpec

SYNTH = {"name": "synthetic", "n_classes": 6, "image_size": 16, "train_per_class": 48, "test_per_class": 8,
         "val_fraction": 0.25}
NET = {"backbone": "tiny", "width": 8, "epochs": 6, "batch_size": 16}  # ~1 s a task: a kill lands mid-study


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free local port with an empty bucket ``studies``."""
    import pyarrow.fs as pafs

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "moto server did not start"
                time.sleep(0.2)
        fs = pafs.S3FileSystem(access_key="test", secret_key="test", endpoint_override=endpoint, scheme="http",
                               region="us-east-1", allow_bucket_creation=True)
        fs.create_dir("studies")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait()


def _uri(endpoint: str, prefix: str) -> str:
    # credentials in the URI so that every process (driver, Ray workers) sees the same filesystem
    # without environment variables; a real deployment would use the AWS credential chain instead
    return f"s3://test:test@studies/{prefix}?endpoint_override={endpoint}&scheme=http&region=us-east-1"


def _spec(storage: str, optuna_db: str, trials: int) -> dict:
    return {"name": "u", "methods": ["finetune"], "benchmark": SYNTH, "trials": trials, "concurrency": 2,
            "search": {"finetune": {**NET, "lr": {"low": 0.01, "high": 0.2}}},
            "storage": storage, "optuna_storage": f"sqlite:///{optuna_db}"}


def _rows(storage: str) -> list[dict]:
    return [r for m, t in list_trial_files(storage, "u") for r in read_trial_file(storage, "u", m, t)]


def test_uri_storage_needs_an_rdb_optuna_storage(s3_endpoint, tmp_path):
    from incsweep.study.runner import run_study

    spec = StudySpec.from_dict({**_spec(_uri(s3_endpoint, "no-rdb"), "x", 1), "optuna_storage": None})
    with pytest.raises(ConfigError, match="is a URI: give optuna_storage"):
        run_study(spec)


def test_study_on_s3_survives_kill_9_and_resumes_from_the_bucket(s3_endpoint, local_ray, tmp_path, kill_driver_when):
    from incsweep.analysis import load_results, pareto_front
    from incsweep.study.runner import run_study

    storage, db = _uri(s3_endpoint, "k"), tmp_path / "optuna.db"
    spec_path = tmp_path / "u.yaml"
    spec_path.write_text(yaml.safe_dump(_spec(storage, str(db), trials=5)))
    kill_driver_when(spec_path, lambda: sum(not r["is_final"] for r in _rows(storage)) >= 4)
    assert sum(r["is_final"] for r in _rows(storage)) < 5

    summary = run_study(StudySpec.from_dict(_spec(storage, str(db), trials=5)), resume=True)
    assert summary.done and summary.finished == 5
    rows = _rows(storage)
    keys = [(r["trial_id"], r["task"], r["is_final"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate rows"
    finals = [r for r in rows if r["is_final"]]
    real = [f for f in finals if not (f["error"] or "").startswith("orphaned")]
    assert len(real) == 5 and all(f["status"] == "complete" and f["tasks_done"] == 3 for f in real)
    for f in real:  # every task of a complete trial exactly once
        assert sorted(r["task"] for r in rows if r["trial_id"] == f["trial_id"] and not r["is_final"]) == [0, 1, 2]
    states = Counter(t.state.name for t in optuna.load_study(study_name="u", storage=f"sqlite:///{db}").get_trials())
    assert "RUNNING" not in states and states["COMPLETE"] == 5

    front = pareto_front(load_results(storage))  # the analysis reads the bucket directly
    assert 1 <= front.num_rows <= 5
    assert set(front.column("trial_id").to_pylist()) <= {f["trial_id"] for f in real}


def test_reads_racing_rewrites_see_whole_versions(s3_endpoint):
    """A trial rewrites its file after every task while `analyze` or a resume may read it. On S3 a
    read racing a rewrite used to tear ("Page was smaller than expected": 73 of 456 reads in 30 s
    here, and a red CI run); every read must now return one whole version, old or new."""
    import threading

    storage = _uri(s3_endpoint, "race")

    def rows(n: int) -> list[dict]:
        return [{"study": "u", "method": "finetune", "trial_id": "t1", "benchmark": "synthetic",
                 "scenario": "task_il", "task": i, "n_tasks": 40, "tasks_done": i + 1, "is_final": False,
                 "complete": False, "status": "running", "note": "x" * (50 * i)} for i in range(n)]

    write_trial_file(storage, rows(1))
    done, writes, sizes = threading.Event(), [0], Counter()

    def rewrite() -> None:
        while not done.is_set():  # alternate two sizes: a torn read mixes their byte ranges
            write_trial_file(storage, rows(1 if writes[0] % 2 else 40))
            writes[0] += 1

    writer = threading.Thread(target=rewrite)
    writer.start()
    try:
        deadline = time.time() + 8
        while time.time() < deadline:
            sizes[len(read_trial_file(storage, "u", "finetune", "t1"))] += 1
    finally:
        done.set()
        writer.join()
    assert writes[0] >= 10 and set(sizes) <= {1, 40} and sum(sizes.values()) >= 10, (writes, sizes)
