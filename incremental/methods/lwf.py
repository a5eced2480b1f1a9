"""LwF, Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017), class-incremental as
PyCIL trains it (models/lwf.py): no exemplars; on task t > 0 the loss is cross-entropy over the new
task's classes plus ``kd_weight`` times the distillation of the previous model's old-class outputs
at temperature ``kd_temperature``. It keeps only its network (the previous model is training-time
state), so it sits at the zero-exemplar end of an accuracy/memory front.

Written on the public API only (``incsweep.incremental.api``), as a method from another package is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from incsweep.incremental.api import (
    SEARCHED_LR,
    SEARCHED_WEIGHT_DECAY,
    DistillingNetMethod,
    Float,
    MemoryReport,
    MethodConfig,
    Task,
    first_task_fields,
    frozen_space,
    kd_loss,
    spec,
)

__all__ = ["LwFConfig", "LwF"]


@dataclass(frozen=True)
class LwFConfig(MethodConfig):
    kd_temperature: float = spec(2.0, range=(0.01, 100.0))  # PyCIL models/lwf.py T = 2 (the paper's T too)
    kd_weight: float = spec(3.0, range=(0.0, 1000.0))  # PyCIL lamda = 3; the paper weighs the two terms 1:1
    # "new": CE over the new task's classes only (PyCIL, the paper's new-task head); "all": over every
    # seen class (a variant that also pushes old-class logits down on new data).
    ce_classes: str = spec("new", choices=("new", "all"))



class LwF(DistillingNetMethod[LwFConfig]):
    config_cls = LwFConfig
    search_space = frozen_space({
        "lr": SEARCHED_LR, "weight_decay": SEARCHED_WEIGHT_DECAY,
        # Li & Hoiem (2016) use T = 2 and weight 1 on the distillation term; PyCIL's lwf.py T = 2 and
        # lamda = 3 (its CIFAR-100 setting), so the range brackets both.
        "kd_temperature": Float(1.0, 4.0),
        "kd_weight": Float(0.3, 10.0, log=True),
    })
    scenarios = ("class_il", "task_il")

    def train_task(self, task: Task) -> None:
        cfg, first, known = self.config, self.old_net is None, task.offset
        lo, hi = task.classes[0], task.classes[-1] + 1

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            logits = self.net(xb)
            if first or self.ctx.scenario == "task_il" or cfg.ce_classes == "new":
                loss = F.cross_entropy(logits[:, lo:hi], yb - lo)
            else:
                loss = F.cross_entropy(logits[:, :hi], yb)
            old_logits = self.old_logits(xb) if cfg.kd_weight > 0 else None
            if old_logits is not None:
                loss = loss + cfg.kd_weight * kd_loss(logits[:, :known], old_logits, cfg.kd_temperature)
            return loss

        self.train_on(task, task.train.x, task.train.y, loss_fn)

    def memory(self) -> MemoryReport:
        return MemoryReport(model_bytes=self.model_bytes(), train_state_bytes=self._train_state_bytes)

    @classmethod
    def fields_for_tasks(cls, config: LwFConfig, n_done: int) -> frozenset[str] | None:
        """Task 0 has no old model: only the network and task 0's schedule act on it."""
        return first_task_fields(config) if n_done <= 1 else None
