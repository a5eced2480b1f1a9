"""``incsweep study run|resume|status``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from incsweep.core.errors import ConfigError
from incsweep.core.layout import StudyLayout, sub_location

if TYPE_CHECKING:  # the spec imports the engine (torch): only when a command runs, not for --help
    from incsweep.study.spec import StudySpec

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    confirm_p = subparsers.add_parser(
        "confirm", help="re-run a study's front on fresh seeds and class orders",
        description="Re-run the configurations --select picks (default: the Pareto front of the study's "
                    "objectives) on N fresh run seeds and, where the class order is a seeded permutation, "
                    "fresh class orders: one study per seed under STORAGE/confirm/, on Ray with the study's "
                    "resources. Running it again resumes what is unfinished. `incsweep analyze STORAGE` then "
                    "shows each configuration's mean +- std and flags a search estimate outside 2 std.")
    confirm_p.add_argument("storage", metavar="STORAGE")
    confirm_p.add_argument("--seeds", type=int, default=3, metavar="N", help="fresh seeds (default 3)")
    confirm_p.add_argument("--select", default="front", metavar="front|knee|best-under-mb=X")
    confirm_p.add_argument("--same-class-order", action="store_true",
                           help="keep the study's class order (default: a fresh seeded order per seed)")
    confirm_p.add_argument("--address", default=None, metavar="auto|HOST:PORT")
    confirm_p.set_defaults(func=_confirm)

    study_p = subparsers.add_parser("study", help="run, resume or inspect a hyperparameter study",
                                    description="Multi-objective hyperparameter studies (Ray Tune + Optuna).")
    sub = study_p.add_subparsers(dest="study_command", metavar="{run,resume,status}", required=True)

    run_p = sub.add_parser("run", help="start a study from a YAML spec")
    run_p.add_argument("spec", metavar="SPEC.yaml")
    run_p.add_argument("--address", default=None, metavar="auto|HOST:PORT",
                       help="an existing Ray cluster (default: $RAY_ADDRESS, else an embedded local Ray)")
    run_p.add_argument("--storage", default=None, metavar="DIR_OR_URI",
                       help="where the study keeps results, checkpoints and its Optuna study "
                            "(default: the spec's storage, else runs/<name>)")
    run_p.add_argument("--trials", type=int, default=None, help="override the spec's trial count")
    run_p.set_defaults(func=_run)

    resume_p = sub.add_parser("resume", help="finish an interrupted study from its storage directory")
    resume_p.add_argument("storage", metavar="DIR")
    resume_p.add_argument("--address", default=None, metavar="auto|HOST:PORT")
    resume_p.set_defaults(func=_resume)

    status_p = sub.add_parser("status", help="trials finished, by status, from the Parquet results")
    status_p.add_argument("storage", metavar="DIR")
    status_p.add_argument("--json", action="store_true", help="print one JSON object")
    status_p.set_defaults(func=_status)

    migrate_p = sub.add_parser("migrate", help="rewrite an older study's Parquet files in the current layout",
                               description="Rewrite every result file of the study whose layout predates the "
                                           "current one (partition keys inside the files, per-method columns), "
                                           "so that pandas, pyarrow, DuckDB and polars read the directory whole. "
                                           "Rows are kept whole; each file is replaced atomically.")
    migrate_p.add_argument("storage", metavar="DIR")
    migrate_p.add_argument("--dry-run", action="store_true", help="only count the files that would be rewritten")
    migrate_p.set_defaults(func=_migrate)


def _console_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    for name in ("incsweep.study", "incsweep.trainables"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False


def _stored_spec(storage: str) -> StudySpec:
    from incsweep.study.spec import stored_spec

    return stored_spec(storage)[1]


def _finish(summary, elapsed: float) -> int:
    from incsweep.study.runner import StudySummary  # noqa: F401 - type only

    statuses = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items())) or "none"
    print(f"study {summary.study}: {summary.finished}/{summary.trials} trials finished ({statuses}); "
          f"{summary.task_rows} task rows in {sub_location(summary.storage, 'results')}; {elapsed:.0f} s")
    _tensorboard_hint(summary.storage)
    for trial_id, error in sorted(summary.errors.items())[:8]:
        print(f"trial {trial_id} failed: {error}", file=sys.stderr)
    if len(summary.errors) > 8:
        print(f"... and {len(summary.errors) - 8} more failed trial(s): incsweep study status {summary.storage}",
              file=sys.stderr)
    if not summary.done:
        print(f"the study is not finished; continue it with: incsweep study resume {summary.storage}")
        return 130
    if summary.finished and not summary.statuses.get("complete"):
        # every trial failed: the study answered nothing, which a script must see
        print(f"no trial completed; `incsweep study status {summary.storage}` and the results' error column say why",
              file=sys.stderr)
        return 1
    if summary.errors:
        # the study finished, but some trials' answers are missing: a script must see that too
        return 1
    return 0


def _tensorboard_hint(storage: str) -> None:
    """Where the trials' TensorBoard files are kept. Tune prints a path in Ray's session directory at
    start (a staging copy under /tmp that goes with the session); the storage's copy stays."""
    layout = StudyLayout(storage)
    if layout.is_local and next(Path(layout.tune_experiment).glob("trial_*/events.out.tfevents*"), None):
        print(f"TensorBoard (every trial's per-task metrics): tensorboard --logdir {layout.tune_experiment}")


def _drive(storage: str, start: Callable[[], Any], again: str) -> int:
    """Run ``start`` (run_study); an interrupt exits 130 (Ctrl-C) or 143 (SIGTERM) with the command
    that continues: ``study resume`` once the study is stored, else ``again`` (the same start)."""
    import time

    from incsweep.study.runner import StudyTerminated

    def next_step() -> str:
        try:
            stored = StudyLayout(storage).read_spec() is not None
        except Exception:  # noqa: BLE001 - only choosing which hint to print
            stored = False
        return (f"continue with: incsweep study resume {storage}" if stored else
                f"nothing was changed; run it again with: {again}")

    tic = time.perf_counter()
    try:
        summary = start()
    except KeyboardInterrupt:
        print(f"interrupted; {next_step()}")
        return 130
    except StudyTerminated:
        print(f"terminated (SIGTERM); results so far are kept; {next_step()}")
        return 143
    except Exception as exc:  # noqa: BLE001 - only a full storage is turned into a message here
        full = _storage_full(exc)
        if full is None:
            raise
        print(f"incsweep study: storage full ({full.strerror or full}); results so far are kept; free space (or "
              f"copy the study to a larger disk: a study directory is relocatable), then {next_step()}",
              file=sys.stderr)
        return EXIT_STORAGE_FULL
    return _finish(summary, time.perf_counter() - tic)


EXIT_STORAGE_FULL = 3  # docs/study.md, exit codes


def _storage_full(exc: BaseException) -> OSError | None:
    """The no-space or over-quota OSError behind ``exc`` (Tune and pyarrow wrap it), if any."""
    import errno

    seen = 0
    err: BaseException | None = exc
    while err is not None and seen < 20:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return err
        if isinstance(err, OSError) and "No space left on device" in str(err):  # pyarrow: errno in the text only
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _confirm(args: argparse.Namespace) -> int:
    import time

    from incsweep.study.confirm import plan_confirmation, run_confirmation
    from incsweep.study.runner import StudyTerminated

    plan = plan_confirmation(args.storage, seeds=args.seeds, select=args.select,
                             fresh_class_orders=not args.same_class_order)
    _console_logging()
    configs = plan[0].spec.trials
    print(f"confirming {configs} configuration(s) of {args.storage} on seeds {[c.seed for c in plan]} "
          f"(class orders {sorted({c.spec.benchmark.class_order for c in plan})})")
    tic = time.perf_counter()
    again = f"incsweep confirm {args.storage} --seeds {args.seeds} --select {args.select}"
    try:
        summaries = run_confirmation(plan, address=args.address)
    except KeyboardInterrupt:
        print(f"interrupted; continue with: {again}")
        return 130
    except StudyTerminated:
        print(f"terminated (SIGTERM); results so far are kept; continue with: {again}")
        return 143
    from incsweep.study.confirm import missing_configurations

    failed = 0
    for c, s in zip(plan, summaries):
        statuses = ", ".join(f"{n} {k}" for k, n in sorted(s.statuses.items())) or "none"
        print(f"seed {c.seed}: {s.finished}/{s.trials} finished ({statuses}) in {c.storage}")
        failed += s.finished - s.statuses.get("complete", 0)
        # every selected configuration must have run on this seed, not a sampler's stand-in for it
        for entry in missing_configurations(c):
            print(f"seed {c.seed}: the configuration {entry['method']} {entry.get('params')} did not run "
                  f"(a trial in its place ran something else); continue with: {again}", file=sys.stderr)
            failed += 1
    print(f"confirmation done in {time.perf_counter() - tic:.0f} s; see it with: incsweep analyze {args.storage}")
    return 1 if failed else 0


def _run(args: argparse.Namespace) -> int:
    import dataclasses

    from incsweep.study.runner import run_study
    from incsweep.study.spec import StudySpec, load_spec

    spec = load_spec(args.spec).with_storage(args.storage)
    if args.trials is not None:
        spec = StudySpec.from_dict({**spec.to_dict(), "trials": args.trials})
    _console_logging()
    storage = spec.storage or f"runs/{spec.name}"
    again = f"incsweep study run {args.spec} --storage {storage}"
    return _drive(storage, _then_evaluate(spec, storage, args.address,
                                          lambda: run_study(dataclasses.replace(spec), address=args.address)), again)


def _resume(args: argparse.Namespace) -> int:
    from incsweep.study.runner import run_study

    spec = _stored_spec(args.storage)
    _console_logging()
    return _drive(args.storage, _then_evaluate(spec, args.storage, args.address,
                                               lambda: run_study(spec, address=args.address, resume=True)),
                  f"incsweep study resume {args.storage}")


def _then_evaluate(spec: Any, storage: str, address: str | None, search: Callable[[], Any]) -> Callable[[], Any]:
    """``search``, then the protocol's evaluation phase (study/confirm.py), announced on stdout."""
    from incsweep.study.confirm import search_then_evaluate

    return lambda: search_then_evaluate(spec, storage, address, search, print)


def _migrate(args: argparse.Namespace) -> int:
    from incsweep.study.results import migrate_trial_files
    from incsweep.study.runner import study_schema

    spec = _stored_spec(args.storage)
    rewritten, current = migrate_trial_files(args.storage, spec.name, study_schema(spec), dry_run=args.dry_run)
    verb = "would rewrite" if args.dry_run else "rewrote"
    print(f"study {spec.name}: {verb} {rewritten} file(s) in the current layout; {current} already were")
    return 0


def _front_and_elapsed(table: Any, spec: Any) -> tuple[int | None, int, float | None]:
    """The size of the current Pareto front of runs meeting the study's constraints, how many complete
    runs break them, and the seconds since the first trial started (the same figures the driver's
    progress lines end in), from the study's rows (``table``; None where there are none)."""
    from datetime import datetime, timezone

    from incsweep.analysis.summary import summarize as summarize_runs

    if table is None or not table.num_rows:
        return None, 0, None
    started = [t for t in table["started_at"].to_pylist() if t is not None] if "started_at" in table.column_names else []
    elapsed = (datetime.now(timezone.utc) - min(started)).total_seconds() if started else None
    try:
        runs = summarize_runs(table, [str(o) for o in spec.objectives], by=(),
                              study_constraints={spec.name: spec.constraints})
        front, infeasible = len(runs.overall.front), runs.overall.infeasible
    except ConfigError:  # no complete run yet, or none that meets the constraints
        front, infeasible = None, 0
    return front, infeasible, elapsed


def _status(args: argparse.Namespace) -> int:
    # neither Ray nor the engine is imported (study/summary.py): status answers in about a second
    from incsweep.study.results import read_study_rows
    from incsweep.study.summary import stored_view, summarize

    spec = stored_view(args.storage)  # none of the study's methods is imported: a broken one is still counted
    # read once, for the counts and the front; no configurations: counting needs none (Optuna's journal
    # replay, the largest part at 10,000 trials, gained nothing in a thread beside this read: it holds
    # the GIL; benchmarks/results/study_scale.txt)
    stored = read_study_rows(args.storage, spec.name, skip=("config_json",))
    s = summarize(args.storage, spec, stored)
    # exit 1: the study ended and answered nothing (every trial failed); the same with --json
    answered_nothing = s.done and s.finished > 0 and not s.statuses.get("complete")
    if args.json:
        print(json.dumps({"study": s.study, "storage": s.storage, "trials": s.trials, "finished": s.finished,
                          "statuses": dict(s.statuses), "unfinished": s.unfinished, "task_rows": s.task_rows,
                          "optuna_states": dict(s.optuna_states), "done": s.done}))
        return 1 if answered_nothing else 0
    print(f"study {s.study} in {s.storage}: {s.finished}/{s.trials} trials finished")
    for status, n in sorted(s.statuses.items()):
        print(f"  {status:10s} {n}")
    if s.unfinished:
        print(f"  running or interrupted: {len(s.unfinished)} ({', '.join(s.unfinished[:8])})")
    print(f"  task rows: {s.task_rows}")
    for trial_id, error in sorted(s.errors.items())[:8]:
        print(f"  error in {trial_id}: {error}")
    front, infeasible, elapsed = _front_and_elapsed(stored.table, spec)
    if spec.constraints:
        print(f"  constraints: {', '.join(map(str, spec.constraints))}; {infeasible} complete run(s) break them")
    if front is not None:
        print(f"  front: {front} configuration(s) on {', '.join(str(o) for o in spec.objectives)}")
    if elapsed is not None and not s.done and s.n_tasks is not None:
        remaining = max(s.trials * s.n_tasks - s.task_rows, 0)  # an upper bound under ASHA
        rate = s.task_rows / elapsed if elapsed > 0 else 0.0
        eta = f"; ETA {remaining / rate:.0f}s" if rate > 0 else ""
        print(f"  elapsed: {elapsed:.0f}s since the first trial started{eta}")
    if s.optuna_states:
        print("  optuna: " + ", ".join(f"{k} {v}" for k, v in sorted(s.optuna_states.items())))
    if not s.done:
        print(f"  continue with: incsweep study resume {s.storage}")
    elif answered_nothing:
        print("  no trial completed (see the results' error column)")
        return 1
    return 0
