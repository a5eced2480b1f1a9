"""iCaRL (Rebuffi et al., CVPR 2017) as PyCIL trains it (models/icarl.py): replay with herding, plus
knowledge distillation of the previous model's old-class logits, and nearest-mean-of-exemplars
(NME) prediction with class means of L2-normalised exemplar features."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from incsweep.core.configs import spec
from incsweep.core.params import Float
from incsweep.incremental.benchmarks import BenchmarkConfig, Task
from incsweep.incremental.memory import MemoryReport
from incsweep.incremental.methods._distill import DistillingNetMethod, kd_loss
from incsweep.incremental.methods._exemplar import class_means, nme_logits, rehearsal_ce, with_exemplars
from incsweep.incremental.methods._prefix import budget_fields, first_task_fields
from incsweep.incremental.methods._space import frozen_space
from incsweep.incremental.methods.base import BudgetPlan, ExemplarConfig, RunContext
from incsweep.incremental.methods.replay import Replay
from incsweep.incremental.training import predict_in_batches

__all__ = ["ICaRLConfig", "ICaRL"]

FLOAT_BYTES = 4  # class means are stored as float32


@dataclass(frozen=True)
class ICaRLConfig(ExemplarConfig):
    kd_temperature: float = spec(2.0, range=(0.01, 100.0))  # PyCIL models/icarl.py: T = 2
    kd_weight: float = spec(1.0, range=(0.0, 1000.0))  # PyCIL: loss = loss_clf + loss_kd (weight 1, no T^2)
    classifier: str = spec("nme", choices=("nme", "cnn"))  # iCaRL predicts by NME; "cnn" = the linear head



class ICaRL(DistillingNetMethod[ICaRLConfig], Replay[ICaRLConfig]):
    config_cls = ICaRLConfig
    search_space = frozen_space({**Replay.search_space, "kd_temperature": Float(1.0, 4.0)})  # PyCIL T = 2
    scenarios = ("class_il",)  # NME over all seen classes is a class-incremental classifier

    def __init__(self, config: ICaRLConfig, ctx: RunContext):
        super().__init__(config, ctx)
        self.means: torch.Tensor | None = None  # n_seen x d, recomputed at every end_task

    def train_task(self, task: Task) -> None:
        x, y = with_exemplars(task, self.exemplars)
        sizes, cfg = self.ctx.benchmark.task_sizes, self.config
        known = task.offset

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            logits = self.net(xb)
            loss = rehearsal_ce(logits, yb, self.n_seen, self.ctx.scenario, sizes)
            old_logits = self.old_logits(xb) if cfg.kd_weight > 0 else None
            if old_logits is not None:
                loss = loss + cfg.kd_weight * kd_loss(logits[:, :known], old_logits, cfg.kd_temperature)
            return loss

        self.train_on(task, x, y, loss_fn)

    def end_task(self, task: Task) -> None:
        super().end_task(task)  # drops the old model, then herding with the new one
        ex_x, ex_y = self.exemplars.data()
        # PyCIL recomputes every class mean with the current model on the current exemplars.
        self.means = class_means(self.features, ex_x, ex_y, self.n_seen) if len(ex_y) else None

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None) -> torch.Tensor:
        if self.config.classifier == "cnn" or self.means is None:
            return super().predict(x, task_id)
        self.net.eval()
        return nme_logits(predict_in_batches(self.net.features, x, self.ctx.augmenter, self.ctx.eval_batch_size),
                          self.means)

    def memory(self) -> MemoryReport:
        base = super().memory()
        means = self.means.numel() * FLOAT_BYTES if self.config.classifier == "nme" and self.means is not None else 0
        return MemoryReport(model_bytes=base.model_bytes, exemplar_bytes=base.exemplar_bytes, extra_bytes=means,
                            n_exemplars=base.n_exemplars, train_state_bytes=self._train_state_bytes)

    def planned_extra_bytes(self) -> int:
        """The class means end_task computes (n_seen x feature dim, float32), when predicting by NME."""
        return self.n_seen * self.net.backbone.out_dim * FLOAT_BYTES if self.config.classifier == "nme" else 0

    @classmethod
    def plan(cls, config: ICaRLConfig, benchmark: BenchmarkConfig) -> BudgetPlan:
        """The measured plan, whose extras are the class means: they are charged before M is derived
        (they count against ``memory_mb``), and a run that ends with no exemplars keeps no means (it
        predicts with the head), so they cost nothing then."""
        plan = super().plan(config, benchmark)
        return plan if plan.n_exemplars else dataclasses.replace(plan, extra_bytes=0)

    @classmethod
    def fields_for_tasks(cls, config: ICaRLConfig, n_done: int) -> frozenset[str] | None:
        """Task 0 has no old model: the KD fields act from task 1 on; the classifier shapes task 0's results."""
        return first_task_fields(config, "classifier") | budget_fields() if n_done <= 1 else None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "means": self.means}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.means = state["means"].to(self.ctx.device) if state["means"] is not None else None
