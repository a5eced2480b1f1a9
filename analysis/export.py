"""Export selected configurations as run-config YAML files with their provenance.

Each file is the trial's full resolved RunConfig (its ``config_json`` column) plus a
``provenance:`` block (study, trial, metrics, per-task metrics, code version, export time), so
``incsweep run --config FILE`` re-runs it: RunConfig.from_dict ignores ``provenance``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from incsweep.analysis.load import SOURCE_COLUMN
from incsweep.analysis.select import best_under
from incsweep.analysis.summary import Summary
from incsweep.core.errors import ConfigError
from incsweep.core.provenance import code_version
from incsweep.core.vocabulary import ACCURACY_METRICS, MEMORY_METRIC, REPORTED, TEST_METRICS

__all__ = ["parse_select", "select_runs", "export_configs", "SELECTIONS"]

log = logging.getLogger(__name__)

SELECTIONS = ("front", "knee", "best-under-mb=X")
# incsweep/core/vocabulary.py: every scalar result, and per task the accuracies, the test row and memory
_METRICS = REPORTED
_TASK_METRICS = (*ACCURACY_METRICS, *TEST_METRICS, "acc_row", MEMORY_METRIC)


def parse_select(text: str) -> tuple[str, float | None]:
    """``front`` | ``knee`` | ``best-under-mb=X`` -> (kind, X)."""
    if text in ("front", "knee"):
        return text, None
    name, eq, value = text.partition("=")
    if name == "best-under-mb" and eq:
        try:
            limit = float(value)
        except ValueError:
            raise ConfigError(f"--select {text!r}: {value!r} is not a number of MB") from None
        if not limit > 0:
            raise ConfigError(f"--select {text!r}: the memory limit must be > 0 MB")
        return "best-under-mb", limit
    raise ConfigError(f"--select {text!r} is not allowed; use one of {list(SELECTIONS)}")


def select_runs(summary: Summary, select: str) -> list[int]:
    """Indices into ``summary.runs`` picked by ``select``, per group when the summary has groups."""
    kind, limit = parse_select(select)
    groups = list(summary.groups.values()) or [summary.overall]
    picked: list[int] = []
    for g in groups:
        if kind == "front":
            picked.extend(int(i) for i in g.front)
        elif kind == "knee":
            picked.extend([] if g.knee is None else [g.knee])
        else:
            mem = summary.runs[summary.memory].to_numpy(zero_copy_only=False)[g.rows]
            acc = summary.runs[summary.accuracy].to_numpy(zero_copy_only=False)[g.rows]
            assert limit is not None  # parse_select gives best-under-mb a limit
            j = best_under(mem, acc, limit)
            picked.extend([] if j is None else [int(g.rows[j])])
    return list(dict.fromkeys(picked))


def _plain(value: Any) -> Any:
    """YAML-friendly: numpy scalars to Python, NaN to null (an unknown metric, e.g. no val split)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _task_metrics(summary: Summary, runs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """(study, trial_id) -> the per-task metrics of each of ``runs``, by task; one pass over the table
    (a filter of the whole table per run took 28 s for a 10,000-trial study's 8,352-run front)."""
    t = summary.table
    wanted = {(str(r["study"]), str(r["trial_id"])) for r in runs}
    ids = pa.array(sorted({trial for _, trial in wanted}), pa.string())
    tasks = t.filter(pc.and_(pc.invert(t["is_final"]), pc.is_in(pc.cast(t["trial_id"], pa.string()), value_set=ids)))
    columns = ["study", "trial_id", "task", *(k for k in _TASK_METRICS if k in tasks.column_names)]
    out: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in wanted}
    for r in tasks.select(columns).to_pylist():
        key = (str(r["study"]), str(r["trial_id"]))
        if key in out:
            out[key].append({"task": r["task"], **{k: _plain(r[k]) for k in columns[3:]}})
    return {key: sorted(rows, key=lambda r: r["task"]) for key, rows in out.items()}


# libyaml's emitter where PyYAML was built with it (the wheels are): the same YAML. With the one-pass task
# metrics above, exporting a 10,000-trial study's 8,549-run front took 6.9 s instead of 53.3 s, the files
# identical (benchmarks/results/study_scale.txt); PyYAML's Python emitter was most of the 53 s (cProfile).
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _yaml(data: dict[str, Any]) -> str:
    return yaml.dump(data, Dumper=_DUMPER, sort_keys=False)


# BenchmarkConfig's fields that only the synthetic benchmark reads (incremental/benchmarks.py, "synthetic
# only"): an exported config of any other benchmark leaves them out, so its YAML does not claim a class
# count or image size that the data decides; reading it back restores their defaults, the same config.
SYNTHETIC_ONLY = ("n_classes", "image_size", "channels")


def exported_config(config: dict[str, Any]) -> dict[str, Any]:
    """The run config as written to YAML: every field, less what does not apply to its benchmark."""
    bench = dict(config.get("benchmark") or {})
    if bench.get("name") != "synthetic":
        bench = {k: v for k, v in bench.items() if k not in SYNTHETIC_ONLY}
    return {**config, "benchmark": bench}


def _filename(run: dict[str, Any]) -> str:
    raw = f"{run['study']}__{run['method']}__{run['trial_id']}"
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", raw) + ".yaml"


def export_configs(summary: Summary, indices: list[int], out_dir: str | Path, *, selected_by: str) -> list[Path]:
    """Write one YAML per selected run into ``out_dir``; returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    here = code_version()
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    from incsweep.analysis.tables import confirmed_figures

    confirmed = {c.index: c for c in confirmed_figures(summary, indices)}
    runs = [summary.row(i) for i in indices]
    for run in runs:
        if not run.get("config_json"):
            raise ConfigError(f"trial {run['trial_id']} ({run.get(SOURCE_COLUMN)}) has no config_json: cannot export it")
    tasks = _task_metrics(summary, runs)
    other = [r for r in runs if r.get("code_version") and r["code_version"] != here]
    if other:  # one line, not one per file: a front can hold thousands of runs
        versions = sorted({str(r["code_version"]) for r in other})
        log.warning("%d of the %d exported run(s) were recorded with other code (%s, e.g. trial %s), this "
                    "checkout is %s: a re-run may differ", len(other), len(runs), ", ".join(versions[:3])
                    + (", ..." if len(versions) > 3 else ""), other[0]["trial_id"], here)
    written = []
    for i, run in zip(indices, runs):
        config = exported_config(json.loads(run["config_json"]))
        provenance = {
            "study": run["study"], "trial_id": run["trial_id"], "method": run["method"],
            "benchmark": run.get("benchmark"), "seed": _plain(run.get("seed")),
            "selected_by": selected_by, "objectives": [str(o) for o in summary.objectives],
            # what the run was judged by, and met: its study's constraints plus any --constraint
            "constraints": summary.constraints.get(str(run["study"]), ""),
            "metrics": {k: _plain(run[k]) for k in _METRICS if k in run},
            "params": {k: _plain(v) for k, v in run.items() if k.startswith("param_") and v is not None},
            "tasks": tasks[(str(run["study"]), str(run["trial_id"]))],
            "code_version": run.get("code_version"), "exported_at": now, "exported_with": here,
            "source_file": run.get(SOURCE_COLUMN),
        }
        if i in confirmed:  # incsweep confirm's runs of this configuration on fresh seeds
            c = confirmed[i]
            provenance["confirmed"] = {"runs": c.n, **{k: {"mean": c.mean[k], "std": _plain(c.std[k])} for k in c.mean},
                                       "flagged": c.flagged}
        path = out / _filename(run)
        text = ("# Re-run: incsweep run --config " + path.name + "\n"
                + _yaml({"provenance": provenance}) + _yaml(config))
        path.write_text(text)
        written.append(path)
    return written
