"""`callbacks:` in a study spec: a real study on the embedded Ray logs to MLflow
(a local SQLite store), W&B (offline mode, no network), TensorBoard and CSV; each run's parameters
and per-task metrics are read back from the tracker's own files and compared with the Parquet rows."""

from __future__ import annotations

import csv
import glob
import importlib.util
import json
import struct
from collections import Counter
from pathlib import Path

import pytest

from incsweep.core.errors import ConfigError
from incsweep.core.vocabulary import REPORTED
from incsweep.study.results import list_trial_files, read_trial_file
from incsweep.study.spec import StudySpec
from incsweep.study.trackers import parse_trackers

pytestmark = pytest.mark.skipif(any(importlib.util.find_spec(p) is None for p in ("mlflow", "wandb", "tensorboardX")),
                                reason="mlflow, wandb and tensorboardX are dev dependencies")

SPEC = {"name": "trk", "methods": ["finetune"], "trials": 2, "concurrency": 2,
        "benchmark": {"name": "synthetic", "n_classes": 6, "image_size": 16, "train_per_class": 24,
                      "test_per_class": 8, "val_fraction": 0.25},
        "search": {"finetune": {"backbone": "tiny", "width": 8, "epochs": 1, "batch_size": 16}},
        "callbacks": ["mlflow", {"name": "wandb", "mode": "offline"}, "tensorboard", "csv"]}


def wandb_records(path: str):
    """The protobuf records of a .wandb file (W&B's LevelDB-log layout: 32 KiB blocks of records with
    a 7-byte header, CRC32 + length + type, after a 7-byte ':W&B' file header)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, buf, block = Path(path).read_bytes(), 7, b"", 32768
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if length == 0 and kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (2, 3):  # FIRST, MIDDLE
            buf += chunk
            continue
        record = pb.Record()
        record.ParseFromString(buf + chunk)  # FULL or LAST
        buf = b""
        yield record


def tensorboard_scalars(path: str, tag: str) -> list[tuple[int, float]]:
    """(step, value) of ``tag`` in a TFRecord events file (length, CRC, Event proto, CRC)."""
    from tensorboardX.proto import event_pb2

    data, pos, out = Path(path).read_bytes(), 0, []
    while pos < len(data):
        (n,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event()
        event.ParseFromString(data[pos + 12:pos + 12 + n])
        pos += 12 + n + 4
        out += [(event.step, v.simple_value) for v in event.summary.value if v.tag == tag]
    return out


@pytest.fixture(scope="module")
def study(local_ray, tmp_path_factory):
    from incsweep.study.runner import run_study

    storage = tmp_path_factory.mktemp("trk") / "st"
    spec = StudySpec.from_dict({**SPEC, "storage": str(storage)})
    assert run_study(spec).done
    rows = [r for m, t in list_trial_files(str(storage), "trk") for r in read_trial_file(str(storage), "trk", m, t)]
    per_trial: dict[str, list[float]] = {}
    for r in sorted((r for r in rows if not r["is_final"]), key=lambda r: r["task"]):
        per_trial.setdefault(r["trial_id"], []).append(r["avg_acc"])
    lrs = {r["trial_id"]: r["param_lr"] for r in rows if r["is_final"]}
    return storage, per_trial, lrs


def test_mlflow_has_each_runs_params_and_per_task_metrics(study):
    from mlflow.tracking import MlflowClient

    storage, per_trial, lrs = study
    client = MlflowClient(f"sqlite:///{storage}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("trk").experiment_id])
    assert len(runs) == 2
    for run in runs:
        trial = run.data.tags["trial_name"].rsplit("_", 1)[1]
        history = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "avg_acc"), key=lambda m: m.step)]
        assert history == pytest.approx(per_trial[trial])  # every task, the values Parquet holds
        assert float(run.data.params["finetune.lr"]) == pytest.approx(lrs[trial]) and run.data.params["method"] == "finetune"
        # clean records: the parameters once (no "params/lr" beside "finetune.lr", no paths), metrics
        # only the per-task ones (no Tune timers, no config values), the run named after the method
        assert {k for k in run.data.params if k != "method"} == {k for k in run.data.params if k.startswith("finetune.")}
        assert set(run.data.metrics) <= set(REPORTED) | {"tasks_done"} and "avg_acc" in run.data.metrics
        assert run.info.run_name == f"finetune_{trial}" and run.data.tags["study"] == "trk"


def test_wandb_offline_runs_hold_config_and_history(study):
    storage, per_trial, lrs = study
    files = sorted(glob.glob(f"{storage}/wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 2
    for path in files:
        records = list(wandb_records(path))
        def key(item) -> str:
            return item.key or "/".join(item.nested_key)

        # the run's config: given to wandb.init (the run record) and any later update (config records)
        config = {key(i): json.loads(i.value_json) for r in records
                  for i in (r.run.config.update if r.WhichOneof("record_type") == "run" else
                            r.config.update if r.WhichOneof("record_type") == "config" else ())}
        history = [{key(i): json.loads(i.value_json) for i in r.history.item}
                   for r in records if r.WhichOneof("record_type") == "history"]
        # Seen twice in CI under load, not reproduced since (not root-caused): a run file whose config
        # records lacked trial_id. What the file and W&B's own log held is kept in the failure message.
        kinds = Counter(r.WhichOneof("record_type") for r in records)
        logs = sorted(Path(path).parent.glob("logs/debug*.log"))
        assert "trial_id" in config, (path, dict(kinds), sorted(config), [lg.read_text()[-3000:] for lg in logs])
        trial = config["trial_id"]
        assert [h["avg_acc"] for h in history] == pytest.approx(per_trial[trial])
        assert config["method"] == "finetune" and config["finetune.lr"] == pytest.approx(lrs[trial])
        assert not {"params", "prefix_cache", "heartbeat_dir", "resume_from"} & set(config)  # plumbing left out
        logged = {k for h in history for k in h if not k.startswith("_")}  # W&B's own _step, _runtime, ...
        assert logged <= set(REPORTED) | {"tasks_done"} and "avg_acc" in logged
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"][:1]
        assert run.display_name == f"finetune_{trial}" and run.run_group == "trk"


def test_tensorboard_and_csv_files_in_each_trial(study):
    storage, per_trial, _ = study
    for trial, accs in per_trial.items():
        folder = storage / "tune" / f"trial_{trial}"
        (events,) = glob.glob(f"{folder}/events.out.tfevents*")
        assert [v for _, v in tensorboard_scalars(events, "ray/tune/avg_acc")] == pytest.approx(accs, abs=1e-6)
        with open(folder / "progress.csv") as fh:
            assert [float(r["avg_acc"]) for r in csv.DictReader(fh)] == pytest.approx(accs)


def test_bad_callbacks_are_one_line_errors():
    with pytest.raises(ConfigError, match=r"callbacks: .*'comet'.* is not allowed; choose one of \['mlflow'"):
        parse_trackers(["comet"])
    with pytest.raises(ConfigError, match=r"callbacks: csv takes no options, not \['project'\]"):
        parse_trackers([{"name": "csv", "project": "x"}])
    with pytest.raises(ConfigError, match="names a tracker twice"):
        parse_trackers(["csv", "csv"])
    with pytest.raises(ConfigError, match="MLflow's file store, which MLflow 3 refuses"):
        parse_trackers([{"name": "mlflow", "tracking_uri": "file:./mlruns"}])


def test_the_tracker_callback_pickles_to_its_specs(study):
    """Tune pickles callbacks into tuner.pkl on every snapshot; the container pickles to its specs
    only (the MLflow and W&B callbacks it built are dropped) and builds them again where it runs."""
    import pickle

    from ray import cloudpickle

    from incsweep.study.tracker_callbacks import TrackerCallbacks

    storage, _, _ = study
    box = TrackerCallbacks(StudySpec.from_dict(SPEC).callbacks, study="trk", storage=str(storage))
    assert box.callbacks  # built (MLflow and W&B), then dropped from the pickle
    again = pickle.loads(cloudpickle.dumps(box))
    assert again._built is None and again.trackers == box.trackers
    assert again.callbacks  # built again where it is used


def test_trackers_run_off_tunes_loop_in_order_and_a_failing_one_is_logged_once(caplog):
    """The container makes the trackers' calls in one background thread, in Tune's order; the end of
    the experiment waits for all of them; a tracker that raises is logged once per hook and the
    study's calls go on."""
    import threading
    from types import SimpleNamespace

    from ray.tune.logger import LoggerCallback

    from incsweep.study.tracker_callbacks import TrackerCallbacks

    seen: list[tuple[str, str, bool]] = []

    class Recording(LoggerCallback):
        def log_trial_start(self, trial):
            seen.append(("start", trial.trial_id, threading.current_thread() is threading.main_thread()))

        def log_trial_result(self, iteration, trial, result):
            seen.append(("result", trial.trial_id, threading.current_thread() is threading.main_thread()))
            if result["n"] == 2:
                raise RuntimeError("tracker down")

        def log_trial_end(self, trial, failed=False):
            seen.append(("end", trial.trial_id, threading.current_thread() is threading.main_thread()))

    box = TrackerCallbacks((), study="s", storage="unused")
    box._built = [Recording()]  # noqa: SLF001 - the built trackers, as build_callbacks would give them
    trial = SimpleNamespace(trial_id="t1", config={}, status="RUNNING")
    box.on_trial_start(iteration=0, trials=[trial], trial=trial)
    for n in (1, 2, 3, 2):
        box.on_trial_result(iteration=n, trials=[trial], trial=trial, result={"n": n})
    box.on_trial_complete(iteration=5, trials=[trial], trial=trial)
    box.on_experiment_end(trials=[trial])
    assert [(k, t) for k, t, _ in seen] == [("start", "t1")] + [("result", "t1")] * 4 + [("end", "t1")]
    assert not any(main for _, _, main in seen)
    failures = [r for r in caplog.records if "failed (RuntimeError: tracker down)" in r.getMessage()]
    assert len(failures) == 1


def test_prepare_builds_the_trackers_aside_and_makes_mlflows_store(tmp_path):
    """The runner calls prepare() before Ray starts: the trackers are built (MLflow, W&B imported) and
    MLflow's SQLite schema made in the background thread, not in Tune's setup; a storage MLflow cannot
    use without a tracking_uri is refused before any of it."""
    import sqlite3
    import threading

    from incsweep.study.tracker_callbacks import TrackerCallbacks
    from incsweep.study.trackers import tune_callbacks

    box = TrackerCallbacks(StudySpec.from_dict(SPEC).callbacks, study="trk", storage=str(tmp_path))
    box.prepare()
    assert box._thread is not None and box._thread is not threading.current_thread()  # noqa: SLF001
    box.on_experiment_end(trials=[])  # waits for every queued call
    assert box._built is not None  # noqa: SLF001 - built by the thread
    tables = {r[0] for r in sqlite3.connect(tmp_path / "mlflow.db").execute("select name from sqlite_master")}
    assert {"experiments", "runs", "metrics", "alembic_version"} <= tables
    with pytest.raises(ConfigError, match="mlflow on storage 's3://bucket/s' needs tracking_uri"):
        tune_callbacks(parse_trackers(["mlflow"]), study="trk", storage="s3://bucket/s")


def _schema_and_rows(db: Path) -> tuple[list, dict]:
    import sqlite3

    con = sqlite3.connect(db)
    # each statement's lines as a set: MLflow's own migrations order a table's constraints differently
    # from one store to the next (seen: "runs")
    schema = [(kind, name, table, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
              for kind, name, table, sql in con.execute("select type, name, tbl_name, sql from sqlite_master "
                                                        "order by type, name")]
    tables = [name for kind, name, _, _ in schema if kind == "table" and not name.startswith("sqlite_")]
    # the Default experiment's times are when it was made; everything else must be equal
    rows = {t: sorted(map(repr, con.execute(f'select * from "{t}"').fetchall())) for t in tables if t != "experiments"}
    rows["experiments"] = con.execute("select experiment_id, name, artifact_location, lifecycle_stage "
                                      "from experiments").fetchall()
    con.close()
    return schema, rows


def test_a_new_mlflow_store_is_a_copy_of_the_schema_mlflow_makes(tmp_path, monkeypatch, caplog):
    """MLflow's ~60 migrations run once per set of versions (into the cache); every later new store is a
    copy, equal to the store MLflow makes itself (schema, alembic revision, rows, the Default experiment
    made where MLflow would), and it holds a study's runs. A template changed since it was made is made again."""
    import sqlite3

    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    from incsweep.study.mlflow_callback import StudyMLflowCallback, _template_path

    monkeypatch.setenv("INCSWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/by_mlflow.db").search_experiments()  # MLflow's own, no copy

    def prepared(name: str) -> StudyMLflowCallback:
        cb = StudyMLflowCallback(tracking_uri=f"sqlite:///{tmp_path}/{name}/mlflow.db", experiment_name="trk",
                                 save_artifact=False)
        cb.prepare()
        return cb

    assert not _template_path().exists()
    prepared("first")
    assert _template_path().exists()
    mtime = _template_path().stat().st_mtime_ns
    second = prepared("second")
    assert _template_path().stat().st_mtime_ns == mtime  # copied, not made again
    expected = _schema_and_rows(tmp_path / "by_mlflow.db")
    assert _schema_and_rows(tmp_path / "second" / "mlflow.db") == expected
    assert _schema_and_rows(tmp_path / "first" / "mlflow.db") == expected

    client = second._batch_client()  # noqa: SLF001
    run = client.create_run(client.create_experiment("trk"))
    second._batch(run.info.run_id, params=[Param("finetune.lr", "0.1")])  # noqa: SLF001
    read = MlflowClient(f"sqlite:///{tmp_path}/second/mlflow.db").get_run(run.info.run_id)
    assert read.data.params == {"finetune.lr": "0.1"}

    # a template changed since MLflow made it (by hand, a bad disk): not copied, made again
    con = sqlite3.connect(_template_path())
    con.execute("update alembic_version set version_num = 'not-a-revision'")
    con.commit()
    con.close()
    prepared("third")
    assert _template_path().stat().st_mtime_ns != mtime
    assert _schema_and_rows(tmp_path / "third" / "mlflow.db") == expected
