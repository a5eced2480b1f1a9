"""The Ray Tune function trainable: one full incremental run of one method, reported task by task.

Tune passes a config dict built by the study (``study.runner``) and completed by the searcher:
``method`` and ``params`` (sampled method-config fields) plus the study's fixed parts under
``base`` (benchmark, scenario, seed, ...), ``prefix_cache`` (a directory or None) and ``threads``.

Every finished task is one ``tune.report`` carrying that task's metrics (validation metrics
unprefixed, so the last report holds the study objectives of the whole run: docs/ray-optuna.md trap 1)
and a checkpoint of the run state, from which Tune resumes a restarted trial exactly. The function
keeps nothing between calls, so actors can be reused across trials (``reuse_actors=True``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch

from incsweep.core.errors import ConfigError, DivergedError
from incsweep.core.vocabulary import FROM_CACHE, OPTIMISABLE
from incsweep.incremental.heartbeat import heartbeat_to, write_beat
from incsweep.incremental.prefix_cache import PrefixCache, cached_results, run_through_cache
from incsweep.incremental.run import CHECKPOINT_FILE, RunConfig, TaskResult, load_checkpoint

__all__ = ["TrialSpec", "run_trial", "task_metrics", "furthest_checkpoint", "OBJECTIVE_SENTINEL"]

from incsweep.trainables.boundary import REPLAYED, TrialConfig
from incsweep.trainables.workdir import trial_workdir

log = logging.getLogger(__name__)

OBJECTIVE_SENTINEL = "run_done"  # reported True on the report that ends a run (complete or diverged)


@dataclass(frozen=True)
class TrialSpec:
    """What one trial runs, parsed from Tune's config dict at the trainable's boundary."""

    study: str
    run_config: RunConfig
    params: Mapping[str, Any]
    prefix_cache: str | None
    prefix_cache_max_bytes: int | None
    threads: int
    tasks: int | None = None  # stop after this many tasks (protocol first_task); None: the whole stream
    resume_from: tuple[str, ...] = ()  # checkpoints of the interrupted trial this one continues

    @property
    def horizon(self) -> int:
        """The tasks this trial runs (its last report ends the run)."""
        n = len(self.run_config.benchmark.task_sizes)
        return n if self.tasks is None else min(self.tasks, n)

    @classmethod
    def from_trial_config(cls, trial: TrialConfig, device: str) -> "TrialSpec":
        run_dict = {**trial.base, "method": trial.method, "device": device, "threads": trial.threads,
                    "method_config": {**dict(trial.base.get("method_config") or {}), **trial.params}}
        return cls(study=trial.study, run_config=RunConfig.from_dict(run_dict), params=dict(trial.params),
                   prefix_cache=trial.prefix_cache, prefix_cache_max_bytes=trial.prefix_cache_max_bytes,
                   threads=trial.threads, tasks=trial.tasks, resume_from=trial.resume_from)


def task_metrics(result: TaskResult, config: RunConfig, started_at: str, horizon: int | None = None) -> dict[str, Any]:
    """The metrics of one task as reported to Tune (flat scalars plus the JSON the sink needs);
    ``horizon``: the tasks the trial runs (None: the benchmark's), whose last report ends the run."""
    flat = result.flat()
    last = result.n_tasks if horizon is None else horizon
    return {**flat, "tasks_done": result.task + 1, OBJECTIVE_SENTINEL: result.task + 1 == last,
            "diverged": False, "method": config.method, "task_result_json": json.dumps(result.as_dict()),
            "config_json": config.to_json(), "started_at": started_at}


def _device() -> str:
    """The GPU Ray assigned to this trial (it sets CUDA_VISIBLE_DEVICES), else the CPU."""
    import ray

    try:
        gpus = ray.get_gpu_ids()
    except Exception:  # noqa: BLE001 - outside a Ray worker (direct call): no assignment
        gpus = []
    return "cuda" if gpus and torch.cuda.is_available() else "cpu"


def run_trial(config: Mapping[str, Any]) -> None:
    """Tune function trainable (the method is ``config["method"]``)."""
    from ray import tune

    try:
        trial = TrialConfig.from_tune(config)
        spec = TrialSpec.from_trial_config(trial, "cpu" if trial.device == "cpu" else _device())
    except (ConfigError, FileNotFoundError) as exc:
        # Deterministic (this sampled combination is invalid): a Tune retry would fail the same way.
        tune.report(_failed_report(exc, str(config.get("method", "")), json.dumps(dict(config), default=str), 0,
                                   datetime.now(timezone.utc).isoformat()))
        return
    run_cfg = spec.run_config
    started_at = datetime.now(timezone.utc).isoformat()
    cache = (PrefixCache(spec.prefix_cache, max_bytes=spec.prefix_cache_max_bytes)
             if spec.prefix_cache else None)

    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            state = load_checkpoint(Path(d) / CHECKPOINT_FILE)
        log.info("trial resumes after %d task(s) from its Tune checkpoint", len(state["results"]))
    # A continuation (a resumed study's interrupted trial) reports again every task its checkpoint
    # holds: the killed driver may have stored the checkpoint of a task whose row it never wrote.
    # The sink keeps rows it already has (trainables.boundary.REPLAYED).
    replay = checkpoint is None and bool(spec.resume_from)
    if replay:
        state = furthest_checkpoint(spec.resume_from)
        replay = state is not None

    horizon = spec.horizon
    if state is not None and len(state["results"]) >= horizon:
        # Restored after its last task (the driver died before recording the end): report the final
        # task again so the trial ends with the whole run's objectives, not an older report's.
        finished = [TaskResult.from_dict(r) for r in state["results"][:horizon]]
        for result in finished if replay else finished[-1:]:
            tune.report({**task_metrics(result, run_cfg, started_at, horizon), REPLAYED: replay})
        return

    with trial_workdir() as work:
        ckpt_dir = Path(work)
        if replay:
            assert state is not None  # replay is set only when a checkpoint loaded
            _report_stored(run_cfg, state, ckpt_dir, started_at, horizon, REPLAYED)

        def on_cached(cached: Mapping[str, Any]) -> None:
            log.info("trial starts from a cached prefix of %d task(s)", len(cached["results"]))
            _report_stored(run_cfg, cached, ckpt_dir, started_at, horizon, FROM_CACHE)

        def on_task_end(result: TaskResult) -> None:
            tune.report(task_metrics(result, run_cfg, started_at, horizon),
                        checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)))

        try:
            with _heartbeat(trial):
                run_through_cache(run_cfg, cache, on_task_end, checkpoint_dir=ckpt_dir, initial_state=state,
                                  on_cached=on_cached, stop_after=spec.tasks)
        except (ConfigError, FileNotFoundError) as exc:  # deterministic: no Tune retry
            done = len(load_checkpoint(ckpt_dir / CHECKPOINT_FILE)["results"]) if (ckpt_dir / CHECKPOINT_FILE).exists() else 0
            tune.report(_failed_report(exc, run_cfg.method, run_cfg.to_json(), done, started_at))
        except DivergedError as exc:
            # Deterministic: retrying cannot help, so end the trial with a report the study records
            # as diverged (Optuna: FAIL, since NaN is not an acceptable objective: trap 6).
            done = len(load_checkpoint(ckpt_dir / CHECKPOINT_FILE)["results"]) if (ckpt_dir / CHECKPOINT_FILE).exists() else 0
            tune.report({"tasks_done": done, "diverged": True, "error": f"{type(exc).__name__}: {exc}",
                         OBJECTIVE_SENTINEL: True, **{name: math.nan for name in OPTIMISABLE},
                         "method": run_cfg.method, "config_json": run_cfg.to_json(), "started_at": started_at})


@contextlib.contextmanager
def _heartbeat(trial: TrialConfig) -> Iterator[None]:
    """The trial's heartbeat file, ``<heartbeat_dir>/<its id in the study>.json`` (the driver's
    ProgressLog reads it during long tasks), removed when the run ends: a finished study keeps no
    file per trial. No heartbeat_dir: nothing is written."""
    if trial.heartbeat_dir is None:
        yield
        return
    from ray import tune

    path = Path(trial.heartbeat_dir) / f"{trial.key or tune.get_context().get_trial_id()}.json"
    try:
        with heartbeat_to(write_beat(path), every_s=HEARTBEAT_WRITE_S):
            yield
    finally:
        path.unlink(missing_ok=True)


# How often a trial rewrites its heartbeat: often enough that the driver's line (every
# ProgressLog.heartbeat_s) is current, rare enough to cost nothing (one small file per few seconds).
HEARTBEAT_WRITE_S = 5.0


def furthest_checkpoint(locations: tuple[str, ...]) -> dict[str, Any] | None:
    """The run state with the most finished tasks among the checkpoint directories ``locations``
    (paths or URIs) of an interrupted trial; one that does not load (a kill during its upload) is
    skipped. None: none loads, so the trial starts over."""
    from ray import tune

    best: dict[str, Any] | None = None
    for location in locations:
        try:
            with tune.Checkpoint(location).as_directory() as d:
                state = load_checkpoint(Path(d) / CHECKPOINT_FILE)
            done = len(state["results"])
        except Exception as exc:  # noqa: BLE001 - any damage means: not this one
            log.warning("checkpoint %s of the interrupted trial does not load (%s: %s); skipped",
                        location, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            continue
        if best is None or done >= len(best["results"]):
            best = state
    if best is None:
        log.warning("no checkpoint of the interrupted trial loads; it starts over")
    else:
        log.info("trial continues an interrupted one after %d task(s)", len(best["results"]))
    return best


def _failed_report(exc: BaseException, method: str, config_json: str, done: int, started_at: str) -> dict[str, Any]:
    """The report that ends a trial whose error would repeat on every retry: recorded as ``error``
    (Optuna: FAIL), with the one-line message."""
    return {"tasks_done": done, "failed": True, "error": f"{type(exc).__name__}: {exc}", OBJECTIVE_SENTINEL: True,
            **{name: math.nan for name in OPTIMISABLE}, "method": method, "config_json": config_json,
            "started_at": started_at}


def _report_stored(config: RunConfig, state: Mapping[str, Any], ckpt_dir: Path, started_at: str, horizon: int,
                   flag: str) -> None:
    """Report the tasks a stored state carries (a prefix-cache hit: ``flag`` FROM_CACHE; a
    continuation's checkpoint: REPLAYED) so the sink and the scheduler see them, the last one with
    the checkpoint that Tune would resume from."""
    from ray import tune

    from incsweep.incremental.run import save_checkpoint

    save_checkpoint(ckpt_dir / CHECKPOINT_FILE, dict(state))
    results = cached_results(state)
    for i, result in enumerate(results):
        metrics = task_metrics(result, config, started_at, horizon)
        metrics[flag] = True
        last = i == len(results) - 1
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(ckpt_dir)) if last else None)
