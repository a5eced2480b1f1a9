"""What crosses the Ray boundary into a trial: one typed, validated ``TrialConfig``.

Tune keeps a trial's config as a plain dict (it snapshots it and shows it), so the dict stays the
wire format; but it is built (``TrialConfig.shared``, the study's part of Tune's ``param_space``;
the searcher adds ``method`` and ``params``) and read (``TrialConfig.from_tune``: the trainable and
the driver's Parquet sink) only here. Torch-free: the driver's sink reads it too.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from incsweep.core.errors import ConfigError

__all__ = ["TrialConfig", "DEVICES", "REPLAYED", "trial_key"]

DEVICES = ("auto", "cpu")  # auto: the GPU Ray assigns the trial, else the CPU (StudySpec.device)
# A report of a task the trial's checkpoint already held (a continuation replays them): the sink keeps
# the row it has, if any, and writes the row it lacks.
REPLAYED = "replayed"
_CONTINUATION = ("key", "resume_from")  # set by the searcher on a resumed study's continued trials only


@dataclass(frozen=True)
class TrialConfig:
    """One trial: the study's shared run fields (``base``: StudySpec.base_run) plus the searcher's
    ``method`` and ``params``, and how the trial runs."""

    study: str
    method: str
    base: Mapping[str, Any]  # RunConfig fields every trial of the study shares (benchmark, seed, ...)
    params: Mapping[str, Any]  # the searched method-config values
    device: str = "auto"
    prefix_cache: str | None = None  # directory of the study's prefix cache; None: off
    prefix_cache_max_bytes: int | None = None
    threads: int = 1  # torch threads: the trial's CPU share
    tasks: int | None = None  # stop after this many tasks (protocol first_task: 1); None: the whole stream
    # A resumed study continues an interrupted trial under a new Tune trial (study/resume.py): ``key``
    # is the trial's id in the study (its first Tune trial id: its Parquet file and Optuna's
    # tune_trial_id), ``resume_from`` the checkpoint locations it may start from (a path or a URI).
    key: str | None = None
    resume_from: tuple[str, ...] = ()
    # Where the trial writes its heartbeat (epochs and batches done in the running task) for the
    # driver's progress lines: a directory on the study's local storage; None: no heartbeat.
    heartbeat_dir: str | None = None

    def __post_init__(self) -> None:
        for name, kind in (("study", str), ("method", str)):
            if not isinstance(getattr(self, name), kind) or not getattr(self, name):
                raise ConfigError(f"trial config: {name}={getattr(self, name)!r} must be a non-empty string")
        for name in ("base", "params"):
            if not isinstance(getattr(self, name), Mapping):
                raise ConfigError(f"trial config: {name} must be a mapping, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.base.get("benchmark"), Mapping) or "name" not in self.base["benchmark"]:
            raise ConfigError("trial config: base.benchmark must be a benchmark mapping with a name")
        if self.device not in DEVICES:
            raise ConfigError(f"trial config: device={self.device!r}; allowed {list(DEVICES)}")
        if isinstance(self.threads, bool) or not isinstance(self.threads, int) or self.threads < 1:
            raise ConfigError(f"trial config: threads={self.threads!r} must be a whole number >= 1")
        if self.key is not None and (not isinstance(self.key, str) or not self.key):
            raise ConfigError(f"trial config: key={self.key!r} must be a non-empty string or None")
        if not isinstance(self.resume_from, tuple) or not all(isinstance(x, str) for x in self.resume_from):
            raise ConfigError(f"trial config: resume_from={self.resume_from!r} must be a list of strings")
        if self.heartbeat_dir is not None and (not isinstance(self.heartbeat_dir, str) or not self.heartbeat_dir):
            raise ConfigError(f"trial config: heartbeat_dir={self.heartbeat_dir!r} must be a directory or None")
        if self.tasks is not None and (isinstance(self.tasks, bool) or not isinstance(self.tasks, int) or self.tasks < 1):
            raise ConfigError(f"trial config: tasks={self.tasks!r} must be a whole number >= 1 or None")

    @classmethod
    def shared(cls, *, study: str, base: Mapping[str, Any], device: str, prefix_cache: str | None,
               prefix_cache_max_bytes: int | None, threads: int, tasks: int | None = None,
               heartbeat_dir: str | None = None) -> dict[str, Any]:
        """The study's part of Tune's ``param_space`` (validated as a whole trial would be)."""
        probe = cls(study=study, method="?", base=dict(base), params={}, device=device, prefix_cache=prefix_cache,
                    prefix_cache_max_bytes=prefix_cache_max_bytes, threads=threads, tasks=tasks,
                    heartbeat_dir=heartbeat_dir)
        # ``tasks`` and ``heartbeat_dir`` travel only when set: a Tune config stays as it was without them.
        return {k: v for k, v in probe.to_tune().items()
                if k not in ("method", "params", *_CONTINUATION) and not (k in ("tasks", "heartbeat_dir") and v is None)}

    @classmethod
    def from_tune(cls, config: Mapping[str, Any]) -> "TrialConfig":
        """Parse Tune's config dict of a trial; a missing or unknown key is a ConfigError."""
        names = {f.name for f in dataclasses.fields(cls)}
        # OptunaSearch also puts Optuna's own flat parameter names ("<method>.<param>",
        # search_spaces.optuna_name) into the config; ``params`` holds the same values by field name.
        unknown = sorted(k for k in set(config) - names if "." not in k)
        if unknown:
            raise ConfigError(f"trial config: unknown key(s) {unknown}; allowed {sorted(names)}")
        missing = sorted(n for n in ("study", "method", "base") if n not in config)
        if missing:
            raise ConfigError(f"trial config: missing key(s) {missing}")
        known = {k: v for k, v in config.items() if k in names}
        resume_from = config.get("resume_from") or ()
        if isinstance(resume_from, list):
            resume_from = tuple(resume_from)
        return cls(**{**known, "base": dict(config["base"]), "params": dict(config.get("params") or {}),
                      "resume_from": resume_from})

    def to_tune(self) -> dict[str, Any]:
        """The plain dict Tune carries (the inverse of ``from_tune``); the continuation fields only
        where set, so a first run's config is what it always was."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} | {
            "base": dict(self.base), "params": dict(self.params), "resume_from": list(self.resume_from)}
        return {k: v for k, v in out.items() if k not in _CONTINUATION or v}

    @property
    def benchmark(self) -> str:
        return str(self.base["benchmark"]["name"])

    @property
    def seed(self) -> int:
        return int(self.base.get("seed", 0))

    @property
    def scenario(self) -> str | None:
        return self.base.get("scenario")


def trial_key(trial: Any) -> str:
    """A Tune trial's id in the study: the interrupted trial it continues (``key``), else its own."""
    config = getattr(trial, "config", None) or {}
    key = config.get("key") if isinstance(config, Mapping) else None
    return key if isinstance(key, str) and key else str(trial.trial_id)
