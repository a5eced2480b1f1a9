"""Online EWC (Kirkpatrick et al., PNAS 2017; the online form of Schwarz et al., ICML 2018, as
mammoth's ewc_on.py trains it): no exemplars; after each task the diagonal of the empirical Fisher
information of the task's training data is folded into a running estimate, F <- gamma * F + F_t,
and the anchor weights are the weights after the task. Later tasks add the quadratic penalty
(lambda / 2) * sum F * (theta - theta*)^2 to the cross-entropy.

Memory: the Fisher diagonal and the anchor weights are kept to go on learning, one float32 each per
network parameter, and they are counted (``extra_bytes``), so EWC pays twice its model for being
exemplar-free. Written on the public API only (``incsweep.incremental.api``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from incsweep.incremental.api import (
    SEARCHED_LR,
    SEARCHED_WEIGHT_DECAY,
    Float,
    MemoryReport,
    MethodConfig,
    RunContext,
    SingleNetMethod,
    Task,
    first_task_fields,
    frozen_space,
    spec,
    tensor_bytes,
)

__all__ = ["EWCConfig", "EWC", "empirical_fisher"]

# Per-example gradients are computed in chunks of this many images: vmap's memory is linear in it.
FISHER_CHUNK = 64


@dataclass(frozen=True)
class EWCConfig(MethodConfig):
    ewc_lambda: float = spec(100.0, range=(0.0, 1e9))  # mammoth's ewc_on best CIFAR-10 grid values: 0.7 to 100
    ewc_gamma: float = spec(1.0, range=(0.0, 1.0))  # mammoth's ewc_on: gamma 1.0 in its best settings


def empirical_fisher(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, n_seen: int,
                     normalize, chunk: int = FISHER_CHUNK) -> dict[str, torch.Tensor]:
    """Mean over the images of the squared per-example gradient of the log-likelihood of the true
    label (over the ``n_seen`` classes), for every parameter; the network is in eval mode (BatchNorm
    uses its statistics, so examples are independent)."""
    net.eval()
    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = {k: v.detach() for k, v in net.named_buffers()}

    def nll(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        logits = functional_call(net, (p, buffers), (xi.unsqueeze(0),))[:, :n_seen]
        return F.cross_entropy(logits, yi.unsqueeze(0))

    per_example = vmap(grad(nll), in_dims=(None, 0, 0))
    fisher = {k: torch.zeros_like(v) for k, v in params.items()}
    for start in range(0, len(y), chunk):
        xb = normalize(x[start : start + chunk])
        grads = per_example(params, xb, y[start : start + chunk].to(xb.device))
        for k, g in grads.items():
            fisher[k] += g.pow(2).sum(0)
    return {k: f / max(len(y), 1) for k, f in fisher.items()}


class EWC(SingleNetMethod[EWCConfig]):
    config_cls = EWCConfig
    search_space = frozen_space({
        "lr": SEARCHED_LR, "weight_decay": SEARCHED_WEIGHT_DECAY,
        # Penalty strength: PyCIL's ewc.py lamda = 1000 (Fisher as the mean squared gradient); mammoth's
        # best online-EWC settings span e_lambda 0.7 to 100 with gamma 1.0 (its paper's Table 11 grid).
        "ewc_lambda": Float(1.0, 1e4, log=True),
        "ewc_gamma": Float(0.5, 1.0),  # online decay of the old Fisher: Schwarz et al. (2018) 0.9 to 1.0
    })
    scenarios = ("class_il", "task_il")

    def __init__(self, config: EWCConfig, ctx: RunContext):
        super().__init__(config, ctx)
        self.fisher: dict[str, torch.Tensor] = {}  # running (online) Fisher diagonal, by parameter name
        self.anchor: dict[str, torch.Tensor] = {}  # the weights after the previous task

    def begin_task(self, task: Task) -> None:
        super().begin_task(task)
        # The head grew: its new rows have no Fisher yet (zero: unconstrained) and anchor at their init.
        for name, p in self.net.named_parameters():
            if name in self.fisher and self.fisher[name].shape != p.shape:
                self.fisher[name] = _pad_rows(self.fisher[name], p.shape)
                self.anchor[name] = torch.cat([self.anchor[name], p.detach()[len(self.anchor[name]):]])

    def curvature(self, lr: float) -> dict[str, torch.Tensor]:
        """lambda * F per parameter, capped at 1 / lr.

        Why the cap: an SGD step on the penalty moves a parameter by lr * lambda * F * (theta - theta*),
        so where lr * lambda * F > 1 it overshoots the anchor, and past 2 it diverges. Uncapped, the
        default lambda = 100 at SGD lr 0.05 diverged on Fashion-MNIST (task 1's loss went to inf,
        benchmarks/baselines_fashionmnist.py): a few BatchNorm and last-layer parameters have
        empirical Fisher values above 1. Capped, such a parameter is pulled back to its anchor in
        one step, the strongest consolidation SGD can apply; the cap leaves every other parameter's
        lambda * F as it is. (PyCIL's ewc.py clamps F itself at 1e-4 instead, which weakens all of it.)
        """
        cap = 1.0 / lr if lr > 0 else float("inf")
        return {k: (self.config.ewc_lambda * f).clamp(max=cap) for k, f in self.fisher.items()}

    def penalty(self, curvature: dict[str, torch.Tensor]) -> torch.Tensor:
        """(1 / 2) * sum curvature * (theta - theta*)^2 over every parameter with a Fisher estimate."""
        total = torch.zeros((), device=self.ctx.device)
        for name, p in self.net.named_parameters():
            if name in curvature:
                total = total + (curvature[name] * (p - self.anchor[name]).pow(2)).sum()
        return 0.5 * total

    def train_task(self, task: Task) -> None:
        constrained = bool(self.fisher) and self.config.ewc_lambda > 0
        curvature = self.curvature(self.config.task_schedule(task.index).lr) if constrained else {}

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            loss = self.ce_loss(self.net(xb), yb, task)
            return loss + self.penalty(curvature) if constrained else loss

        self.train_on(task, task.train.x, task.train.y, loss_fn)

    def end_task(self, task: Task) -> None:
        x, y = task.train.x.to(self.ctx.device), task.train.y
        if self.ctx.scenario == "task_il":  # the likelihood the task's own head defines
            lo, hi = task.classes[0], task.classes[-1] + 1
            fresh = _task_fisher(self.net, x, y - lo, lo, hi, self.ctx.augmenter.normalize)
        else:
            fresh = empirical_fisher(self.net, x, y, self.n_seen, self.ctx.augmenter.normalize)
        g = self.config.ewc_gamma
        self.fisher = {k: g * self.fisher[k] + f if k in self.fisher else f for k, f in fresh.items()}
        self.anchor = {k: v.detach().clone() for k, v in self.net.named_parameters()}

    def memory(self) -> MemoryReport:
        kept = tensor_bytes(self.fisher.values()) + tensor_bytes(self.anchor.values())
        return MemoryReport(model_bytes=self.model_bytes(), extra_bytes=kept)

    def planned_extra_bytes(self) -> int:
        """end_task keeps a Fisher and an anchor of every parameter's shape and dtype (see memory())."""
        return 2 * tensor_bytes(self.net.parameters())

    @classmethod
    def fields_for_tasks(cls, config: EWCConfig, n_done: int) -> frozenset[str] | None:
        """The penalty acts from task 1 on; the Fisher after task 0 depends only on task 0's network."""
        return first_task_fields(config) if n_done <= 1 else None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "fisher": dict(self.fisher), "anchor": dict(self.anchor)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.fisher = {k: v.to(self.ctx.device) for k, v in state["fisher"].items()}
        self.anchor = {k: v.to(self.ctx.device) for k, v in state["anchor"].items()}


def _pad_rows(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    out = torch.zeros(shape, dtype=t.dtype, device=t.device)
    out[: len(t)] = t
    return out


def _task_fisher(net: torch.nn.Module, x: torch.Tensor, y_local: torch.Tensor, lo: int, hi: int,
                 normalize) -> dict[str, torch.Tensor]:
    """The task-IL Fisher: the likelihood over the task's own classes [lo, hi)."""

    class _Slice(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module):
            super().__init__()
            self.inner = inner

        def forward(self, xb: torch.Tensor) -> torch.Tensor:
            return self.inner(xb)[:, lo:hi]

    fisher = empirical_fisher(_Slice(net), x, y_local, hi - lo, normalize)
    return {k.removeprefix("inner."): v for k, v in fisher.items()}
