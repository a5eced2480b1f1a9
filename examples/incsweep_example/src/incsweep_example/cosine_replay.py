"""Cosine replay: rehearsal with iCaRL herding and a cosine classifier of its own.

The network is a backbone and a head that grows by one block of class weights per task; a logit is
the cosine between a sample's feature and a class weight, times a learned scale (the "cosine
normalisation" of LUCIR, Hou et al. 2019, which keeps old and new classes' logits on one scale).
Training is cross-entropy over the task's images plus the exemplar memory; exemplars are chosen by
herding at the end of each task and old classes shrink to their herding prefix.

The second worked plugin of docs/extending.md: a replay-style method that does not inherit
SingleNetMethod, written on ``incsweep.incremental.api`` alone. Its memory is its backbone, its
head (class weights and the scale) and its exemplars, and nothing else: the engine's census counts
every tensor it holds after every task and stops the run if ``memory()`` leaves one out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from incsweep.incremental.api import (
    ExemplarConfig,
    ExemplarMemory,
    Float,
    Int,
    MemoryReport,
    Method,
    RunContext,
    Task,
    build_backbone,
    fit,
    module_bytes,
    predict_in_batches,
    recompute_bn_stats,
    rehearsal_ce,
    spec,
    with_exemplars,
)


@dataclass(frozen=True)
class CosineReplayConfig(ExemplarConfig):
    # Starting logit scale: cosines lie in [-1, 1], so a softmax over them needs a scale; LUCIR
    # learns it from an initial value of 10 (its code's default), as here.
    scale_init: float = spec(10.0, range=(0.1, 100.0))


class CosineHead(nn.Module):
    """Class weights in one block per task; logits = scale * cos(feature, class weight)."""

    def __init__(self, in_features: int, scale_init: float):
        super().__init__()
        self.in_features = in_features
        self.blocks = nn.ParameterList()
        self.scale = nn.Parameter(torch.tensor(float(scale_init)))

    @property
    def out_features(self) -> int:
        return sum(len(b) for b in self.blocks)

    def grow(self, n_new: int, generator: torch.Generator | None = None) -> None:
        device = self.scale.device
        weight = torch.empty(n_new, self.in_features, device=device)
        if device.type != "meta":  # the engine's plan builds the method on the meta device: shapes only
            nn.init.kaiming_uniform_(weight, a=5 ** 0.5, generator=generator)
        self.blocks.append(nn.Parameter(weight))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        weight = torch.cat(list(self.blocks))
        return self.scale * F.linear(F.normalize(features, dim=1), F.normalize(weight, dim=1))


class CosineNet(nn.Module):
    def __init__(self, config: CosineReplayConfig, in_channels: int):
        super().__init__()
        self.backbone = build_backbone(config.backbone, in_channels, **config.backbone_kwargs())
        self.head = CosineHead(self.backbone.out_dim, config.scale_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class CosineReplay(Method[CosineReplayConfig]):
    config_cls = CosineReplayConfig
    scenarios = ("class_il", "task_il")
    search_space = {
        "lr": Float(0.01, 0.3, log=True),
        "memory_size": Int(20, 400, log=True),
        "scale_init": Float(1.0, 32.0, log=True),
    }

    def __init__(self, config: CosineReplayConfig, ctx: RunContext):
        super().__init__(config, ctx)
        self.net = CosineNet(config, ctx.image_shape[0]).to(ctx.device)
        # M, the run's total exemplar count, is fixed by the engine from plan() (RunContext.exemplar_total)
        self.exemplars = ExemplarMemory(ctx.exemplar_total, config.memory_per_class)
        self.n_seen = 0

    def begin_task(self, task: Task) -> None:
        # Everything that grows grows here: the engine's default plan() calls begin_task for every
        # task on the meta device and measures memory() of the result.
        self.net.head.grow(len(task.classes), self.ctx.generator(task.index, stream=1))
        self.n_seen = task.classes[-1] + 1

    def train_task(self, task: Task) -> None:
        x, y = with_exemplars(task, self.exemplars)
        sizes = self.ctx.benchmark.task_sizes
        # rehearsal_ce: class-IL over every seen class; task-IL over each sample's own task's classes,
        # so a replayed exemplar of task 0 is never scored against task 1's classes.
        fit(self.net.parameters(),
            lambda xb, yb: rehearsal_ce(self.net(xb), yb, self.n_seen, self.ctx.scenario, sizes),
            x.to(self.ctx.device), y, self.config.task_schedule(task.index), self.ctx.augmenter,
            self.ctx.generator(task.index), train_mode=self.net.train, label=f"cosine_replay task {task.index}")
        if self.config.bn_stats == "recompute":
            recompute_bn_stats([self.net], self.net.backbone, x, self.ctx.augmenter, self.config.batch_size)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        return predict_in_batches(self.net.backbone, x, self.ctx.augmenter, self.ctx.eval_batch_size)

    def end_task(self, task: Task) -> None:
        self.exemplars.update(task, self.features)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None) -> torch.Tensor:
        self.net.eval()
        return predict_in_batches(self.net, x, self.ctx.augmenter, self.ctx.eval_batch_size)[:, : self.n_seen]

    def memory(self) -> MemoryReport:
        return MemoryReport(model_bytes=module_bytes(self.net), exemplar_bytes=self.exemplars.nbytes,
                            n_exemplars=len(self.exemplars))

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "blocks": [len(b) for b in self.net.head.blocks],
                "exemplars": self.exemplars.state_dict(), "n_seen": self.n_seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # A fresh method has no head blocks: grow them to the saved shapes, then load the weights.
        # (On resume the engine calls load_state_dict on a new method, then begin_task of the next task.)
        for n in state["blocks"][len(self.net.head.blocks):]:
            self.net.head.grow(int(n))
        self.net.load_state_dict(state["net"])
        self.exemplars.load_state_dict(state["exemplars"])
        self.n_seen = int(state["n_seen"])
