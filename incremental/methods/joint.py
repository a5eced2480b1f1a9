"""Joint training (the upper bound): at task t, train on every training image of tasks 0..t.

It keeps all training data it has seen; that data is counted honestly as exemplars (every stored
image at its raw uint8 size), so on an accuracy-vs-memory plot joint sits far to the right.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from incsweep.incremental.benchmarks import BenchmarkConfig, Task
from incsweep.incremental.budget import train_images_by_class
from incsweep.incremental.exemplars import ExemplarStore
from incsweep.incremental.memory import MemoryReport
from incsweep.incremental.methods._exemplar import rehearsal_ce
from incsweep.incremental.methods._prefix import first_task_fields
from incsweep.incremental.methods._single import IncrementalNet, SingleNetMethod
from incsweep.incremental.methods.base import BudgetPlan, MethodConfig, RunContext

__all__ = ["JointConfig", "Joint"]


@dataclass(frozen=True)
class JointConfig(MethodConfig):
    # Default False (continue from the previous task's weights): at the same per-task schedule a warm
    # start has seen the old data for more epochs, so it is at least as strong an upper bound, costs
    # no extra compute, and every acc_i is that of a model trained on all data so far. True re-draws
    # the network before every task > 0 (mammoth's JOINT retrains from scratch), removing any
    # ordering effect at the price of learning everything again.
    retrain: bool = False


class Joint(SingleNetMethod[JointConfig]):
    config_cls = JointConfig
    # No default space: joint is the reference upper bound, run at its defaults (or the spec's search).
    search_space = None
    scenarios = ("class_il", "task_il")

    def __init__(self, config: JointConfig, ctx: RunContext):
        super().__init__(config, ctx)
        self.data = ExemplarStore()  # every training image seen, per class

    def begin_task(self, task: Task) -> None:
        if self.config.retrain and task.index > 0:
            # Drawn after the run loop reseeds for this task: the fresh init is a function of (seed, task).
            old_classes = self.net.head.out_features
            self.net = IncrementalNet(self.config, self.ctx.image_shape[0]).to(self.ctx.device)
            self.net.head.expand(old_classes)
        super().begin_task(task)

    def train_task(self, task: Task) -> None:
        for c in task.classes:
            self.data.add(c, task.train.x[task.train.y == c])
        x, y = self.data.data()
        sizes = self.ctx.benchmark.task_sizes
        self.train_on(task, x, y, lambda xb, yb: rehearsal_ce(self.net(xb), yb, self.n_seen, self.ctx.scenario, sizes))

    def memory(self) -> MemoryReport:
        return MemoryReport(model_bytes=self.model_bytes(), exemplar_bytes=self.data.nbytes, n_exemplars=len(self.data))

    @classmethod
    def plan(cls, config: JointConfig, benchmark: BenchmarkConfig) -> BudgetPlan:
        """The measured plan (methods/planning.py) plus every training image, which it stores as exemplars."""
        n = sum(train_images_by_class(benchmark))
        return dataclasses.replace(super().plan(config, benchmark), n_exemplars=n, exemplar_total=n,
                                   details={"stored_training_images": n})

    @classmethod
    def fields_for_tasks(cls, config: JointConfig, n_done: int) -> frozenset[str] | None:
        """Task 0 is finetune's task 0 (``retrain`` acts from task 1 on)."""
        return first_task_fields(config) if n_done <= 1 else None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "data": self.data.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.data.load_state_dict(state["data"])

