"""Deliberately broken methods, to show the contract checks fail when a promise is broken."""

from __future__ import annotations

from typing import Any

from incsweep.incremental.api import MemoryReport
from incsweep.incremental.methods.finetune import Finetune


class LeakyFinetune(Finetune):
    """Under-reports its model by one byte and drops the head's bias from its state."""

    def memory(self) -> MemoryReport:
        return MemoryReport(model_bytes=self.model_bytes() - 1)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["net"] = {k: v for k, v in state["net"].items() if not k.endswith("head.bias")}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"], strict=False)
        self.n_seen = state["n_seen"]
