"""Finetune: train on each new task's data only. The lower bound every method must beat."""

from __future__ import annotations

from incsweep.incremental.benchmarks import Task
from incsweep.incremental.memory import MemoryReport
from incsweep.incremental.methods._prefix import first_task_fields
from incsweep.incremental.methods._single import SingleNetMethod
from incsweep.incremental.methods._space import SEARCHED_LR, SEARCHED_WEIGHT_DECAY, frozen_space
from incsweep.incremental.methods.base import MethodConfig


class Finetune(SingleNetMethod[MethodConfig]):
    config_cls = MethodConfig
    search_space = frozen_space({"lr": SEARCHED_LR, "weight_decay": SEARCHED_WEIGHT_DECAY})
    scenarios = ("class_il", "task_il")

    def train_task(self, task: Task) -> None:
        self.train_on(task, task.train.x, task.train.y)

    def memory(self) -> MemoryReport:
        return MemoryReport(model_bytes=self.model_bytes())

    @classmethod
    def fields_for_tasks(cls, config: MethodConfig, n_done: int) -> frozenset[str] | None:
        """Task 0 reads the network and its own schedule; every field acts from task 1 on."""
        return first_task_fields(config) if n_done <= 1 else None
