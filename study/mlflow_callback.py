"""Ray's MLflow callback with a study's records: one run per trial, named ``<method>_<trial id>`` and
tagged with the study, its parameters once (the method and the searched values under Optuna's names,
``finetune.lr``), and per-task metrics only (what ``REPORTED`` names: accuracies on both splits,
memory, time) at step = tasks done. Ray's own logs the whole trial config as parameters and every
number of every result (Tune's timers, flattened config values) as metrics. Module level, so Tune can
pickle it; importing it imports MLflow's callback, which only studies with ``callbacks: [mlflow]`` pay for."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from ray.air.integrations.mlflow import MLflowLoggerCallback

from incsweep.incremental.datasets import default_cache_dir
from incsweep.study.tracker_records import TASKS_DONE, study_params, tracked_metrics
from incsweep.trainables.boundary import trial_key

__all__ = ["StudyMLflowCallback", "seed_sqlite_store"]

log = logging.getLogger(__name__)


class StudyMLflowCallback(MLflowLoggerCallback):
    # Ray's helper logs each metric and parameter in a call (an SQL transaction) of its own, after
    # checking that the run exists: ~20 metrics a task made MLflow +6% of the demo study's time.
    # One ``log_batch`` per task and one for the parameters instead.
    _client: MlflowClient | None = None

    def _batch(self, run_id: str, *, metrics: list[Metric] | None = None, params: list[Param] | None = None) -> None:
        self._batch_client().log_batch(run_id, metrics=metrics or [], params=params or [])

    def prepare(self) -> None:
        """Create the tracking store before Tune's setup needs it: a new SQLite store is a copy of the
        empty schema (``seed_sqlite_store``), an existing one (a resumed study) MLflow's own."""
        db = _sqlite_path(self.tracking_uri)
        if db is not None:
            seed_sqlite_store(db)
        self._batch_client().get_experiment_by_name(self.experiment_name or "Default")

    def _batch_client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    def log_trial_start(self, trial: Any) -> None:
        if trial in self._trial_runs:
            return
        config = trial.config or {}
        key, method = trial_key(trial), str(config.get("method", ""))
        name = f"{method}_{key}"
        tags = {**(self.tags or {}), "trial_name": name, "trial_id": key, "method": method, "study": str(config.get("study", ""))}
        run = self.mlflow_util.start_run(tags=tags, run_name=name)
        self._trial_runs[trial] = run.info.run_id
        self._batch(run.info.run_id, params=[Param(k, str(v)) for k, v in study_params(config).items()])

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        metrics = tracked_metrics(result)
        if metrics:
            step = int(result.get(TASKS_DONE) or iteration)
            now = int(time.time() * 1000)
            self._batch(self._trial_runs[trial], metrics=[Metric(k, v, now, step) for k, v in metrics.items()])


# -- a new SQLite store, copied from the empty schema ------------------------------------------------
# MLflow makes a new SQLite store by creating its first tables and running every schema migration since
# (alembic, ~60 of them): 0.65 s of CPU here, half of MLflow's start-up cost in a study (its import 0.74 s),
# and the largest part of all four trackers' overhead on the tiny study (benchmarks/results/
# tracker_overhead.txt). That schema depends only on MLflow's migrations and the libraries that run them,
# so it is made once for each such set (named by their versions and the migrations' file names, which
# also tells apart two development installs of one version), under the cache folder, and copied. Its
# SHA-256, written beside it when MLflow made it, is checked at each copy: a template changed since is
# made again. MLflow still checks the schema revision of every store it opens.


def _migrations_dir() -> Path:
    return Path(mlflow.__file__).parent / "store" / "db_migrations" / "versions"


def _template_path() -> Path:
    import alembic  # what an SQLite store needs; not what MLflow needs for a server (mlflow-skinny)
    import sqlalchemy

    migrations = _migrations_dir()
    names = sorted(p.name for p in migrations.glob("*.py"))
    if not names:
        raise OSError(f"no MLflow migrations under {migrations}")
    versions = f"mlflow-{mlflow.__version__}_sqlalchemy-{sqlalchemy.__version__}_alembic-{alembic.__version__}"
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    return default_cache_dir() / "mlflow-schema" / f"{versions}_{digest}.db"


def _sqlite_path(uri: str | None) -> Path | None:
    """The file of an ``sqlite:///`` tracking URI (absolute or relative), else None."""
    if not uri or not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _atomic_write(target: Path, *, copy_of: Path | None = None, text: str = "") -> None:
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}")  # a new file: the umask's mode, as MLflow's
    try:
        if copy_of is not None:
            shutil.copyfile(copy_of, tmp)
        else:
            tmp.write_text(text)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _make_template(template: Path) -> None:
    """MLflow makes a store in a scratch file; its one row that depends on where and when it was made (the
    Default experiment, with an artifact folder under the working directory) is removed, as MLflow
    creates it again in a store without experiments; then the file becomes the template, its SHA-256
    beside it."""
    template.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=template.parent, prefix=".make-") as scratch:
        db = Path(scratch) / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
        con = sqlite3.connect(db)
        with con:
            con.execute("DELETE FROM experiment_tags")
            con.execute("DELETE FROM experiments")
        con.execute("VACUUM")
        con.close()
        _atomic_write(template, copy_of=db)
        _atomic_write(template.with_suffix(".sha256"), text=_sha256(db))


def _checked_template() -> Path:
    template = _template_path()
    made = template.with_suffix(".sha256")
    if not (template.exists() and made.exists() and made.read_text().strip() == _sha256(template)):
        _make_template(template)
    return template


def seed_sqlite_store(db: Path) -> bool:
    """Make a new SQLite store at ``db`` as a copy of the empty schema of this MLflow (made on first use);
    False, and nothing done, when ``db`` exists or the copy cannot be made (MLflow then makes it)."""
    if db.exists():
        return False
    try:
        template = _checked_template()
        db.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(db, copy_of=template)
        return True
    except (OSError, sqlite3.Error) as exc:  # a read-only cache, a full disk: MLflow makes the store itself
        log.info("no copy of MLflow's schema for %s (%s); MLflow makes the store", db, exc)
        return False
