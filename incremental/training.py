"""The one minibatch SGD loop every method trains with: shuffling, augmentation, LR schedule, NaN guard."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch

from incsweep.core.configs import spec, validate
from incsweep.core.errors import ConfigError, DivergedError
from incsweep.core.ranges import BATCH_SIZE, EPOCHS, LR, MOMENTUM, WEIGHT_DECAY
from incsweep.incremental.augment import Augmenter
from incsweep.incremental.heartbeat import beat
from incsweep.incremental.image_sets import ImageSet

__all__ = ["Schedule", "fit", "minibatches", "predict_in_batches", "recompute_bn_stats", "BN_STATS"]

log = logging.getLogger(__name__)

# recompute_bn_stats estimates from at most this many images: 1,024 images give every channel at least
# 1,024 x H x W values (16,384 on a 4x4 map), and cap the pass at a fraction of a 1-epoch phase's cost
# on MEMO's 3,000-image tasks (PyCIL's short schedule, docs/memo.md: 14 s of 82 s with every image, before the cap).
BN_STATS_MAX_IMAGES = 1024
# MethodConfig.bn_stats: "recompute" re-estimates BatchNorm statistics for the final weights after
# every training phase (recompute_bn_stats); "running" keeps torch's running averages (PyCIL, mammoth).
BN_STATS = ("recompute", "running")


@dataclass(frozen=True)
class Schedule:
    """SGD with a step, cosine or constant LR schedule, stepped once per epoch."""

    epochs: int = spec(1, range=EPOCHS)
    lr: float = spec(0.1, range=LR)
    momentum: float = spec(0.9, range=MOMENTUM)
    weight_decay: float = spec(5e-4, range=WEIGHT_DECAY)
    batch_size: int = spec(128, range=BATCH_SIZE)
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
    train_mode: Callable[[], object] | None = None,
    label: str = "",
) -> list[float]:
    """Train with SGD: ``loss_fn(augmented_float_batch, labels)`` per minibatch; returns epoch mean losses.

    ``x`` is uint8 and may live on the device already, or an ImageSet (image_sets.py: its batches
    are decoded and cropped by threads while the step runs); ``train_mode`` puts the right
    modules in train/eval mode at the start of every epoch (methods with frozen parts need that).
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
        batches = -(-len(y) // schedule.batch_size)
        for batch, (idx, xb) in enumerate(_training_batches(x, len(y), schedule.batch_size, augmenter, gen), start=1):
            yb = y[idx.to(y.device)]
            with augmenter.autocast():
                loss = step_loss(xb, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
            count += len(idx)
            beat(label, epoch + 1, schedule.epochs, batch, batches)
        mean = float(total) / max(count, 1)  # one host sync per epoch, not per step
        if not math.isfinite(mean):
            raise DivergedError(f"{label} loss became {mean} in epoch {epoch + 1}")
        losses.append(mean)
        log.debug("%s epoch %d/%d loss %.4f lr %.4g", label, epoch + 1, schedule.epochs, mean, schedule.lr_at(epoch))
    return losses


def _training_batches(x: torch.Tensor | ImageSet, n: int, batch_size: int, augmenter: Augmenter,
                      gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(indices, augmented normalised batch) for one epoch. An image set (or any data on an image-set
    benchmark) draws the epoch's order, then one crop seed per batch, then each batch's brightness:
    all from ``gen``, so the batches do not depend on how many workers decode them."""
    if not isinstance(x, ImageSet) and augmenter.view is None:
        for idx in minibatches(n, batch_size, gen):
            yield idx, augmenter.train(x[idx.to(x.device)], gen)
        return
    images = augmenter.image_set(x)
    order = list(minibatches(n, batch_size, gen))
    seeds = torch.randint(0, 2**62, (len(order),), generator=gen, device=gen.device).tolist()
    cfg = augmenter.config
    for idx, raw in zip(order, images.train_batches(order, seeds, crop=cfg.resized_crop, flip=cfg.flip)):
        yield idx, augmenter.finish(raw, gen)


@torch.no_grad()
def predict_in_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, augmenter: Augmenter,
                       batch_size: int) -> torch.Tensor:
    """Apply ``fn`` to normalised batches of uint8 ``x`` (or an ImageSet's evaluation views, decoded
    by threads); returns the concatenated outputs."""
    batches = x.eval_batches(batch_size) if isinstance(x, ImageSet) else (x[i : i + batch_size]
                                                                          for i in range(0, len(x), batch_size))
    with augmenter.autocast():
        outs = [fn(augmenter.normalize(xb)).float() for xb in batches]
    return torch.cat(outs) if outs else torch.empty(0)


@torch.no_grad()
def recompute_bn_stats(modules: Iterable[torch.nn.Module], forward: Callable[[torch.Tensor], object], x: torch.Tensor,
                       augmenter: Augmenter, batch_size: int) -> None:
    """Replace the running statistics of every BatchNorm inside ``modules`` by its input's mean and
    variance over the un-augmented uint8 images ``x`` under the current weights (``forward`` runs
    the network; the average over interleaved batches of equal size). At most ``BN_STATS_MAX_IMAGES``
    images are used, evenly spaced through ``x``, so a phase's data and its exemplars are both represented.

    Why: torch's running statistics are an exponential average (momentum 0.1, from mean 0 / var 1)
    over batches seen with earlier weights. On a short phase (8 steps: a 1-epoch MEMO task on
    PyCIL's short schedule, docs/memo.md) they are far from the final weights' statistics, and in eval mode the error compounds
    layer by layer: measured on a ResNet-32 after one epoch, each BN's real input variance over its
    running variance grew from 0.7 at the stem to 162 at the last BN, and the network predicted
    one class. BN layers outside ``modules`` (frozen parts) keep their statistics and mode; the
    affine parameters are untouched; every BN's momentum and train/eval flag are restored.
    """
    # torch's common base of BatchNorm1d/2d/3d (and SyncBatchNorm) has no public name
    bn_base = torch.nn.modules.batchnorm._BatchNorm  # noqa: SLF001
    bns = [m for module in modules for m in module.modules() if isinstance(m, bn_base)]
    if not bns or len(x) == 0:
        return
    if len(x) > BN_STATS_MAX_IMAGES:
        x = x[torch.linspace(0, len(x) - 1, BN_STATS_MAX_IMAGES).long().to(x.device)]
    if isinstance(x, ImageSet):
        x = x.materialize()  # at most BN_STATS_MAX_IMAGES evaluation views, decoded in parallel once
    saved = [(bn.momentum, bn.training) for bn in bns]
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches below
            bn.train()
        # Interleaved batches of (nearly) equal size: torch's cumulative average weighs every batch
        # the same, and each batch then spans the whole of x (x is ordered by class and source).
        n_batches = -(-len(x) // batch_size)
        for i in range(n_batches):
            forward(augmenter.normalize(x[i::n_batches]))
    finally:
        for bn, (momentum, training) in zip(bns, saved):
            bn.momentum = momentum
            bn.train(training)
