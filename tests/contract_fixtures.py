"""Deliberately broken methods, to show the contract checks fail when a promise is broken."""

from __future__ import annotations

from typing import Any

import torch

from incsweep.incremental.api import MemoryReport, module_bytes
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


class UnplannedFinetune(Finetune):
    """Keeps a second head it builds in end_task, and reports it, without planning for it: the
    measured plan (methods/planning.py) cannot see what end_task makes from data."""

    def end_task(self, task) -> None:
        self.spare = torch.nn.Linear(self.net.backbone.out_dim, 2).to(self.ctx.device)

    def memory(self) -> MemoryReport:
        spare = module_bytes(self.spare) if hasattr(self, "spare") else 0
        return MemoryReport(model_bytes=self.model_bytes() + spare)


class DataHungryFinetune(Finetune):
    """Reads a value in begin_task, which the meta-device build of the default plan() cannot give."""

    def begin_task(self, task) -> None:
        super().begin_task(task)
        self.scale = float(next(self.net.parameters()).abs().sum().item())
