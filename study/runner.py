"""Study spec -> Tuner + StudySearcher (+ ASHA on the task axis) on a local or existing Ray cluster.

``run_study`` starts a study (or, with ``resume=True``, continues one from its storage directory:
Tune's snapshot when there is one, otherwise a fresh Tuner for the trials still missing) and
returns a summary read back from the Parquet results, the source of truth for what finished
(never Tune's ResultGrid: docs/ray-optuna.md trap 5).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterator, Mapping, Sequence

from incsweep.core.errors import ConfigError
from incsweep.core.layout import StudyLayout
from incsweep.study.driver_lock import DriverLock
from incsweep.study.preload import imported_aside
from incsweep.study.results import compact_leftovers, list_trial_files, read_study_rows, tidy_compacted
from incsweep.study.resume import plan_resume
from incsweep.study.sink import ParquetSink, ProgressLog, StopOnSignal, stored_front_points
from incsweep.study.spec import StudySpec
from incsweep.study.summary import StudySummary, _optuna_quiet, summarize
from incsweep.study.trackers import env_defaults, tune_callbacks
from incsweep.trainables.boundary import trial_key

__all__ = ["run_study", "StudySummary", "summarize", "check_resources", "check_storage", "check_data", "check_methods",
           "check_optuna_storage",
           "default_storage"]

log = logging.getLogger(__name__)


def default_storage(spec: StudySpec) -> str:
    return spec.storage or os.path.join("runs", spec.name)


def check_storage(storage: str) -> None:
    """A one-line ConfigError unless ``storage`` can hold a study: a URI pyarrow can open, or a local
    path that is a directory (or does not exist yet) under a writable existing directory."""
    from incsweep.core.layout import resolve_storage

    fs, path = resolve_storage(storage)  # unusable schemes fail here
    if "://" in storage and not storage.startswith("file://"):
        return  # object stores: permissions show on the first write, which Tune reports
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"--storage {storage!r} is a file; give a directory (new or holding a study)")
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"--storage {storage!r}: {parent} is a file, so the directory cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        # an existing study too: resume writes its lock, journal and results there (a read-only
        # mount or a copy without write permission), so this is said before Ray starts
        raise ConfigError(f"--storage {storage!r}: {parent} is not writable; give a directory you can write "
                          "(a study is resumed where it can be written; copy it elsewhere to resume it there)")


def _launch_left_nothing(storage: str, stored: dict) -> bool:
    """Whether a stored study has no trial at all: no result file and no Optuna trial."""
    import optuna

    from incsweep.study.searcher import make_optuna_storage

    name = str(stored.get("name"))
    if list_trial_files(storage, name):
        return False
    layout = StudyLayout(storage)
    url = layout.optuna_url(stored.get("optuna_storage"))
    if "://" not in url and not os.path.exists(url):
        return True
    with _optuna_quiet(optuna):
        try:
            return not optuna.load_study(study_name=name, storage=make_optuna_storage(url)).get_trials(deepcopy=False)
        except KeyError:
            return True


def check_data(spec: StudySpec) -> None:
    """Load every benchmark the protocol will use once in the driver (the search's and, for
    two_phase, the evaluation's ``evaluate_on``), so missing or damaged data is one line before Ray
    starts, not an error in every trial or after the whole search ran."""
    from incsweep.incremental.benchmarks import BenchmarkConfig, load_benchmark
    from incsweep.incremental.image_folders import check_image_set_data

    def check(cfg: BenchmarkConfig) -> None:
        if cfg.spec.view is not None:  # an image set: its listing and headers, not gigabytes decoded
            check_image_set_data(cfg)
        else:
            load_benchmark(cfg)  # DataNotFoundError / DataFormatError carry the fix in their message

    check(spec.benchmark)
    if spec.evaluates_front and spec.evaluation_benchmark() != spec.benchmark:
        check(spec.evaluation_benchmark())


def check_optuna_storage(spec: StudySpec, layout: StudyLayout) -> None:
    """Open the study's Optuna storage once before Ray starts or anything is written: an unknown
    scheme, a missing database driver or an unreachable database is one line, not a traceback after
    study.yaml exists (a journal file needs nothing: it is created with the study)."""
    url = layout.optuna_url(spec.optuna_storage)
    if "://" not in url:
        return
    from incsweep.study.searcher import make_optuna_storage

    try:
        make_optuna_storage(url)
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy and Optuna raise many types for one cause
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"optuna_storage {url!r} cannot be opened ({type(exc).__name__}: {first}); allowed: "
                          "leave it out (a journal file in the study's storage), or an RDB URL whose driver is "
                          "installed and whose database is reachable, e.g. sqlite:///PATH or "
                          "postgresql+psycopg2://USER@HOST/DB") from None


def check_methods(spec: StudySpec) -> None:
    """Build every method of the study for its benchmark, once, in the driver: its plan() on the meta
    device and the method itself on the CPU, with each searched field at its first candidate, so that
    a constructor or plan that raises is one line before Ray starts, not an error in every trial."""
    import torch

    from incsweep.incremental.run import RunConfig, build_method, run_plan

    space = spec.space()
    for method in spec.methods:
        values = {name: param.candidates()[0] for name, param in space.params(method).items()}
        try:
            cfg = RunConfig.from_dict({**spec.base_run(), "method": method, "method_config": values})
            build_method(cfg, torch.device("cpu"), run_plan(cfg))
        except ConfigError as exc:
            raise ConfigError(f"method {method}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a user's method: its own error, in one line
            raise ConfigError(f"method {method}: building it for benchmark {spec.benchmark.name} raised "
                              f"{type(exc).__name__}: {exc}") from None


@contextmanager
def _env_default(name: str, value: str) -> Iterator[None]:
    """``os.environ[name]`` = ``value`` during the block unless the user set it; removed after."""
    if name in os.environ:
        yield
        return
    os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)


def check_resources(resources: Any, concurrency: int | None) -> None:
    """Fail clearly when one trial's request fits no node of the cluster (docs/ray-optuna.md trap 7:
    Tune would otherwise leave the trials PENDING forever with a warning)."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total = ray.cluster_resources()
    per_node = [(n["Resources"].get("CPU", 0.0), n["Resources"].get("GPU", 0.0)) for n in nodes]
    if resources.gpu > 0 and total.get("GPU", 0.0) == 0:
        raise ConfigError(f"resources.gpu={resources.gpu:g} but the Ray cluster has no GPU "
                          f"(cluster resources: CPU {total.get('CPU', 0):g}, GPU 0); set resources.gpu: 0")
    fits = [cpu >= resources.cpu and (resources.gpu == 0 or gpu >= min(resources.gpu, 1.0) and gpu >= resources.gpu)
            for cpu, gpu in per_node]
    if not any(fits):
        largest = max(per_node, default=(0.0, 0.0))
        raise ConfigError(f"resources per trial (cpu {resources.cpu:g}, gpu {resources.gpu:g}) fit no node of the "
                          f"cluster (largest node: cpu {largest[0]:g}, gpu {largest[1]:g}); lower resources")


def _init_ray(address: str | None, temp_dir: str | None) -> bool:
    """Connect to ``address`` (an existing cluster; RAY_ADDRESS under ``ray job submit``) or start
    an embedded local Ray. Returns whether this call started Ray (and must shut it down)."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "configure_logging": True, "logging_level": logging.WARNING}
    if address:
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            # Ray sends its token to an explicit address only when told to (docs/ray-optuna.md trap 10);
            # without it a token-auth cluster looks unreachable after a 20-s retry, with no hint why.
            if "InvalidAuthToken" in str(exc.__cause__):
                raise ConfigError(f"the Ray cluster at {address!r} rejected this driver: it uses token "
                                  "authentication; export RAY_AUTH_MODE=token, with the cluster's token in "
                                  "~/.ray/auth_token or $RAY_AUTH_TOKEN") from None
            raise ConfigError(f"cannot connect to a Ray cluster at {address!r}; use the address that "
                              "`ray start --head` printed, or auto on a cluster node") from None
    elif os.environ.get("RAY_ADDRESS"):
        ray.init(**kwargs)
    else:
        ray.init(include_dashboard=False, _temp_dir=temp_dir, **kwargs)
    return True


def _searched(spec: StudySpec) -> dict[str, list[str]]:
    space = spec.space()
    return {m: space.searched(m) for m in spec.methods}


def study_schema(spec: StudySpec):
    """The one file schema of the study's results (incsweep/core/schema.py): every searched parameter of
    every method, typed from its range or choices, and every method's declared diagnostics."""
    import pyarrow as pa

    from incsweep.core.params import Choice, Float, Int
    from incsweep.core.schema import study_file_schema
    from incsweep.incremental.methods import get_method

    space = spec.space()
    types: dict[str, pa.DataType] = {}
    for method in spec.methods:
        params = space.params(method)
        for name in space.searched(method):
            p = params[name]
            kind = (pa.float64() if isinstance(p, Float) else pa.int64() if isinstance(p, Int) else
                    _choice_type(p.values) if isinstance(p, Choice) else pa.string())
            if name in types and types[name] != kind:  # e.g. Int for one method, Float for another
                kind = pa.float64() if all(pa.types.is_integer(t) or pa.types.is_floating(t)
                                           for t in (kind, types[name])) else pa.string()
            types[name] = kind
    stats = [s for m in spec.methods for s in get_method(m).task_stat_names]
    return study_file_schema(types, stats)


def _choice_type(choices: Any):
    import pyarrow as pa

    try:
        kind = pa.array(list(choices)).type
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.string()
    return pa.int64() if pa.types.is_integer(kind) else pa.string() if pa.types.is_null(kind) else kind


def settle_optuna(spec: StudySpec, layout: StudyLayout) -> None:
    """A finished study's Optuna trials left RUNNING are told their Parquet outcome, or failed."""
    from incsweep.study.resume import read_finals
    from incsweep.study.searcher import reconcile_orphans, reconcile_with_results

    study = open_optuna_study(spec, layout)
    reconcile_with_results(study, read_finals(layout.storage, spec.name), spec.objectives, spec.constraints)
    reconcile_orphans(study, set())


def trial_dirname(trial: Any) -> str:
    """Short trial directories (Tune's default embeds every config value in the name); a trial that
    continues an interrupted one sits beside it (``trial_<its id>_<Tune id>``: study/resume.py
    finds every checkpoint of a study trial by this name)."""
    key = trial_key(trial)
    return f"trial_{key}" if key == trial.trial_id else f"trial_{key}_{trial.trial_id}"


def open_optuna_study(spec: StudySpec, layout: StudyLayout):
    """The study's Optuna study (created on first use), with the spec's sampler and objectives."""
    import optuna

    from incsweep.study.searcher import make_optuna_storage, make_sampler, open_study, sampler_seed

    with _optuna_quiet(optuna):
        study = open_study(make_optuna_storage(layout.optuna_url(spec.optuna_storage)), spec.name,
                           sampler=make_sampler(spec.sampler, spec.seed), metrics=[o.column for o in spec.objectives],
                           modes=[o.sense for o in spec.objectives])
        n_trials = len(study.get_trials(deepcopy=False))
        if n_trials:
            study.sampler = make_sampler(spec.sampler, sampler_seed(spec.seed, n_trials))
        elif spec.enqueue:  # a new study only: a resumed one has them
            for params in spec.enqueued_params():
                study.enqueue_trial(dict(params))
    return study


def _build_searcher(spec: StudySpec, study: Any, continuations: Any = (), samples: int | None = None):
    """The study's searcher; ``samples``: the suggestions this driver's Tune will ask for. It asks one
    suggestion ahead (StudySearcher) unless the study runs one trial at a time: a parallel study's
    proposals already lack the running trials' results, while a sequential one sees every result."""
    from incsweep.study.searcher import StudySearcher

    return StudySearcher(space=spec.space(), metrics=[o.column for o in spec.objectives],
                         modes=[o.sense for o in spec.objectives], n_tasks=spec.n_tasks, study=study,
                         constraints=spec.constraints, continuations=continuations, samples=samples,
                         ask_ahead=spec.concurrency != 1)


def _build_scheduler(spec: StudySpec, task_rows: Mapping[str, Any] | None = None):
    """The spec's scheduler (study/kinds.py SCHEDULERS), its rungs seeded with earlier drivers' rows."""
    from incsweep.study.kinds import SCHEDULERS

    return SCHEDULERS[spec.scheduler.name].build(spec, task_rows)


def _heartbeat_s() -> float:
    """Seconds of silence before a progress line says a trial is still training (docs/study.md):
    ``INCSWEEP_HEARTBEAT_S``, default 30."""
    raw = os.environ.get("INCSWEEP_HEARTBEAT_S", "30")
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"INCSWEEP_HEARTBEAT_S={raw!r}: give a number of seconds > 0")
    return value


def _trainable(spec: StudySpec):
    from ray import tune

    from incsweep.trainables import get_trainable

    return tune.with_resources(get_trainable(list(spec.methods)), {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})


def _param_space(spec: StudySpec, layout: StudyLayout) -> dict[str, Any]:
    cache = layout.prefix_cache_dir() if spec.prefix_cache else None
    from incsweep.trainables.boundary import TrialConfig

    return TrialConfig.shared(study=spec.name, base=spec.base_run(), prefix_cache=cache, device=spec.device,
                              prefix_cache_max_bytes=int(spec.prefix_cache_max_gb * 2**30),
                              threads=max(1, int(spec.resources.cpu)), tasks=spec.trial_tasks,
                              heartbeat_dir=layout.heartbeat_dir())


def run_study(spec: StudySpec, *, address: str | None = None, resume: bool = False,
              ray_temp_dir: str | None = None) -> StudySummary:
    """Run (or resume) ``spec`` to completion; returns the Parquet-derived summary."""
    storage = default_storage(spec)
    check_storage(storage)  # before Ray starts or anything is written
    layout = StudyLayout(storage)
    # everything the input decides, before anything is written or locked
    check_data(spec)
    check_methods(spec)
    check_optuna_storage(spec, layout)
    _heartbeat_s()  # a bad INCSWEEP_HEARTBEAT_S fails here, before anything starts
    with contextlib.ExitStack() as env:
        # One live driver per study (driver_lock.py): taken before anything reads the study's state
        # to act on it (a second driver's journal reconcile would fail the first one's running trials).
        env.enter_context(DriverLock(storage))
        stored = layout.read_spec()
        if stored is not None and not resume and _launch_left_nothing(storage, stored):
            # A launch that failed after writing study.yaml (Ray did not start, Ctrl-C during start-up)
            # must not lock the directory: it holds no trial, so this run starts it over.
            log.info("%s holds only the spec of a launch that recorded no trial; starting over", storage)
            stored = None
        if stored is not None and not resume:
            other = "" if stored.get("name") == spec.name else f" (this spec is study {spec.name!r})"
            raise ConfigError(f"{storage} already holds study {stored.get('name')!r}{other}; continue it with "
                              f"`incsweep study resume {storage}` or choose another --storage")
        if resume and stored is not None:
            finished = summarize(storage, spec)
            if finished.done:
                if finished.optuna_states.get("RUNNING"):
                    # a torn last journal line (the driver died while telling Optuna): the Parquet
                    # rows decide, and what no result file backs is failed, as on any resume
                    settle_optuna(spec, layout)
                    finished = summarize(storage, spec)
                log.info("study %s is finished (%d trials); nothing to resume", spec.name, finished.finished)
                compact_leftovers(storage, spec.name)  # a driver killed after its last trial left them
                return finished
        # Per-task checkpoints make Tune snapshot often; its warning about that is noise for studies
        # whose tasks take seconds (the snapshot is small: trial metadata, not checkpoints).
        env.enter_context(_env_default("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0"))
        # Tune's experiment snapshot is never read (a study resumes from its own data: study/resume.py)
        # and costs O(trials) each time: every 10 minutes instead of Tune's adaptive period, and at the end.
        env.enter_context(_env_default("TUNE_GLOBAL_CHECKPOINT_S", "600"))
        # Ctrl-C is recorded and acted on at the study's safe points (_interrupt_on), so the CLI says
        # one thing at every moment. Tune's own SIGINT handler would end fit() normally with "Resume
        # experiment with: Tuner.restore(...)", which incsweep never uses (study/resume.py).
        env.enter_context(_env_default("TUNE_DISABLE_SIGINT_HANDLER", "1"))
        for name, value in env_defaults(spec.callbacks).items():  # before ray.init: workers inherit them
            env.enter_context(_env_default(name, value))
        return _run_study(spec, storage, layout, stored, address, resume, ray_temp_dir)


class StudyTerminated(Exception):
    """The driver got SIGTERM: Tune stopped as on Ctrl-C (state saved, results kept) and the study
    can be resumed."""


class _Signal:
    """Whether a signal arrived (``received``), and ``check()`` to raise KeyboardInterrupt after it.

    The handler only records: an exception raised from a signal handler lands wherever the main
    thread is, and inside a lock (logging's, seen under load) it leaves the lock held and the driver
    hung after a Ctrl-C. The study raises at its own safe points instead: after Ray's start-up, and
    at every step of Tune's controller (sink.StopOnSignal), at most a second or so later."""

    def __init__(self) -> None:
        self.received = False

    def check(self) -> None:
        if self.received:
            raise KeyboardInterrupt


@contextmanager
def _interrupt_on(signum: int) -> Iterator[_Signal]:
    """Signal ``signum`` is recorded (``_Signal``); the previous handler is back after. Main thread
    only (Python's signal rule); elsewhere nothing is installed."""
    import signal
    import threading

    seen = _Signal()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return

    def record(number: int, frame: Any) -> None:
        seen.received = True

    previous = signal.signal(signum, record)
    try:
        yield seen
    finally:
        signal.signal(signum, previous)


def _run_study(spec: StudySpec, storage: str, layout: StudyLayout, stored: dict | None, address: str | None,
               resume: bool, ray_temp_dir: str | None) -> StudySummary:
    import signal

    # the first progress line, before Ray's start-up (seconds) and the first task's end
    logging.getLogger("incsweep.study.progress").info(
        "study %s: %s %d trial(s) of %s, %s at a time, in %s; %s", spec.name, "resuming" if resume else "running",
        spec.trials, ", ".join(spec.methods), spec.concurrency or "as many as fit",
        storage, f"connecting to Ray at {address}" if address else "starting a local Ray")
    # Ctrl-C is watched from before Ray starts; SIGTERM after ray.init, whose core worker's handler
    # would abort the driver on SIGTERM (exit 134, no message).
    trackers = tune_callbacks(spec.callbacks, study=spec.name, storage=storage)
    for tracker in trackers:
        tracker.prepare()  # imports and stores made aside, while Ray starts
    with _interrupt_on(signal.SIGINT) as ctrl_c:
        with imported_aside():  # Tune's imports at fit's start, while Ray starts (study/preload.py)
            owns_ray = _init_ray(address, ray_temp_dir)
        try:
            with _interrupt_on(signal.SIGTERM) as sigterm:
                try:
                    ctrl_c.check()  # one during Ray's start-up
                    return _drive_tune(spec, storage, layout, stored, resume, stop=(ctrl_c, sigterm),
                                       trackers=trackers)
                except KeyboardInterrupt:
                    if sigterm.received:
                        raise StudyTerminated(f"SIGTERM; continue with: incsweep study resume {storage}") from None
                    raise
                except Exception as exc:
                    # The interrupt can land inside a library's cleanup, which then fails in its own way
                    # and replaces it: Optuna 5's journal lock release, interrupted before its rename,
                    # unlinks a file that never existed (FileNotFoundError '...optuna.journal.lock<uuid>
                    # .rename'; seen in tests/study/test_bad_input.py under load). The stop is the signal's.
                    if sigterm.received:
                        log.info("after SIGTERM: %s: %s", type(exc).__name__, exc)
                        raise StudyTerminated(f"SIGTERM; continue with: incsweep study resume {storage}") from None
                    if ctrl_c.received:
                        log.info("after Ctrl-C: %s: %s", type(exc).__name__, exc)
                        raise KeyboardInterrupt from None
                    raise
        finally:
            if owns_ray:
                import ray

                ray.shutdown()
                # Trials killed with a driver or node leave their scratch checkpoints (trainables/workdir.py);
                # this Ray's workers are ours and exit within a second or two of the shutdown.
                from incsweep.trainables.workdir import sweep_orphaned_workdirs

                sweep_orphaned_workdirs(wait_s=3.0)


def _drive_tune(spec: StudySpec, storage: str, layout: StudyLayout, stored: dict | None,
                resume: bool, stop: tuple[_Signal, ...] = (), trackers: Sequence[Any] = ()) -> StudySummary:
    from ray import tune

    check_resources(spec.resources, spec.concurrency)  # before anything is written
    if stored is None:
        layout.write_spec({**spec.to_dict(), "storage": storage})
    # Resume or not, a fresh Tuner: the study is rebuilt from its own data (study/resume.py), and
    # Tune's saved state (pickles, absolute paths) is never read.
    study = open_optuna_study(spec, layout)
    tidied = tidy_compacted(storage, spec.name)  # a compaction a killed driver left half done
    if tidied:
        log.info("removed %d trial file(s) a compacted file already holds (a compaction was interrupted)", tidied)
    plan = plan_resume(spec, layout, study)
    # read once (planning's rows where it wrote none, else once after it): the progress counts, the
    # trials left and the stored front use them; Optuna's states from the study just opened, not a
    # second replay of its journal
    stored_rows = plan.rows if plan.rows is not None else read_study_rows(storage, spec.name, skip=("config_json",))
    before = summarize(storage, spec, stored_rows,
                       optuna_states=Counter(t.state.name for t in study.get_trials(deepcopy=False)))
    samples = max(spec.trials - before.finished, len(plan.continuations))
    if samples <= 0:
        log.info("study %s already has %d finished trial(s)", spec.name, before.finished)
        compact_leftovers(storage, spec.name)  # a driver killed after its last trial left them
        return before
    constraints = [str(c) for c in spec.constraints]
    front = stored_front_points(stored_rows.table, [o.column for o in spec.objectives], constraints)
    progress = ProgressLog(spec.n_tasks, [o.column for o in spec.objectives], trials=spec.trials,
                           senses=[o.sense for o in spec.objectives],
                           finished={k: v for k, v in before.statuses.items() if k != "orphaned"},
                           constraints=constraints, heartbeat_dir=layout.heartbeat_dir(),
                           heartbeat_s=_heartbeat_s(), front=front)
    from incsweep.study.searcher import AskAhead

    searcher = _build_searcher(spec, study, plan.continuations, samples)
    sink = ParquetSink(storage, spec.name, spec.n_tasks, _searched(spec), study_schema(spec), constraints,
                       trial_numbers=searcher.numbers)
    callbacks = [sink, progress, *trackers, AskAhead(searcher)]
    if stop:
        callbacks.append(StopOnSignal(stop))
    run_config = tune.RunConfig(
        name="tune", storage_path=layout.tune_storage, storage_filesystem=layout.tune_filesystem,
        callbacks=callbacks, verbose=0,
        # Every checkpoint a trial reports is kept until the trial ends (the sink then removes them: a
        # finished trial is never continued). Tune's num_to_keep would force an experiment snapshot
        # (the JSON of every trial: O(trials)) each time a trial reached it, i.e. once per trial:
        # quadratic in a 1,000-trial study (docs/cluster.md, large studies).
        checkpoint_config=tune.CheckpointConfig(num_to_keep=None),
        failure_config=tune.FailureConfig(max_failures=spec.max_failures))
    tuner = tune.Tuner(
        _trainable(spec), param_space=_param_space(spec, layout),
        tune_config=tune.TuneConfig(search_alg=searcher,
                                    scheduler=_build_scheduler(spec, plan.task_rows), num_samples=samples,
                                    max_concurrent_trials=spec.concurrency, reuse_actors=True,
                                    trial_dirname_creator=trial_dirname),
        run_config=run_config)
    for signal_seen in stop:  # one that arrived while the study was being prepared
        signal_seen.check()
    try:
        grid = tuner.fit()
    finally:
        held = searcher.release_held()  # the study stopped (a signal, an error) with a trial asked ahead
        if held is not None:
            log.info("Optuna trial %d was asked ahead and never ran: told FAIL", held)
    for trial_err in grid.errors:
        text = str(trial_err).strip()
        log.warning("a trial failed: %s", text.splitlines()[-1] if text else trial_err)
    summary = summarize(storage, spec)
    orphans = [tid for tid in summary.unfinished if tid not in sink.seen]
    if orphans and summary.finished >= spec.trials:
        sink.finalize_orphans([(m, t) for m, t in list_trial_files(storage, spec.name) if t in orphans])
        summary = summarize(storage, spec)
    # Tune has ended, so no trial of this driver writes any more: its last finished trials, and a
    # killed driver's, join the compacted files every later reader opens
    compact_leftovers(storage, spec.name)
    return summary
