"""Ray Tune trainables: each wraps one full incremental run of a method (``incremental.run``).

A method's trainable is part of its registry entry (``Method.trainable``, a ``module:function``
reference; None: the shared :func:`run_trial`, which runs any method through the engine's contract).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

from incsweep.core.errors import ConfigError
from incsweep.trainables.trial import TrialSpec, run_trial, task_metrics

__all__ = ["get_trainable", "run_trial", "TrialSpec", "task_metrics"]


def trainable_of(method: str) -> Callable[[Mapping], None]:
    """The trainable ``method``'s registry entry names."""
    from incsweep.core.plugins import load_reference
    from incsweep.incremental.methods import get_method

    ref = get_method(method).trainable
    if ref is None:
        return run_trial
    found = load_reference(ref, f"trainable of method {method!r}")
    if not callable(found):
        raise ConfigError(f"trainable of method {method!r}: {ref!r} is {type(found).__name__}, not a function")
    return found


def get_trainable(methods: Sequence[str]) -> Callable[[Mapping], None]:
    """The trainable of a study over ``methods`` (they must share one; the config names the method)."""
    found = {trainable_of(m) for m in methods}
    if len(found) != 1:
        raise ConfigError(f"methods {list(methods)} need different trainables; run them as separate studies")
    return found.pop()
