"""Replay (experience replay with iCaRL herding; PyCIL models/replay.py): CE over all seen classes
on the new task's data plus the exemplar memory. Prediction is the network's classifier (CNN)."""

from __future__ import annotations

from typing import Any, ClassVar, TypeVar

from incsweep.search_spaces import spaces

from ..benchmarks import BenchmarkConfig, Task
from ..memory import MemoryReport
from ._exemplar import ExemplarMemory, exemplar_total, planned_exemplars, rehearsal_ce, with_exemplars
from ._prefix import budget_fields, first_task_fields
from ._single import SingleNetMethod
from .base import BudgetPlan, ExemplarConfig, RunContext
from .finetune import Finetune

__all__ = ["Replay"]

EC = TypeVar("EC", bound=ExemplarConfig)  # Replay and its subclasses (iCaRL) keep exemplars


class Replay(SingleNetMethod[EC]):
    config_cls = ExemplarConfig
    search_space = spaces.REPLAY
    scenarios: ClassVar[tuple[str, ...]] = ("class_il", "task_il")

    def __init__(self, config: EC, ctx: RunContext):
        super().__init__(config, ctx)
        # M is fixed once for the run, from the plan's final memory (docs/protocols.md).
        self.exemplars = ExemplarMemory(type(self).plan(config, ctx.benchmark).exemplar_total,
                                        config.memory_per_class)

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
    def plan(cls, config: EC, benchmark: BenchmarkConfig) -> BudgetPlan:
        return exemplar_plan(config, benchmark)

    @classmethod
    def fields_for_tasks(cls, config: EC, n_done: int) -> frozenset[str] | None:
        """Task 0 reads the network, its schedule and the budget (its exemplars are chosen at its end)."""
        return first_task_fields(config) | budget_fields() if n_done <= 1 else None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "exemplars": self.exemplars.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.exemplars.load_state_dict(state["exemplars"])


def exemplar_plan(config: ExemplarConfig, benchmark: BenchmarkConfig, extra_bytes: int = 0) -> BudgetPlan:
    """A single network (backbone + classifier over all classes) + ``extra_bytes`` + exemplars.

    M is derived from the final model (and extras) for ``total_mb``; for ``aligned`` the method keeps
    one backbone of DER's T, so it gets 2000 + floor((T-1) * P * 4 / img_bytes) exemplars.
    """
    net = Finetune.plan(config, benchmark)
    p = net.backbone_params
    assert p is not None, "Finetune.plan states the backbone's parameters"
    total = exemplar_total(config, benchmark, final_model_bytes=net.model_bytes + extra_bytes,
                           backbone_params=p, kept_params=p)
    n = planned_exemplars(total, config.memory_per_class, benchmark)
    return BudgetPlan(net.model_bytes, extra_bytes, net.image_bytes, n, exemplar_total=total, backbone_params=p,
                      details={"per_class_final": n // benchmark.spec.n_classes})
