"""Ray Tune trainables: each wraps one full incremental run of a method (``incremental.run``)."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from incsweep.incremental.errors import ConfigError

from .trial import TrialSpec, run_trial, task_metrics

__all__ = ["TRAINABLES", "get_trainable", "run_trial", "TrialSpec", "task_metrics"]

# One explicit registry. Every method here runs through the engine's single Method contract, so they
# share the one trainable; a method that needs different Tune handling registers its own function.
TRAINABLES: Mapping[str, Callable[[Mapping], None]] = {
    "finetune": run_trial,
    "replay": run_trial,
    "icarl": run_trial,
    "joint": run_trial,
    "der": run_trial,
    "memo": run_trial,
    "bmkp": run_trial,
    "separate": run_trial,
}


def get_trainable(methods: Sequence[str]) -> Callable[[Mapping], None]:
    """The trainable of a study over ``methods`` (they must share one; the config names the method)."""
    unknown = [m for m in methods if m not in TRAINABLES]
    if unknown:
        raise ConfigError(f"no trainable for method(s) {unknown}; registered: {sorted(TRAINABLES)}")
    found = {TRAINABLES[m] for m in methods}
    if len(found) != 1:
        raise ConfigError(f"methods {list(methods)} need different trainables; run them as separate studies")
    return found.pop()
