"""Replay (experience replay with iCaRL herding; PyCIL models/replay.py): CE over all seen classes
on the new task's data plus the exemplar memory. Prediction is the network's classifier (CNN)."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from incsweep.incremental.benchmarks import Task
from incsweep.incremental.memory import MemoryReport
from incsweep.incremental.methods._exemplar import ExemplarMemory, rehearsal_ce, with_exemplars
from incsweep.incremental.methods._prefix import budget_fields, first_task_fields
from incsweep.incremental.methods._single import SingleNetMethod
from incsweep.incremental.methods._space import SEARCHED_LR, SEARCHED_MEMORY_SIZE, SEARCHED_WEIGHT_DECAY, frozen_space
from incsweep.incremental.methods.base import ExemplarConfig, RunContext

__all__ = ["Replay"]

EC = TypeVar("EC", bound=ExemplarConfig)  # Replay and its subclasses (iCaRL) keep exemplars


class Replay(SingleNetMethod[EC]):
    config_cls = ExemplarConfig
    search_space = frozen_space({"lr": SEARCHED_LR, "weight_decay": SEARCHED_WEIGHT_DECAY, "memory_size": SEARCHED_MEMORY_SIZE})
    scenarios: ClassVar[tuple[str, ...]] = ("class_il", "task_il")

    def __init__(self, config: EC, ctx: RunContext):
        super().__init__(config, ctx)
        self.exemplars = ExemplarMemory(ctx.exemplar_total, config.memory_per_class)  # M: from plan(), by the engine

    def train_task(self, task: Task) -> None:
        x, y = with_exemplars(task, self.exemplars)
        sizes = self.ctx.benchmark.task_sizes
        self.train_on(task, x, y, lambda xb, yb: rehearsal_ce(self.net(xb), yb, self.n_seen, self.ctx.scenario, sizes))

    def end_task(self, task: Task) -> None:
        self.exemplars.update(task, self.features)

    def memory(self) -> MemoryReport:
        return MemoryReport(model_bytes=self.model_bytes(), exemplar_bytes=self.exemplars.nbytes,
                            n_exemplars=len(self.exemplars))

    @classmethod
    def fields_for_tasks(cls, config: EC, n_done: int) -> frozenset[str] | None:
        """Task 0 reads the network, its schedule and the budget (its exemplars are chosen at its end)."""
        return first_task_fields(config) | budget_fields() if n_done <= 1 else None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "exemplars": self.exemplars.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.exemplars.load_state_dict(state["exemplars"])

