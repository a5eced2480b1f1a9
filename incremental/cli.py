"""``incsweep run`` (one incremental run, a per-task table, the JSON result) and ``incsweep budget``
(what a configuration will store, and how many exemplars fit a memory budget), without training."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from incsweep.core.errors import ConfigError
from incsweep.core.units import MB

__all__ = ["register"]

_SCENARIO_NAMES = {"class_il": "class-IL", "task_il": "task-IL"}


def _config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", default=None, help="method name (default: the config file's, else finetune)")
    parser.add_argument("--benchmark", default=None, help="benchmark name (default: the config file's, else seq-fashionmnist)")
    parser.add_argument("--config", default=None, metavar="FILE.yaml", help="a run config (YAML or JSON)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field: a bare key is a method field (lr=0.05), dotted keys reach "
                             "nested ones (benchmark.train_per_class=200); repeatable")
    parser.add_argument("--data-root", default=None, metavar="DIR",
                        help="where the datasets are (default: $INCSWEEP_DATA; Fashion-MNIST also from "
                             "/usr/share/datasets/fashion-mnist); same as --set benchmark.data_root=DIR")
    parser.add_argument("--download", action="store_true",
                        help="allow downloading a missing dataset into --data-root (off: never touch the network)")


def register(subparsers: argparse._SubParsersAction) -> None:
    run_p = subparsers.add_parser("run", help="train one method on one benchmark and report every task",
                                  description="Train one method task after task; print a per-task table and "
                                              "optionally write the full result as JSON.")
    _config_arguments(run_p)
    run_p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cpu)")
    run_p.add_argument("--seed", type=int, default=None, help="run seed (default: 0)")
    run_p.add_argument("--out", default=None, metavar="result.json", help="write RunResult.to_dict() here")
    run_p.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                       help="checkpoint after every task; an existing checkpoint there is resumed")
    run_p.set_defaults(func=_run)

    budget_p = subparsers.add_parser("budget", help="the memory a configuration will use, without training",
                                     description="Model bytes, bytes per exemplar and the exemplar count of a "
                                                 "configuration after its last task, from the method's plan().")
    _config_arguments(budget_p)
    budget_p.add_argument("--memory-mb", type=float, default=None, metavar="X",
                          help="also show how many exemplars fit in X MB in total (MB = 2^20 bytes)")
    budget_p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    budget_p.set_defaults(func=_budget)

    check_p = subparsers.add_parser(
        "check-method", help="run the method contract suite on a method (yours: module:Class)",
        description="Train tiny runs of METHOD on a synthetic 3-task benchmark and check the contract every "
                    "built-in method passes: same seed = same state, resume = uninterrupted, memory = plan, "
                    "state round trip, prefix fields, second scenario (docs/extending.md). Exit 1 if any fails.")
    check_p.add_argument("method", help="a registered name or module:Class")
    check_p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="a field for the tiny runs, as with `run`: a method-config field (width=4), a run "
                              "field (threads=2, scenario=task_il) or benchmark.FIELD; repeatable")
    check_p.add_argument("--check", dest="checks", action="append", default=None, metavar="NAME",
                         help="run only this check (repeatable); default: all")
    check_p.set_defaults(func=_check_method)

    list_p = subparsers.add_parser("list", help="the methods and benchmarks this installation can name",
                                   description="Built-in and installed (entry-point) methods and benchmarks, "
                                               "with each method's scenarios and default search space.")
    list_p.set_defaults(func=_list)


def _check_method(args: argparse.Namespace) -> int:
    from incsweep.core.configs import parse_override
    from incsweep.incremental.contract import CHECKS, ContractViolation, check_method, tiny_config
    from incsweep.incremental.methods import get_method
    from incsweep.incremental.run import RunConfig

    get_method(args.method)  # an unknown or broken reference is one line, exit 2, before any training
    top = {f.name for f in dataclasses.fields(RunConfig)} - {"method", "method_config"}
    overrides: dict[str, Any] = {}
    run_fields: dict[str, Any] = {}
    for text in args.overrides:
        path, value = parse_override(text)
        if path[0] == "method_config":
            path = path[1:]
        (run_fields if path[0] in top else overrides)[".".join(path)] = value
    checks = tuple(args.checks) if args.checks else CHECKS
    try:
        tiny_config(args.method, overrides, run_fields=run_fields)  # unworkable settings: one line, exit 2
    except ContractViolation as err:
        raise ConfigError(str(err)) from None
    print(f"checking {args.method} on a tiny synthetic benchmark (3 tasks x 2 classes):")

    def show(r) -> None:
        print(f"  {'PASS' if r.passed else 'FAIL'}  {r.name:<28} {r.seconds:5.1f} s" + (f"  {r.detail}" if r.detail else ""),
              flush=True)

    # The tiny runs' per-task lines would bury the verdicts; -v keeps them.
    run_log = logging.getLogger("incsweep.incremental.run")
    level = run_log.level
    if not getattr(args, "verbose", False):
        run_log.setLevel(logging.WARNING)
    try:
        results = check_method(args.method, overrides, checks=checks, run_fields=run_fields, on_result=show)
    except ContractViolation as err:
        raise ConfigError(str(err)) from None
    finally:
        run_log.setLevel(level)
    failed = [r.name for r in results if not r.passed]
    print(f"{len(results) - len(failed)}/{len(results)} checks passed" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _list(args: argparse.Namespace) -> int:
    from incsweep.incremental.benchmarks import BENCHMARKS, benchmark_names
    from incsweep.incremental.methods import METHODS, get_method, method_names

    print("methods (scenarios; default search space):")
    for name in method_names():
        cls = get_method(name)
        space = ", ".join(cls.search_space) if cls.search_space else "none"
        where = "" if name in METHODS else f"  [{cls.__module__}]"
        print(f"  {name:<12} {'/'.join(cls.scenarios):<17} {space}{where}")
    print("benchmarks:")
    for name in benchmark_names():
        note = {"npz": "your .npz (benchmark.data_root=FILE)",
                "image_folder": "your train/<class>/ test/<class>/ images (benchmark.data_root=DIR)"}.get(name)
        if note is None:
            note = "built in" if name in BENCHMARKS else "installed"
        print(f"  {name:<18} {note}")
    print("or name your own by module:attr, e.g. --method mypkg.methods:MyMethod")
    return 0


def _load(args: argparse.Namespace, **top: Any):
    from incsweep.incremental.run import load_run_config

    overrides = list(args.overrides)
    if args.data_root is not None:
        overrides.append(f"benchmark.data_root={args.data_root}")
    if args.download:
        overrides.append("benchmark.download=true")
    return load_run_config(args.config, overrides, method=args.method, benchmark=args.benchmark, **top)


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / MB:.3f}"


def _run(args: argparse.Namespace) -> int:
    from incsweep.incremental.run import CHECKPOINT_FILE, PHASE_LABELS, TaskResult, load_checkpoint, run

    config = _load(args, device=args.device, seed=args.seed)
    if args.out and not Path(args.out).resolve().parent.is_dir():
        raise FileNotFoundError(f"--out {args.out}: directory {Path(args.out).resolve().parent} does not exist")
    b = config.benchmark
    print(f"{config.method} on {b.name} ({len(b.task_sizes)} tasks, {_SCENARIO_NAMES[config.scenario]}), "
          f"seed {config.seed}, device {config.device}; accuracies on the test split")
    header = (f"{'task':>4}  {'acc':>6}  {'avg acc':>7}  {'forget':>6}  {'model MB':>8}  {'exempl MB':>9}  "
              f"{'total MB':>8}  {'seconds':>7}")
    print(header, flush=True)

    def show(t) -> None:
        m = t.memory
        print(f"{t.task + 1:>4}  {t.seen_acc:>6.4f}  {t.test.avg_acc:>7.4f}  {t.test.forgetting:>6.4f}  "
              f"{_mb(m.model_bytes):>8}  {_mb(m.exemplar_bytes):>9}  {_mb(m.total_bytes):>8}  {t.wall_s:>7.1f}",
              flush=True)

    if args.checkpoint_dir and (Path(args.checkpoint_dir) / CHECKPOINT_FILE).exists():
        done = load_checkpoint(Path(args.checkpoint_dir) / CHECKPOINT_FILE).get("results", [])
        print(f"resuming from {args.checkpoint_dir}: {len(done)} task(s) done", flush=True)
        for row in done:
            show(TaskResult.from_dict(row))
    result = run(config, show, checkpoint_dir=args.checkpoint_dir)
    final = result.final
    print(f"{_SCENARIO_NAMES[config.scenario]}: average incremental accuracy {final.test.avg_acc:.4f}, last accuracy "
          f"{final.test.last_acc:.4f}, forgetting {final.test.forgetting:.4f}, BWT {final.test.bwt:.4f}; memory "
          f"{_mb(final.memory.total_bytes)} MB ({final.memory.n_exemplars} exemplars); "
          f"{final.elapsed_s:.1f} s")
    phases = {label: sum(t.phase_s.get(name, 0.0) for t in result.tasks) for name, label in PHASE_LABELS.items()}
    print("time by phase: " + ", ".join(f"{label} {_seconds(sec)}" for label, sec in phases.items()))
    if args.out:
        # Strict JSON: NaN (e.g. validation metrics when benchmark.val_fraction is 0) is written as null.
        Path(args.out).write_text(json.dumps(_nan_to_none(result.to_dict()), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.out}")
    return 0


def _seconds(sec: float) -> str:
    """``12.3 s``; under a tenth of a second in ms (the memory census takes about a millisecond)."""
    return f"{sec:.1f} s" if sec >= 0.1 else f"{sec * 1000:.1f} ms"


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def budget_report(config, memory_mb: float | None = None) -> dict[str, Any]:
    """The numbers ``incsweep budget`` prints, as plain data."""
    from incsweep.incremental.methods import ExemplarConfig, get_method

    method_cls = get_method(config.method)
    plan = method_cls.plan(config.method_config, config.benchmark)
    keeps_exemplars = isinstance(config.method_config, ExemplarConfig)
    report: dict[str, Any] = {
        "method": config.method, "benchmark": config.benchmark.name, "n_tasks": len(config.benchmark.task_sizes),
        "model_bytes": plan.model_bytes, "extra_bytes": plan.extra_bytes, "bytes_per_exemplar": plan.image_bytes,
        "budget": getattr(config.method_config, "budget", None) if keeps_exemplars else None,
        "n_exemplars": plan.n_exemplars, "exemplar_bytes": plan.n_exemplars * plan.image_bytes,
        "total_bytes": plan.total_bytes, "total_mb": plan.total_bytes / MB,
        "exemplar_total": plan.exemplar_total, "backbone_params": plan.backbone_params,
        "train_state_bytes": plan.train_state_bytes,
        "exact": method_cls.plan_is_exact, "details": dict(plan.details),
    }
    if memory_mb is not None:
        fixed = plan.model_bytes + plan.extra_bytes
        at: dict[str, Any] = {"memory_mb": memory_mb, "fits": fixed <= memory_mb * MB}
        if keeps_exemplars:
            mc = dataclasses.replace(config.method_config, budget="total_mb", memory_mb=memory_mb)
            p = method_cls.plan(mc, config.benchmark)
            at.update(n_exemplars=p.n_exemplars, total_bytes=p.total_bytes, exemplar_total=p.exemplar_total)
        elif not at["fits"]:
            raise ConfigError(f"--memory-mb {memory_mb}: {config.method} needs {_mb(fixed)} MB for its model alone")
        report["at_memory_mb"] = at
    return report


def _budget(args: argparse.Namespace) -> int:
    # A plan never touches the device: a GPU config (device: cuda) is planned on any machine.
    config = _load(args, device="cpu")
    r = budget_report(config, args.memory_mb)
    if args.json:
        print(json.dumps(r, indent=2, default=str))
        return 0
    bound = "" if r["exact"] else " (upper bound: the method's sizes depend on the data)"
    print(f"{r['method']} on {r['benchmark']} ({r['n_tasks']} tasks), after the last task{bound}:")
    print(f"  model              {r['model_bytes']:>12,} bytes  {_mb(r['model_bytes'])} MB")
    if r["extra_bytes"]:
        print(f"  extras             {r['extra_bytes']:>12,} bytes  {_mb(r['extra_bytes'])} MB")
    print(f"  bytes per exemplar {r['bytes_per_exemplar']:>12,}")
    if r["budget"] is not None or r["n_exemplars"]:
        label = f"exemplars ({r['budget']})" if r["budget"] else "stored images"
        print(f"  {label:<18} {r['n_exemplars']:>12,}         {_mb(r['exemplar_bytes'])} MB")
    if r["train_state_bytes"]:
        print(f"  training only      {r['train_state_bytes']:>12,} bytes  {_mb(r['train_state_bytes'])} MB (not kept)")
    print(f"  total              {r['total_bytes']:>12,} bytes  {_mb(r['total_bytes'])} MB")
    typed = {"backbone_params": r["backbone_params"], "exemplar_total": r["exemplar_total"] or None,
             "budget": r["budget"]}
    for key, value in {**{k: v for k, v in typed.items() if v is not None}, **r["details"]}.items():
        print(f"  {key}: {value}")
    at = r.get("at_memory_mb")
    if at is not None:
        if "n_exemplars" in at:
            print(f"at {at['memory_mb']} MB total: {at['n_exemplars']:,} exemplars fit "
                  f"({_mb(at['total_bytes'])} MB used)")
        else:
            print(f"at {at['memory_mb']} MB total: {r['method']} keeps no exemplars; its model fits")
    return 0
