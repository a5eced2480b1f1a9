"""Experiment trackers a study spec names under ``callbacks:``, passed to Ray Tune as its own logger
callbacks: MLflow, Weights & Biases, TensorBoard and CSV.

Each trial's searched parameters (Tune's config) and every per-task report (the study's metrics,
both splits, memory, wall time) reach the tracker. Defaults keep everything on disk and off the
network: MLflow writes an SQLite store under the study's storage (``mlflow.db``; MLflow 3 refuses
its old file store unless ``MLFLOW_ALLOW_FILE_STORE=true``), W&B runs offline into the storage
(``mode: online`` to sync), TensorBoard and CSV write into each trial's Tune directory (Tune's own
loggers, on in every study unless ``TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1``; naming them checks
their package and brings them back under that variable). A tracker
whose package is missing is a one-line error at launch.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Any, Sequence

from incsweep.core.configs import from_mapping, spec, validate
from incsweep.core.errors import ConfigError

__all__ = ["TRACKERS", "TrackerSpec", "parse_trackers", "tune_callbacks", "build_callbacks", "env_defaults"]

TRACKERS = ("mlflow", "wandb", "tensorboard", "csv")
_PACKAGES = {"mlflow": "mlflow", "wandb": "wandb", "tensorboard": "tensorboardX"}  # what each one imports
_OPTIONS = {"mlflow": {"tracking_uri", "experiment_name"}, "wandb": {"project", "mode", "group"},
            "tensorboard": set(), "csv": set()}


@dataclass(frozen=True)
class TrackerSpec:
    name: str = spec("csv", choices=TRACKERS)
    tracking_uri: str | None = None  # mlflow: default sqlite:///<storage>/mlflow.db
    experiment_name: str | None = None  # mlflow: default the study's name
    project: str | None = None  # wandb: default the study's name
    group: str | None = None  # wandb: default Tune's experiment name
    mode: str = spec("offline", choices=("offline", "online", "disabled"))  # wandb: offline never touches the network

    def __post_init__(self) -> None:
        validate(self)
        given = {k for k in ("tracking_uri", "experiment_name", "project", "group") if getattr(self, k) is not None}
        if self.mode != "offline":
            given.add("mode")
        stray = sorted(given - _OPTIONS[self.name])
        if stray:
            raise ConfigError(f"callbacks: {self.name} takes {sorted(_OPTIONS[self.name]) or 'no options'}, "
                              f"not {stray}")
        if (self.tracking_uri or "").startswith("file:") and os.environ.get("MLFLOW_ALLOW_FILE_STORE") != "true":
            raise ConfigError(f"callbacks: mlflow tracking_uri={self.tracking_uri!r} is MLflow's file store, which "
                              "MLflow 3 refuses; use sqlite:///PATH/mlflow.db (the default, under the storage) or "
                              "an MLflow server, or set MLFLOW_ALLOW_FILE_STORE=true")
        package = _PACKAGES.get(self.name)
        if package and importlib.util.find_spec(package) is None:
            extra = {"mlflow": "mlflow (or mlflow-skinny)", "tensorboard": "tensorboardX"}.get(self.name, package)
            raise ConfigError(f"callbacks: {self.name} needs the {package} package, which is not installed; "
                              f"pip install {extra}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        for key in sorted(_OPTIONS[self.name]):
            value = getattr(self, key)
            if value is not None:
                d[key] = value
        return d


def parse_trackers(raw: Any) -> tuple[TrackerSpec, ...]:
    """``callbacks:`` as a list of names or ``{name: ..., option: ...}`` mappings."""
    if raw is not None and not isinstance(raw, (str, dict, list, tuple)):
        raise ConfigError(f"callbacks: {raw!r} is not allowed; give a list of tracker names ({', '.join(TRACKERS)}) "
                          "or of mappings like {name: mlflow, experiment_name: mine}")
    items = [raw] if isinstance(raw, (str, dict)) else list(raw or [])
    out = []
    for item in items:
        data = {"name": item} if isinstance(item, str) else item
        if not isinstance(data, dict):
            raise ConfigError(f"callbacks: {item!r} is not allowed; give a name ({', '.join(TRACKERS)}) or a "
                              "mapping like {name: mlflow, experiment_name: mine}")
        if data.get("name") not in TRACKERS:
            raise ConfigError(f"callbacks: {data.get('name')!r} is not allowed; choose one of {list(TRACKERS)}")
        out.append(from_mapping(TrackerSpec, data, where="callbacks"))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ConfigError(f"callbacks: {names} names a tracker twice")
    return tuple(out)


_MLFLOW_NEEDS_URI = ("callbacks: mlflow on storage {storage!r} needs tracking_uri (an MLflow server, or "
                     "sqlite:/// on a shared file system)")


def _local_root(storage: str) -> str | None:
    return storage.removeprefix("file://") if "://" not in storage or storage.startswith("file://") else None


def tune_callbacks(trackers: Sequence[TrackerSpec], *, study: str, storage: str) -> list:
    """What the runner gives Tune for ``trackers``: nothing for none, else one container that builds
    them (study/tracker_callbacks.py says why they are not handed over directly)."""
    if not trackers:
        return []
    for t in trackers:  # what building them would refuse, said before Ray starts (they are built later, aside)
        if t.name == "mlflow" and t.tracking_uri is None and _local_root(storage) is None:
            raise ConfigError(_MLFLOW_NEEDS_URI.format(storage=storage))
    from incsweep.study.tracker_callbacks import TrackerCallbacks  # imports Ray

    return [TrackerCallbacks(trackers, study=study, storage=storage)]


def build_callbacks(trackers: Sequence[TrackerSpec], *, study: str, storage: str) -> list:
    """Tune logger callbacks for ``trackers``. TensorBoard and CSV are Tune's own per-trial loggers,
    which Tune adds to every study unless TUNE_DISABLE_AUTO_CALLBACK_LOGGERS=1; naming them checks
    their package and, with that variable set, adds them back."""
    out: list[Any] = []
    root = _local_root(storage)
    for t in trackers:
        if t.name == "mlflow":
            from incsweep.study.mlflow_callback import StudyMLflowCallback  # imports MLflow's: only when asked

            uri = t.tracking_uri
            if uri is None:
                if root is None:
                    raise ConfigError(_MLFLOW_NEEDS_URI.format(storage=storage))
                os.makedirs(root, exist_ok=True)
                uri = "sqlite:///" + os.path.join(os.path.abspath(root), "mlflow.db")
            out.append(StudyMLflowCallback(tracking_uri=uri, experiment_name=t.experiment_name or study,
                                           save_artifact=False))
        elif t.name == "wandb":
            kwargs: dict[str, Any] = {"mode": t.mode}
            if root is not None:
                os.makedirs(root, exist_ok=True)
                kwargs["dir"] = os.path.abspath(root)  # wandb/ under the storage, not the working directory
            from incsweep.study.wandb_callback import StudyWandbCallback  # imports wandb: only when a study asks

            # the study groups its runs (Ray's default group is Tune's experiment name, "tune", for every study)
            out.append(StudyWandbCallback(project=t.project or study, group=t.group or study, **kwargs))
        elif os.environ.get("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0") == "1":
            from ray.tune.logger import CSVLoggerCallback, TBXLoggerCallback

            out.append(TBXLoggerCallback() if t.name == "tensorboard" else CSVLoggerCallback())
    return out


def env_defaults(trackers: Sequence[TrackerSpec]) -> dict[str, str]:
    """Environment the driver needs for the study's duration (the runner sets each unless the user
    did, and removes it after): ``WANDB_MODE`` when W&B is not online, so that nothing W&B starts in
    the driver's process (its service, a library's own ``wandb.init``) goes online either."""
    mode = next((t.mode for t in trackers if t.name == "wandb"), None)
    return {"WANDB_MODE": mode} if mode is not None and mode != "online" else {}

