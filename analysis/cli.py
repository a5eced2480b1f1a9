"""``incsweep analyze`` (fronts, hypervolume, AUC over memory, plots, HTML report) and
``incsweep export`` (selected configurations as re-runnable YAML)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from incsweep.analysis.objectives import DEFAULT_OBJECTIVES, SPLITS
from incsweep.core.errors import ConfigError

__all__ = ["register"]


def _common(parser: argparse.ArgumentParser, *, by_default: str) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="result directories (a study's storage or any folder under it), .parquet files, "
                             "globs or pyarrow-fs URIs (s3://..., gs://...); several studies/methods at once")
    parser.add_argument("--objectives", default=DEFAULT_OBJECTIVES, metavar="COL:max|min,...",
                        help=f"columns to optimise, any number (default {DEFAULT_OBJECTIVES})")
    parser.add_argument("--split", default="val", choices=SPLITS,
                        help="metrics of which split: val (the study's objectives, default) or test "
                             "(avg_acc -> test_avg_acc, ...)")
    parser.add_argument("--by", default=by_default, metavar="COL[,COL]|none",
                        help=f"group runs by these columns, one front per group (default {by_default})")
    parser.add_argument("--ref", default=None, metavar="COL=V,...",
                        help="hypervolume reference point, one value per objective "
                             "(default: the worst observed value of each objective)")
    parser.add_argument("--constraint", action="append", default=[], metavar="'METRIC <= X'",
                        help="keep only runs meeting this constraint, on top of each study's own (repeatable; "
                             "e.g. 'total_mb <= 1.2'); infeasible runs are shown but never on a front")
    parser.add_argument("--ignore-constraints", action="store_true",
                        help="set the studies' own constraints aside and analyse every complete run")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (the same results, for scripts) instead of the tables")


def register(subparsers: argparse._SubParsersAction) -> None:
    an = subparsers.add_parser(
        "analyze", help="Pareto fronts of accuracy against memory from Parquet results",
        description="Read result Parquet files, keep complete runs, and report Pareto fronts (overall and "
                    "per group), hypervolume, MEMO's AUC-A/AUC-L over memory, the knee and the best "
                    "configuration under given memory sizes. --out writes PNG plots and an HTML report.")
    _common(an, by_default="method")
    an.add_argument("--under-mb", type=float, action="append", default=[], metavar="X",
                    help="also report the best accuracy with total memory <= X MB (repeatable)")
    an.add_argument("--out", default=None, metavar="DIR",
                    help="write accuracy_vs_memory.png, task_curves.png, front.csv and report.html here")
    an.add_argument("--format", default="png", metavar="png|pdf|svg[,...]",
                    help="figure formats to write with --out, comma-separated (the HTML report embeds the PNGs, "
                         "which are always written); default png")
    an.add_argument("--dpi", type=float, default=None, metavar="N",
                    help="resolution of the PNG figures (default 110; e.g. 300 for print)")
    an.set_defaults(func=_analyze)

    ex = subparsers.add_parser(
        "export", help="write selected configurations as YAML that `incsweep run --config` re-runs",
        description="Write each selected configuration's full run config plus a provenance block "
                    "(study, trial, metrics, code version) as YAML.")
    _common(ex, by_default="none")
    ex.add_argument("--out", required=True, metavar="DIR", help="folder for the YAML files")
    ex.add_argument("--select", default="front", metavar="front|knee|best-under-mb=X",
                    help="which configurations: the front (default), the knee, or the best under X MB "
                         "(per group with --by)")
    ex.set_defaults(func=_export)


def _by(text: str) -> tuple[str, ...]:
    if text.strip().lower() in ("none", ""):
        return ()
    return tuple(c.strip() for c in text.split(",") if c.strip())


FORMATS = ("png", "pdf", "svg")


def _formats(text: str) -> list[str]:
    """``--format png,pdf`` -> ["png", "pdf"]; an unknown format is a one-line error."""
    formats = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ConfigError(f"--format {text!r}: allowed {', '.join(FORMATS)} (comma-separated)")
    return formats


def _check_out(out: str | None) -> None:
    """``--out`` must be a directory or creatable as one: checked before any result is read."""
    if out is None:
        return
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"--out {out!r} is a file; give a directory (it is created if missing)")
    parent = p
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--out {out!r}: {parent} is a file, so the directory cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        what = "is not writable" if parent == p else f"cannot be created: {parent} is not writable"
        raise ConfigError(f"--out {out!r} {what}; give a directory you can write")


def _summary(args: argparse.Namespace, under_mb=()):
    from incsweep.analysis.load import load_results
    from incsweep.analysis.study_facts import study_specs
    from incsweep.analysis.summary import summarize
    from incsweep.core.constraints import parse_constraints

    _check_out(getattr(args, "out", None))
    for x in under_mb:
        if not x > 0:
            raise ConfigError(f"--under-mb {x}: a memory size must be > 0 MB")
    ad_hoc = parse_constraints(args.constraint)  # a bad constraint fails before any file is read
    table = load_results(args.paths)
    specs = {name: spec.get("constraints") for name, spec in study_specs(args.paths).items()}
    return summarize(table, args.objectives, split=args.split, by=_by(args.by), reference=args.ref,
                     under_mb=under_mb, constraints=ad_hoc, ignore_constraints=args.ignore_constraints,
                     study_constraints=specs)


def _analyze(args: argparse.Namespace) -> int:
    from incsweep.analysis import tables

    _formats(args.format)  # a bad --format fails before any file is read
    if args.dpi is not None and not 10 <= args.dpi <= 2400:
        raise ConfigError(f"--dpi {args.dpi:g}: allowed [10, 2400]")
    summary = _summary(args, args.under_mb)
    if not args.json:
        print("\n".join(tables.headline(summary)))
        print()
        print(tables.render_text(*tables.groups_table(summary)))
        print()
        feasible = " that meet the constraints" if summary.constrained else ""
        print(f"Pareto front over all complete runs{feasible} ({len(summary.overall.front)} configurations):")
        print(tables.render_text(*tables.front_table(summary)))
        confirmed = tables.confirmation_table(summary)
        if confirmed[1]:
            print()
            print(f"Confirmed on fresh seeds ({len(confirmed[1])} front configurations):")
            print(tables.render_text(*confirmed))
        evaluated = tables.evaluation_table(summary)
        if evaluated[1]:
            print()
            print(f"Tuned on vs evaluated on ({len(evaluated[1])} front configurations):")
            print(tables.render_text(*evaluated))
        print()
        print("Convergence: " + "; ".join(tables.convergence_lines(summary)))
        print()
        print("Which parameters mattered (PED-ANOVA over each method's complete runs):")
        print(tables.render_text(*tables.importance_table(summary)))
    written: list[str] = []
    if args.out:
        from incsweep.analysis.outputs import write_analysis

        files = write_analysis(summary, args.out, inputs=args.paths, dpi=args.dpi, formats=_formats(args.format))
        written = [str(p) for p in files.values()]
        if not args.json:
            report, *others, csv_file = files.values()
            print()
            print(f"wrote {report}, {', '.join(p.name for p in others)} and {csv_file.name} in {Path(args.out)}")
    if args.json:
        from incsweep.analysis.json_report import summary_data

        print(json.dumps({**summary_data(summary), "written": written}, indent=2))
    return 0


def _export(args: argparse.Namespace) -> int:
    from incsweep.analysis.export import export_configs, parse_select, select_runs

    parse_select(args.select)  # a bad --select fails before any file is read
    summary = _summary(args)
    picked = select_runs(summary, args.select)
    if not picked:
        raise ConfigError(f"--select {args.select}: no complete run qualifies (smallest total memory: "
                          f"{min(summary.runs[summary.memory].to_pylist()):.4g} MB)")
    paths = export_configs(summary, picked, args.out, selected_by=args.select)
    if args.json:
        from incsweep.analysis.json_report import run_data

        print(json.dumps({"selected_by": args.select, "out": str(args.out),
                          "exported": [{"path": str(p), **run_data(summary, i)} for p, i in zip(paths, picked)]},
                         indent=2))
        return 0
    for p in paths:
        print(p)
    print(f"exported {len(paths)} configuration(s) to {args.out}; re-run one with: incsweep run --config FILE")
    return 0
