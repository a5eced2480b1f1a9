"""Deliberately broken methods, to show the contract checks fail when a promise is broken."""

from __future__ import annotations

import copy
from typing import Any

import torch

from incsweep.incremental.api import MemoryReport, module_bytes
from incsweep.incremental.methods.finetune import Finetune
from incsweep.incremental.methods.replay import Replay


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


# -- Misreports the engine's memory census (incremental/census.py) must catch ----------------------
# Each is a replay-style method that is wrong in one way; every one of them ran to exit 0 before the
# census. ATTRIBUTE names what the census message must name.

class TeacherInBeginTask(Replay):
    """Keeps a full copy of the network as a teacher, made in begin_task, and does not report it."""

    ATTRIBUTE = "teacher"

    def begin_task(self, task) -> None:
        super().begin_task(task)
        self.teacher = copy.deepcopy(self.net)


class TeacherInEndTask(Replay):
    """The same copy, made in end_task."""

    ATTRIBUTE = "teacher"

    def end_task(self, task) -> None:
        super().end_task(task)
        self.teacher = copy.deepcopy(self.net).eval()


class FeatureBank(Replay):
    """A plain float tensor attribute (a feature bank), never reported."""

    ATTRIBUTE = "bank"

    def end_task(self, task) -> None:
        super().end_task(task)
        self.bank = torch.zeros(len(task.train.y), 16)


class TensorsInContainer(Replay):
    """Tensors inside a dict of lists inside a plain object, never reported."""

    ATTRIBUTE = "stash"

    class _Stash:
        def __init__(self) -> None:
            self.by_task: dict[int, list[torch.Tensor]] = {}

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.stash = self._Stash()

    def end_task(self, task) -> None:
        super().end_task(task)
        self.stash.by_task[task.index] = [torch.ones(32), torch.ones(8, dtype=torch.float64)]


class HalfExemplars(Replay):
    """Reports half of its exemplars (count and bytes, consistently)."""

    ATTRIBUTE = "exemplars"

    def memory(self) -> MemoryReport:
        half = len(self.exemplars) // 2
        return MemoryReport(model_bytes=self.model_bytes(), exemplar_bytes=half * self.ctx.image_bytes,
                            n_exemplars=half)


class OverPlanned(Replay):
    """Its plan claims 4,096 extra bytes that the method never keeps."""

    ATTRIBUTE = "extra_bytes"

    def planned_extra_bytes(self) -> int:
        return 4096


class UnreportedInitModule(Replay):
    """An nn.Linear made in __init__ and never reported."""

    ATTRIBUTE = "side"

    def __init__(self, config, ctx) -> None:
        super().__init__(config, ctx)
        self.side = torch.nn.Linear(64, 64).to(ctx.device)


MISREPORTS = (TeacherInBeginTask, TeacherInEndTask, FeatureBank, TensorsInContainer, HalfExemplars, OverPlanned,
              UnreportedInitModule)


class RaisingConstructor(Finetune):
    """A constructor that raises: a study must refuse it before Ray starts."""

    def __init__(self, config, ctx) -> None:
        raise RuntimeError("my constructor is broken: no widget for you")
