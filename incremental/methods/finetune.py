"""Finetune: train on each new task's data only. The lower bound every method must beat."""

from __future__ import annotations

from incsweep.search_spaces import spaces

from ..benchmarks import BenchmarkConfig, Task
from ..memory import MemoryReport
from ._prefix import first_task_fields
from ._single import SingleNetMethod, backbone_params, head_bytes
from .base import BudgetPlan, MethodConfig


class Finetune(SingleNetMethod[MethodConfig]):
    config_cls = MethodConfig
    search_space = spaces.FINETUNE
    scenarios = ("class_il", "task_il")

    def train_task(self, task: Task) -> None:
        self.train_on(task, task.train.x, task.train.y)

    def memory(self) -> MemoryReport:
        return MemoryReport(model_bytes=self.model_bytes())

    @classmethod
    def plan(cls, config: MethodConfig, benchmark: BenchmarkConfig) -> BudgetPlan:
        from ..backbones import build_backbone
        from ..memory import module_bytes

        c, h, w = benchmark.spec.image_shape
        bb = build_backbone(config.backbone, c, **config.backbone_kwargs())
        model = module_bytes(bb) + head_bytes(bb.out_dim, benchmark.spec.n_classes)
        return BudgetPlan(model, 0, c * h * w, 0, backbone_params=backbone_params(config, c))

    @classmethod
    def fields_for_tasks(cls, config: MethodConfig, n_done: int) -> frozenset[str] | None:
        """Task 0 reads the network and its own schedule; every field acts from task 1 on."""
        return first_task_fields(config) if n_done <= 1 else None
