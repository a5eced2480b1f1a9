"""The one minibatch SGD loop every method trains with: shuffling, augmentation, LR schedule, NaN guard."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch

from .augment import Augmenter
from .configs import spec, validate
from .errors import ConfigError, DivergedError

__all__ = ["Schedule", "fit", "minibatches", "predict_in_batches"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Schedule:
    """SGD with a step, cosine or constant LR schedule, stepped once per epoch."""

    epochs: int = spec(1, range=(1, 10_000))
    lr: float = spec(0.1, range=(1e-6, 10.0))
    momentum: float = spec(0.9, range=(0.0, 0.999))
    weight_decay: float = spec(5e-4, range=(0.0, 1.0))
    batch_size: int = spec(128, range=(1, 65_536))
    kind: str = spec("step", choices=("step", "cosine", "constant"))
    milestones: tuple[int, ...] = spec((), range=(1, None))
    lr_decay: float = spec(0.1, range=(0.0, 1.0))

    def __post_init__(self) -> None:
        validate(self)
        if list(self.milestones) != sorted(self.milestones):
            raise ConfigError(f"Schedule.milestones={list(self.milestones)} must be increasing")

    def lr_at(self, epoch: int) -> float:
        if self.kind == "cosine":
            return 0.5 * self.lr * (1 + math.cos(math.pi * epoch / self.epochs))
        if self.kind == "step":
            return self.lr * self.lr_decay ** sum(epoch >= m for m in self.milestones)
        return self.lr


def minibatches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffled index batches; a last batch of one sample is dropped (BatchNorm needs two)."""
    perm = torch.randperm(n, generator=gen, device=gen.device)  # a CUDA run's generator lives on the GPU
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        if len(idx) > 1 or n == 1:
            yield idx


def fit(
    params: Iterable[torch.nn.Parameter],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    schedule: Schedule,
    augmenter: Augmenter,
    gen: torch.Generator,
    *,
    train_mode: Callable[[], None] | None = None,
    label: str = "",
) -> list[float]:
    """Train with SGD: ``loss_fn(augmented_float_batch, labels)`` per minibatch; returns epoch mean losses.

    ``x`` is uint8 and may live on the device already; ``train_mode`` puts the right modules in
    train/eval mode at the start of every epoch (methods with frozen parts need that).
    """
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.SGD(params, lr=schedule.lr, momentum=schedule.momentum, weight_decay=schedule.weight_decay)
    y = y.to(augmenter.device)
    step_loss = augmenter.step_loss(loss_fn)
    losses = []
    for epoch in range(schedule.epochs):
        for group in opt.param_groups:
            group["lr"] = schedule.lr_at(epoch)
        if train_mode is not None:
            train_mode()
        total, count = torch.zeros((), device=augmenter.device), 0
        for idx in minibatches(len(y), schedule.batch_size, gen):
            xb = augmenter.train(x[idx.to(x.device)], gen)
            yb = y[idx.to(y.device)]
            with augmenter.autocast():
                loss = step_loss(xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
            count += len(idx)
        mean = float(total) / max(count, 1)  # one host sync per epoch, not per step
        if not math.isfinite(mean):
            raise DivergedError(f"{label} loss became {mean} in epoch {epoch + 1}")
        losses.append(mean)
        log.debug("%s epoch %d/%d loss %.4f lr %.4g", label, epoch + 1, schedule.epochs, mean, schedule.lr_at(epoch))
    return losses


@torch.no_grad()
def predict_in_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, augmenter: Augmenter,
                       batch_size: int) -> torch.Tensor:
    """Apply ``fn`` to normalised batches of uint8 ``x``; returns the concatenated outputs."""
    with augmenter.autocast():
        outs = [fn(augmenter.normalize(x[i : i + batch_size])).float() for i in range(0, len(x), batch_size)]
    return torch.cat(outs) if outs else torch.empty(0)
