"""A backbone plus one growing classifier: the network of finetune, joint, replay and iCaRL."""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from incsweep.incremental.backbones import GrowingHead, build_backbone, count_params
from incsweep.incremental.benchmarks import Task
from incsweep.incremental.memory import module_bytes
from incsweep.incremental.methods.base import C, Method, MethodConfig, RunContext
from incsweep.incremental.training import fit, predict_in_batches, recompute_bn_stats

__all__ = ["IncrementalNet", "SingleNetMethod"]


class IncrementalNet(nn.Module):
    def __init__(self, config: MethodConfig, in_channels: int):
        super().__init__()
        self.backbone = build_backbone(config.backbone, in_channels, **config.backbone_kwargs())
        self.head = GrowingHead(self.backbone.out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def backbone_params(config: MethodConfig, in_channels: int) -> int:
    """Parameters of one backbone without classifier (the P of docs/protocols.md's budget formula)."""
    return count_params(build_backbone(config.backbone, in_channels, **config.backbone_kwargs()))


def head_bytes(in_features: int, n_classes: int) -> int:
    return (in_features + 1) * n_classes * 4  # float32 weight and bias


class SingleNetMethod(Method[C]):
    """Shared machinery: grow the head per task, train with CE over the scenario's classes."""

    def __init__(self, config: C, ctx: RunContext):
        super().__init__(config, ctx)
        self.net = IncrementalNet(config, ctx.image_shape[0]).to(ctx.device)
        self.n_seen = 0

    def begin_task(self, task: Task) -> None:
        self.net.head.expand(len(task.classes))
        self.net.head.to(self.ctx.device)
        self.n_seen = task.classes[-1] + 1

    def ce_loss(self, logits: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
        """Class-IL: CE over all seen classes. Task-IL: CE over the task's own classes only."""
        if self.ctx.scenario == "task_il":
            lo, hi = task.classes[0], task.classes[-1] + 1
            return F.cross_entropy(logits[:, lo:hi], y - lo)
        return F.cross_entropy(logits[:, : self.n_seen], y)

    def train_on(self, task: Task, x: torch.Tensor, y: torch.Tensor, loss_fn=None) -> list[float]:
        loss_fn = loss_fn or (lambda xb, yb: self.ce_loss(self.net(xb), yb, task))
        losses = fit(
            self.net.parameters(), loss_fn, x.to(self.ctx.device), y, self.config.task_schedule(task.index),
            self.ctx.augmenter, self.ctx.generator(task.index), train_mode=self.net.train,
            label=f"{type(self).__name__.lower()} task {task.index}",
        )
        if self.config.bn_stats == "recompute":
            recompute_bn_stats([self.net], self.net.features, x, self.ctx.augmenter, self.config.batch_size)
        return losses

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None) -> torch.Tensor:
        self.net.eval()
        logits = predict_in_batches(self.net, x, self.ctx.augmenter, self.ctx.eval_batch_size)
        return logits[:, : self.n_seen]

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        return predict_in_batches(self.net.features, x, self.ctx.augmenter, self.ctx.eval_batch_size)

    def model_bytes(self) -> int:
        return module_bytes(self.net)

    def frozen_copy(self) -> IncrementalNet:
        """The network as it is now, in eval mode and without gradients: the "old model" that
        distillation methods (iCaRL, LwF) score against while the live one learns the next task."""
        return copy.deepcopy(self.net).eval().requires_grad_(False)

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "n_seen": self.n_seen, "head_shape": self.net.head.out_features}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["head_shape"] and self.net.head.out_features != state["head_shape"]:
            self.net.head.expand(state["head_shape"] - self.net.head.out_features)
            self.net.head.to(self.ctx.device)
        self.net.load_state_dict(state["net"])
        self.n_seen = state["n_seen"]
