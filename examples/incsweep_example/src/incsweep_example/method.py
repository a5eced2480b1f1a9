"""Frozen-backbone nearest class mean: learn the first task, then freeze the network and classify
every later class by the nearest (cosine) mean of its training features. Exemplar-free; it keeps the
network and one float32 prototype per class. A standard "first session adaptation" baseline, and a
complete incsweep method written on the public API only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from incsweep.incremental.api import (
    Float,
    Int,
    MemoryReport,
    MethodConfig,
    RunContext,
    SingleNetMethod,
    Task,
    first_task_fields,
    predict_in_batches,
    spec,
)

FLOAT_BYTES = 4  # prototypes are float32


@dataclass(frozen=True)
class FrozenNCMConfig(MethodConfig):
    cosine: bool = True  # compare L2-normalised features (cosine); False: Euclidean distance
    temperature: float = spec(16.0, range=(0.01, 1000.0))  # logits = similarity x temperature (ranking unchanged)


class FrozenNCM(SingleNetMethod[FrozenNCMConfig]):
    config_cls = FrozenNCMConfig
    scenarios = ("class_il", "task_il")
    search_space = {
        "lr": Float(0.005, 0.5, log=True),  # bracket the usual SGD 0.1
        "weight_decay": Float(1e-5, 2e-3, log=True),
        "epochs": Int(1, 10),  # only task 0 trains, so its schedule is the whole cost
    }

    def __init__(self, config: FrozenNCMConfig, ctx: RunContext):
        super().__init__(config, ctx)
        self.prototypes: torch.Tensor | None = None  # n_seen x d

    def train_task(self, task: Task) -> None:
        if task.index == 0:  # later tasks only add prototypes: the network is frozen after task 0
            self.train_on(task, task.train.x, task.train.y)

    def end_task(self, task: Task) -> None:
        feats = self._features(task.train.x)
        y = task.train.y.to(feats.device)
        means = torch.stack([feats[y == c].mean(0) for c in task.classes])
        self.prototypes = means if self.prototypes is None else torch.cat([self.prototypes, means])

    @torch.no_grad()
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        self.net.eval()
        f = predict_in_batches(self.net.features, x, self.ctx.augmenter, self.ctx.eval_batch_size)
        return F.normalize(f, dim=1) if self.config.cosine else f

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None) -> torch.Tensor:
        if self.prototypes is None:
            return super().predict(x, task_id)
        f = self._features(x)
        score = f @ self.prototypes.T if self.config.cosine else -torch.cdist(f, self.prototypes)
        return score * self.config.temperature

    def memory(self) -> MemoryReport:
        protos = 0 if self.prototypes is None else self.prototypes.numel() * FLOAT_BYTES
        return MemoryReport(model_bytes=self.model_bytes(), extra_bytes=protos)

    def planned_extra_bytes(self) -> int:
        # plan() measures memory() of this method grown to the last task's shapes (begin_task grows
        # the head); the prototypes come from data in end_task, one float32 row per class.
        return self.n_seen * self.net.backbone.out_dim * FLOAT_BYTES

    @classmethod
    def fields_for_tasks(cls, config: FrozenNCMConfig, n_done: int) -> frozenset[str] | None:
        # Task 0 trains the network and computes its prototypes (cosine decides how); the temperature
        # only scales logits, which changes no prediction but is reported in no metric either: all
        # metrics are accuracies, so task 0's results depend on the network, its schedule and cosine.
        return first_task_fields(config, "cosine", "temperature") if n_done <= 1 else None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "prototypes": self.prototypes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.prototypes = state["prototypes"]
