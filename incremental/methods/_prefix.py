"""Helpers for ``Method.fields_for_tasks``: which config fields task 0's computation reads.

Used by the prefix cache (incremental/prefix_cache.py): a field left out wrongly would let a
trial start from a state it could not have computed, so every helper errs on including.
"""

from __future__ import annotations

import dataclasses

from incsweep.incremental.methods.base import ExemplarConfig, MethodConfig

__all__ = ["first_task_fields", "budget_fields"]

# MethodConfig.task_schedule(0) reads init_X when it is set and X otherwise.
_INIT_OVERRIDES = {"init_epochs": "epochs", "init_lr": "lr", "init_weight_decay": "weight_decay",
                   "init_milestones": "milestones"}
# Read by task 0 whatever the init_* fields say: the network and the shared SGD settings.
_ALWAYS_TASK0 = ("backbone", "width", "momentum", "batch_size", "schedule", "lr_decay", "bn_stats")


def first_task_fields(config: MethodConfig, *extra: str) -> frozenset[str]:
    """MethodConfig fields that shape the network and task 0's SGD schedule, plus ``extra``."""
    names = set(_ALWAYS_TASK0) | set(_INIT_OVERRIDES) | set(extra)
    names |= {later for init, later in _INIT_OVERRIDES.items() if getattr(config, init) is None}
    return frozenset(names)


def budget_fields() -> frozenset[str]:
    """Every exemplar-budget field: exemplars chosen at the end of task 0 already depend on them."""
    return frozenset(f.name for f in dataclasses.fields(ExemplarConfig)) - {f.name for f in dataclasses.fields(MethodConfig)}
