"""LwF, Learning without Forgetting (Li & Hoiem, ECCV 2016 / TPAMI 2017), class-incremental as
PyCIL trains it (models/lwf.py): no exemplars; on task t > 0 the loss is cross-entropy over the new
task's classes plus ``kd_weight`` times the distillation of the previous model's old-class outputs
at temperature ``kd_temperature``. It keeps only its network (the previous model is training-time
state), so it sits at the zero-exemplar end of an accuracy/memory front.

Written on the public API only (``incsweep.incremental.api``), as a method from another package is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from incsweep.core.params import Float
from incsweep.incremental.api import (
    IncrementalNet,
    MemoryReport,
    MethodConfig,
    RunContext,
    SingleNetMethod,
    Task,
    first_task_fields,
    module_bytes,
    spec,
)
from incsweep.incremental.methods._space import SEARCHED_LR, SEARCHED_WEIGHT_DECAY, frozen_space

__all__ = ["LwFConfig", "LwF", "distillation"]


@dataclass(frozen=True)
class LwFConfig(MethodConfig):
    kd_temperature: float = spec(2.0, range=(0.01, 100.0))  # PyCIL models/lwf.py T = 2 (the paper's T too)
    kd_weight: float = spec(3.0, range=(0.0, 1000.0))  # PyCIL lamda = 3; the paper weighs the two terms 1:1
    # "new": CE over the new task's classes only (PyCIL, the paper's new-task head); "all": over every
    # seen class (a variant that also pushes old-class logits down on new data).
    ce_classes: str = spec("new", choices=("new", "all"))


def distillation(logits: torch.Tensor, old_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy between the temperature-softened old and new distributions, batch mean."""
    log_p = F.log_softmax(logits / temperature, dim=1)
    q = F.softmax(old_logits / temperature, dim=1)
    return -(q * log_p).sum(1).mean()


class LwF(SingleNetMethod[LwFConfig]):
    config_cls = LwFConfig
    search_space = frozen_space({
        "lr": SEARCHED_LR, "weight_decay": SEARCHED_WEIGHT_DECAY,
        # Li & Hoiem (2016) use T = 2 and weight 1 on the distillation term; PyCIL's lwf.py T = 2 and
        # lamda = 3 (its CIFAR-100 setting), so the range brackets both.
        "kd_temperature": Float(1.0, 4.0),
        "kd_weight": Float(0.3, 10.0, log=True),
    })
    scenarios = ("class_il", "task_il")

    def __init__(self, config: LwFConfig, ctx: RunContext):
        super().__init__(config, ctx)
        self.old_net: IncrementalNet | None = None  # the model after the previous task, while training
        self._train_state_bytes = 0

    def begin_task(self, task: Task) -> None:
        if task.index > 0:
            # Copied before the head grows: the old model scores exactly the classes known so far.
            self.old_net = self.frozen_copy()
            self._train_state_bytes = module_bytes(self.old_net)
        super().begin_task(task)

    def train_task(self, task: Task) -> None:
        cfg, old, known = self.config, self.old_net, task.offset
        lo, hi = task.classes[0], task.classes[-1] + 1

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            logits = self.net(xb)
            if old is None or self.ctx.scenario == "task_il" or cfg.ce_classes == "new":
                loss = F.cross_entropy(logits[:, lo:hi], yb - lo)
            else:
                loss = F.cross_entropy(logits[:, :hi], yb)
            if old is not None and cfg.kd_weight > 0:
                with torch.no_grad():
                    old_logits = old(xb)
                loss = loss + cfg.kd_weight * distillation(logits[:, :known], old_logits, cfg.kd_temperature)
            return loss

        self.train_on(task, task.train.x, task.train.y, loss_fn)

    def end_task(self, task: Task) -> None:
        self.old_net = None  # only needed while training; a checkpoint between tasks never holds it

    def memory(self) -> MemoryReport:
        return MemoryReport(model_bytes=self.model_bytes(), train_state_bytes=self._train_state_bytes)

    @classmethod
    def fields_for_tasks(cls, config: LwFConfig, n_done: int) -> frozenset[str] | None:
        """Task 0 has no old model: only the network and task 0's schedule act on it."""
        return first_task_fields(config) if n_done <= 1 else None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "train_state_bytes": self._train_state_bytes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._train_state_bytes = int(state["train_state_bytes"])
