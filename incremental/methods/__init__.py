"""Incremental-learning methods behind one contract (``base.Method``), in one explicit registry."""

from __future__ import annotations

from .base import BudgetPlan, ExemplarConfig, Method, MethodConfig, RunContext
from .bmkp import BMKP
from .der import DER
from .finetune import Finetune
from .icarl import ICaRL
from .joint import Joint
from .memo import MEMO
from .replay import Replay
from .separate import Separate

__all__ = ["METHODS", "get_method", "Method", "MethodConfig", "ExemplarConfig", "RunContext", "BudgetPlan"]

METHODS: dict[str, type[Method]] = {
    "finetune": Finetune,
    "bmkp": BMKP,
    "separate": Separate,
    "replay": Replay,
    "icarl": ICaRL,
    "joint": Joint,
    "memo": MEMO,
    "der": DER,
}


def get_method(name: str) -> type[Method]:
    from ..errors import ConfigError

    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]
