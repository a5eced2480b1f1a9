"""Which options each pluggable kind of a study takes: Optuna samplers and Tune schedulers by the
names a spec uses. The study builds the kinds (``study/kinds.py``, from these names and options);
spec validation and the report read the options from here, so an option shown or accepted is one
that acts."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Mapping

__all__ = ["SAMPLER_OPTIONS", "SCHEDULER_OPTIONS", "applicable"]

SAMPLER_OPTIONS: Mapping[str, frozenset[str]] = MappingProxyType({
    "tpe": frozenset({"startup_trials", "multivariate", "window"}),
    "nsga2": frozenset({"population_size"}),
    "random": frozenset(),
    "gp": frozenset({"startup_trials"}),
})
SCHEDULER_OPTIONS: Mapping[str, frozenset[str]] = MappingProxyType({
    "fifo": frozenset(),
    "asha": frozenset({"grace_period", "reduction_factor", "rule"}),
})


def applicable(options: Mapping[str, frozenset[str]], setting: Mapping[str, Any]) -> dict[str, Any]:
    """``setting`` (a stored sampler or scheduler mapping) with its name and only the options its
    kind takes, in their stored order; an unknown kind keeps every option."""
    name = setting.get("name")
    takes = options.get(name) if isinstance(name, str) else None
    return {k: v for k, v in setting.items() if k == "name" or takes is None or k in takes}
