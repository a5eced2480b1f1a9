"""Confirmation runs: the selected configurations of a study re-run on fresh seeds (``incsweep
confirm``), read beside the study's own runs.

Their rows belong to studies named ``<study>.confirm`` (one storage per seed under the study's
``confirm/``). They never enter a front: a lucky seed must not replace the configuration it
confirms. Each front configuration is matched with its confirmation runs by its configuration
without the run seed and the class order (what confirmation varies), and gets the mean and sample
standard deviation over them; it is flagged when the search's value lies more than two standard
deviations from the confirmed mean.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["CONFIRM_SUFFIX", "EVALUATE_SUFFIX", "is_confirmation", "split_confirmation", "config_key", "method_key",
           "Confirmed", "confirmations", "evaluations"]

CONFIRM_SUFFIX = ".confirm"
# Protocols two_phase and first_task: the front run in the evaluation phase (study/confirm.py plan_evaluation).
EVALUATE_SUFFIX = ".evaluate"
FLAG_SIGMAS = 2.0  # the search's value this many sample standard deviations from the confirmed mean: flagged


def is_confirmation(study: str) -> bool:
    return study.endswith((CONFIRM_SUFFIX, EVALUATE_SUFFIX))


def split_confirmation(table: pa.Table) -> tuple[pa.Table, pa.Table]:
    """(the studies' own rows, re-run rows: confirmations and evaluation phases)."""
    study = pc.cast(table["study"], pa.string())
    mask = pc.or_(pc.ends_with(study, CONFIRM_SUFFIX), pc.ends_with(study, EVALUATE_SUFFIX))
    return table.filter(pc.invert(mask)), table.filter(mask)


def method_key(config_json: str | None) -> str | None:
    """A run's method, its configuration and scenario: what an evaluation phase keeps from tuning."""
    config = json.loads(config_json) if config_json else {}
    if "method" not in config:
        return None
    return json.dumps({k: config.get(k) for k in ("method", "method_config", "scenario")}, sort_keys=True)


def config_key(config_json: str | None) -> str | None:
    """A run's configuration without what confirmation varies (run seed, class order); None when the
    row records no configuration."""
    config = json.loads(config_json) if config_json else {}
    if "method" not in config:
        return None
    config.pop("seed", None)
    if isinstance(config.get("benchmark"), dict):
        config["benchmark"] = {k: v for k, v in config["benchmark"].items() if k != "class_order"}
    return json.dumps(config, sort_keys=True)


@dataclass(frozen=True)
class Confirmed:
    """One configuration's confirmation: its search value and the confirmed figures per column."""

    index: int  # into Summary.runs
    n: int
    searched: dict[str, float]  # column -> the search's value
    mean: dict[str, float]
    std: dict[str, float]  # sample standard deviation (NaN for one run)
    flagged: bool  # the search's accuracy is more than FLAG_SIGMAS std from the confirmed mean


def confirmations(runs: pa.Table, confirmed: pa.Table, indices: Any, columns: list[str], flag_column: str) -> list[Confirmed]:
    """For each of ``indices`` (rows of ``runs``) that has complete confirmation runs, their figures."""
    if confirmed.num_rows == 0 or "config_json" not in runs.column_names:
        return []
    confirmed = confirmed.filter(pc.ends_with(pc.cast(confirmed["study"], pa.string()), CONFIRM_SUFFIX))
    by_key: dict[str, list[int]] = {}
    for j, text in enumerate(confirmed["config_json"].to_pylist()):
        key = config_key(text)
        if key is not None:
            by_key.setdefault(key, []).append(j)
    out = []
    keys = runs["config_json"].to_pylist()
    for i in (int(i) for i in indices):
        rows = by_key.get(config_key(keys[i]) or "", [])
        if not rows:
            continue
        searched, mean, std = {}, {}, {}
        for c in columns:
            if c not in confirmed.column_names:
                continue
            vals = np.asarray(pc.cast(confirmed[c], pa.float64()).take(rows).to_pylist(), dtype=float)
            searched[c] = float(runs[c][i].as_py()) if runs[c][i].as_py() is not None else math.nan
            mean[c] = float(np.mean(vals))
            std[c] = float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan
        s, m, d = searched.get(flag_column, math.nan), mean.get(flag_column, math.nan), std.get(flag_column, math.nan)
        flagged = bool(len(rows) > 1 and math.isfinite(d) and abs(s - m) > FLAG_SIGMAS * d)
        out.append(Confirmed(i, len(rows), searched, mean, std, flagged))
    return out


def evaluations(runs: pa.Table, reruns: pa.Table, indices: Any, column: str) -> list[tuple[int, dict[str, Any]]]:
    """Protocols two_phase and first_task: for each of ``indices`` (rows of ``runs``) its evaluation run (a study named
    ``*.evaluate``): (index, that run's row)."""
    if reruns.num_rows == 0 or "config_json" not in runs.column_names:
        return []
    study = pc.cast(reruns["study"], pa.string())
    evaluated = reruns.filter(pc.ends_with(study, EVALUATE_SUFFIX)).to_pylist()
    by_key = {method_key(r["config_json"]): r for r in evaluated}
    keys = runs["config_json"].to_pylist()
    return [(int(i), by_key[k]) for i in indices if (k := method_key(keys[int(i)])) in by_key]
