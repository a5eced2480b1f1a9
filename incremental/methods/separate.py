"""Separate networks: a fresh backbone and head per task (task-IL). No forgetting, no transfer,
memory = T networks: the reference BMKP compresses (its coefficients at full rank are this)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from incsweep.core.configs import spec
from incsweep.incremental.backbones import BACKBONES
from incsweep.incremental.benchmarks import Task
from incsweep.incremental.memory import MemoryReport, module_bytes
from incsweep.incremental.methods._single import IncrementalNet
from incsweep.incremental.methods.base import Method, MethodConfig, RunContext
from incsweep.incremental.training import fit, predict_in_batches, recompute_bn_stats

__all__ = ["SeparateConfig", "Separate"]


@dataclass(frozen=True)
class SeparateConfig(MethodConfig):
    """MethodConfig with BMKP's network as the default: reduced ResNet-18, nf (``width``) 20 (GPM/BMKP)."""

    backbone: str = spec("reduced_resnet18", choices=tuple(BACKBONES))
    width: int | None = spec(20, range=(1, 1024))


class Separate(Method[SeparateConfig]):
    config_cls = SeparateConfig
    # No default space: a per-task reference, run at its defaults (or the spec's search).
    search_space = None
    scenarios = ("task_il",)

    def __init__(self, config: SeparateConfig, ctx: RunContext):
        super().__init__(config, ctx)
        self.nets: list[IncrementalNet] = []

    def begin_task(self, task: Task) -> None:
        # Built after the run loop reseeds for this task: the init is a function of (seed, task).
        net = IncrementalNet(self.config, self.ctx.image_shape[0])
        net.head.expand(len(task.classes))
        self.nets.append(net.to(self.ctx.device))

    def train_task(self, task: Task) -> None:
        net = self.nets[task.index]
        fit(net.parameters(), lambda xb, yb: F.cross_entropy(net(xb), yb - task.offset),
            task.train.x.to(self.ctx.device), task.train.y, self.config.task_schedule(task.index),
            self.ctx.augmenter, self.ctx.generator(task.index), train_mode=net.train,
            label=f"separate task {task.index}")
        if self.config.bn_stats == "recompute":
            recompute_bn_stats([net], net.features, task.train.x, self.ctx.augmenter, self.config.batch_size)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None) -> torch.Tensor:
        """Task ``task_id``'s network scores its own classes; the other seen classes are masked (-inf)."""
        if task_id is None or not 0 <= task_id < len(self.nets):
            raise ValueError(f"separate is task-incremental: predict needs a task id in [0, {len(self.nets)}), got {task_id}")
        sizes = [n.head.out_features for n in self.nets]
        out = torch.full((len(x), sum(sizes)), float("-inf"), device=self.ctx.device)
        if len(x) == 0:
            return out
        net = self.nets[task_id].eval()
        own = predict_in_batches(net, x, self.ctx.augmenter, self.ctx.eval_batch_size)
        lo = sum(sizes[:task_id])
        out[:, lo : lo + sizes[task_id]] = own
        return out

    def memory(self) -> MemoryReport:
        return MemoryReport(model_bytes=sum(module_bytes(net) for net in self.nets))

    def state_dict(self) -> dict[str, Any]:
        return {"nets": [net.state_dict() for net in self.nets],
                "classes": [net.head.out_features for net in self.nets]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.nets = []
        for net_state, n_classes in zip(state["nets"], state["classes"], strict=True):
            net = IncrementalNet(self.config, self.ctx.image_shape[0])
            net.head.expand(n_classes)
            net.load_state_dict(net_state)
            self.nets.append(net.to(self.ctx.device))
