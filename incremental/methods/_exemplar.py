"""Shared rehearsal machinery for exemplar methods (replay, iCaRL, MEMO, DER, ...).

One place for: the per-class store under the run's budget (the budget itself: ``incremental/budget.py``),
iCaRL herding selection of a finished task's classes, shrinking old classes to their herding prefix,
class means for nearest-mean-of-exemplars, and the loss over batches that mix tasks.

Typical use in a method (see replay.py)::

    # __init__: M is fixed for the whole run by the engine from plan() (docs/protocols.md)
    self.exemplars = ExemplarMemory(ctx.exemplar_total, config.memory_per_class)
    # train_task: x, y = with_exemplars(task, self.exemplars)
    # end_task:   self.exemplars.update(task, feature_fn)   # feature_fn: uint8 images -> features
    # plan() (methods/planning.py): planned_exemplars(total, config.memory_per_class, benchmark)
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from incsweep.incremental.benchmarks import Task
from incsweep.incremental.budget import quota
from incsweep.incremental.exemplars import ExemplarStore, herding_order

__all__ = ["ExemplarMemory", "with_exemplars", "l2_normalize", "class_means", "nme_logits", "rehearsal_ce"]

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # uint8 images -> features (eval mode, no augmentation)

# PyCIL's EPSILON for normalising feature vectors (models/icarl.py, utils/toolkit).
_EPS = 1e-8


def l2_normalize(features: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length, as PyCIL does before herding and class means."""
    return features / (features.norm(dim=1, keepdim=True) + _EPS)


class ExemplarMemory:
    """A budget and the per-class store: herd a task's classes after it, shrink older ones."""

    def __init__(self, total: int | None, per_class: int):
        self.total = total
        self.per_class = per_class
        self.store = ExemplarStore()

    def quota(self, classes_seen: int) -> int:
        return quota(self.total, self.per_class, classes_seen)

    @torch.no_grad()
    def update(self, task: Task, feature_fn: FeatureFn, classes_seen: int | None = None) -> None:
        """End of ``task``: old classes keep the first m of their herding order, the task's classes
        get m exemplars chosen by herding on L2-normalised features of their un-augmented images."""
        seen = classes_seen if classes_seen is not None else task.classes[-1] + 1
        m = self.quota(seen)
        self.store.shrink(m)
        x_all, y_all = task.train.x, task.train.y
        for c in task.classes:
            x = x_all[y_all == c]
            if m == 0 or len(x) == 0:
                self.store.add(c, x[:0])
                continue
            order = herding_order(l2_normalize(feature_fn(x).float()), m)
            self.store.add(c, x[order.to(x.device)])

    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.store.data()

    def __len__(self) -> int:
        return len(self.store)

    @property
    def nbytes(self) -> int:
        return self.store.nbytes

    def state_dict(self) -> dict[str, Any]:
        return {"store": self.store.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.store.load_state_dict(state["store"])


def with_exemplars(task: Task, memory: ExemplarMemory) -> tuple[torch.Tensor, torch.Tensor]:
    """The task's training data followed by every exemplar (uint8 images, labels)."""
    ex_x, ex_y = memory.data()
    if len(ex_y) == 0:
        return task.train.x, task.train.y
    return torch.cat([task.train.x, ex_x.to(task.train.x.device)]), torch.cat([task.train.y, ex_y.to(task.train.y.device)])


@torch.no_grad()
def class_means(feature_fn: FeatureFn, x: torch.Tensor, y: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Per class: the mean of L2-normalised features, normalised again (PyCIL's iCaRL class means).

    A class without images gets a zero mean (it is then equally far from every feature).
    """
    if len(y) == 0:
        raise ValueError("class_means needs at least one image")
    feats = l2_normalize(feature_fn(x).float())
    y = y.to(feats.device)
    sums = torch.zeros(n_classes, feats.shape[1], device=feats.device).index_add_(0, y, feats)
    counts = torch.bincount(y, minlength=n_classes).clamp_min(1).unsqueeze(1).to(feats.dtype)
    return l2_normalize(sums / counts)


def nme_logits(features: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """Negative squared distances of L2-normalised features to class means: argmax = nearest mean."""
    return -torch.cdist(l2_normalize(features.float()), means.to(features.device)).square()


def rehearsal_ce(logits: torch.Tensor, y: torch.Tensor, n_seen: int, scenario: str,
                 task_sizes: tuple[int, ...]) -> torch.Tensor:
    """CE for batches mixing several tasks' classes. Class-IL: over all seen classes. Task-IL: each
    sample's softmax runs over its own task's classes only (the others masked out)."""
    logits = logits[:, :n_seen]
    if scenario != "task_il":
        return F.cross_entropy(logits, y)
    ends = torch.tensor(task_sizes, device=y.device).cumsum(0)
    task_of = torch.bucketize(y, ends, right=True)
    hi = ends[task_of]
    lo = hi - torch.tensor(task_sizes, device=y.device)[task_of]
    cls = torch.arange(logits.shape[1], device=y.device)
    own = (cls >= lo[:, None]) & (cls < hi[:, None])
    return F.cross_entropy(logits.masked_fill(~own, float("-inf")), y)
