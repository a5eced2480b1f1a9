"""Knowledge distillation from the previous task's model, as iCaRL and LwF use it: one loss, and a
single growing network that keeps a frozen copy of itself while it learns the next task."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from incsweep.incremental.benchmarks import Task
from incsweep.incremental.memory import module_bytes
from incsweep.incremental.methods._single import IncrementalNet, SingleNetMethod
from incsweep.incremental.methods.base import C, RunContext

__all__ = ["kd_loss", "DistillingNetMethod"]


def kd_loss(logits: torch.Tensor, old_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft-target cross-entropy between temperature-scaled softmaxes, mean over the batch (PyCIL's
    _KD_loss in models/icarl.py and models/lwf.py; no T^2 factor, as there)."""
    log_p = F.log_softmax(logits / temperature, dim=1)
    q = F.softmax(old_logits / temperature, dim=1)
    return -(q * log_p).sum() / logits.shape[0]


class DistillingNetMethod(SingleNetMethod[C]):
    """A single growing network plus ``old_net``, the model after the previous task, frozen, from
    ``begin_task`` of task t > 0 until ``end_task``. Its bytes are training-time state (the census's
    ``train_state_bytes``), not memory a run keeps: a checkpoint, taken between tasks, never holds it."""

    def __init__(self, config: C, ctx: RunContext):
        super().__init__(config, ctx)
        self.old_net: IncrementalNet | None = None
        self._train_state_bytes = 0

    def begin_task(self, task: Task) -> None:
        if task.index > 0:
            # Copied before the head grows: the old model scores exactly the classes known so far.
            self.old_net = self.frozen_copy()
            self._train_state_bytes = module_bytes(self.old_net)
        super().begin_task(task)

    def old_logits(self, xb: torch.Tensor) -> torch.Tensor | None:
        """The previous model's logits for ``xb`` (None on the first task)."""
        if self.old_net is None:
            return None
        with torch.no_grad():
            return self.old_net(xb)

    def end_task(self, task: Task) -> None:
        self.old_net = None  # only needed while training
        super().end_task(task)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "train_state_bytes": self._train_state_bytes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._train_state_bytes = int(state["train_state_bytes"])
