"""The built-in methods: registered name -> (module under ``incremental.methods``, class, the name
the method's paper and the literature write). Torch-free, so analysis can label plots with it;
the registry (``incremental.methods``) imports each class from here on first use."""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

__all__ = ["BUILTIN_METHODS", "display_name"]

BUILTIN_METHODS: Mapping[str, tuple[str, str, str]] = MappingProxyType({
    "finetune": ("finetune", "Finetune", "Finetune"),
    "bmkp": ("bmkp", "BMKP", "BMKP"),
    "separate": ("separate", "Separate", "Separate networks"),
    "replay": ("replay", "Replay", "Replay"),
    "icarl": ("icarl", "ICaRL", "iCaRL"),
    "joint": ("joint", "Joint", "Joint"),
    "memo": ("memo", "MEMO", "MEMO"),
    "der": ("der", "DER", "DER"),
    "lwf": ("lwf", "LwF", "LwF"),
    "ewc": ("ewc", "EWC", "EWC"),
})


def display_name(method: str) -> str:
    """How papers write ``method`` (``icarl`` -> ``iCaRL``); any other name (a plugin's) as given."""
    entry = BUILTIN_METHODS.get(method)
    return entry[2] if entry else method
