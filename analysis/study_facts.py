"""What a report states about each study it shows: benchmark, scenario, methods, seeds and code
version from the result rows, and objectives, constraints, sampler, scheduler and trials from the
study's ``study.yaml`` when an input is a local study directory. Torch-free (plain YAML)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from incsweep.core.builtin_methods import display_name
from incsweep.core.kinds import SAMPLER_OPTIONS, SCHEDULER_OPTIONS, applicable

__all__ = ["study_facts", "study_specs"]

log = logging.getLogger(__name__)


def study_specs(inputs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """study name -> its saved spec, for every input that is a study's storage (or, for local paths,
    one of its two parents, e.g. ``<storage>/results``)."""
    from incsweep.core.layout import StudyLayout  # pyarrow and yaml only: no Ray

    found: dict[str, dict[str, Any]] = {}
    for text in inputs:
        local = "://" not in text or text.startswith("file://")
        candidates = [text]
        if local:
            path = Path(text.removeprefix("file://"))
            candidates = [str(p) for p in (path, *list(path.parents)[:2]) if p.is_dir()]
        for candidate in candidates:
            try:
                data = StudyLayout(candidate).read_spec()
            except (OSError, UnicodeDecodeError, yaml.YAMLError, ValueError) as err:
                log.warning("ignoring the study spec under %s (%s)", candidate, err)
                continue
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                found.setdefault(data["name"], data)
                break
    return found


def _distinct(table: pa.Table, column: str) -> list:
    if column not in table.column_names:
        return []
    return sorted(v for v in pc.unique(table[column]).to_pylist() if v is not None)


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items() if v is not None)
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    return str(value)


def study_facts(table: pa.Table, inputs: Sequence[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """For each study in ``table``: (name, [(fact, value), ...]) in a fixed order."""
    specs = study_specs(inputs)
    out = []
    for study in _distinct(table, "study"):
        rows = table.filter(pc.equal(table["study"], study))
        final = rows.filter(rows["is_final"])
        facts = [("benchmark", ", ".join(_distinct(rows, "benchmark"))),
                 ("scenario", ", ".join(_distinct(rows, "scenario"))),
                 ("methods", ", ".join(display_name(m) for m in _distinct(rows, "method"))),
                 ("trials", f"{final.num_rows} finished"),
                 ("run seeds", ", ".join(map(str, _distinct(final, "seed"))) or "-"),
                 ("code version", ", ".join(_distinct(final, "code_version")) or "-")]
        spec = specs.get(study)
        if spec is not None:
            facts += [("objectives", _describe(spec.get("objectives") or [])),
                      ("constraints", _describe(spec.get("constraints") or [])),
                      ("sampler", _describe(applicable(SAMPLER_OPTIONS, spec.get("sampler") or {}))),
                      ("scheduler", _describe(applicable(SCHEDULER_OPTIONS, spec.get("scheduler") or {}))),
                      ("trials requested", str(spec.get("trials", "-"))),
                      ("search seed", str(spec.get("seed", "-")))]
        else:
            facts.append(("study spec", "no study.yaml among the inputs (objectives, sampler and scheduler unknown)"))
        out.append((study, facts))
    return out
