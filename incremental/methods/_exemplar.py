"""Shared rehearsal machinery for exemplar methods (replay, iCaRL, MEMO, DER, ...).

One place for: budget -> total exemplar count M -> per-class quota m, iCaRL herding selection of
a finished task's classes, shrinking old classes to their herding prefix, the final count for
``plan()``, class means for nearest-mean-of-exemplars, and the loss over batches that mix tasks.

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

from incsweep.core.errors import ConfigError
from incsweep.incremental.benchmarks import BenchmarkConfig, Task
from incsweep.incremental.exemplars import ExemplarStore, herding_order, resolve_budget
from incsweep.incremental.methods.base import ExemplarConfig

__all__ = [
    "train_images_per_class", "train_images_by_class", "exemplar_total", "quota", "planned_exemplars", "ExemplarMemory",
    "with_exemplars", "l2_normalize", "class_means", "nme_logits", "rehearsal_ce",
]

FeatureFn = Callable[[torch.Tensor], torch.Tensor]  # uint8 images -> features (eval mode, no augmentation)

# Training images per class in each dataset's official training split (Fashion-MNIST 60,000 / 10,
# CIFAR-10 50,000 / 10, CIFAR-100 50,000 / 100, Tiny-ImageNet-200 100,000 / 200). Synthetic data
# has exactly ``train_per_class`` (default 60, benchmarks._load_synthetic).
_FULL_TRAIN_PER_CLASS = {"seq-fashionmnist": 6000, "seq-cifar10": 5000, "seq-cifar100": 500, "seq-tinyimagenet": 500}
_SYNTHETIC_DEFAULT_PER_CLASS = 60  # benchmarks._load_synthetic

# PyCIL's EPSILON for normalising feature vectors (models/icarl.py, utils/toolkit).
_EPS = 1e-8


def train_images_by_class(benchmark: BenchmarkConfig) -> list[int]:
    """Images of each class in its task's ``train`` split: after subsampling and the validation hold-out."""
    spec = benchmark.spec
    if benchmark.name == "synthetic":
        full = [benchmark.train_per_class or _SYNTHETIC_DEFAULT_PER_CLASS] * spec.n_classes  # val_per_class comes on top
    else:
        if spec.class_counts is not None:  # file and plugin benchmarks: counted in the data
            counts = list(spec.class_counts)
        elif benchmark.name in _FULL_TRAIN_PER_CLASS:
            counts = [_FULL_TRAIN_PER_CLASS[benchmark.name]] * spec.n_classes
        else:
            raise ConfigError(f"benchmark {benchmark.name!r}: its BenchmarkSpec gives no class_counts (training images "
                              "per class), which the exemplar plan needs; npz_benchmark/image_folder_benchmark set them")
        full = [n - (benchmark.val_per_class or 0) for n in counts]
        if benchmark.train_per_class is not None:
            full = [min(n, benchmark.train_per_class) for n in full]
    return [n - int(round(n * benchmark.val_fraction)) for n in full]  # the same rounding as benchmarks.load_benchmark


def train_images_per_class(benchmark: BenchmarkConfig) -> int:
    """Images of the smallest class in its task's ``train`` split (all classes, on the built-in benchmarks)."""
    return min(train_images_by_class(benchmark))


def exemplar_total(config: ExemplarConfig, benchmark: BenchmarkConfig, *, final_model_bytes: int,
                   backbone_params: int, kept_params: int) -> int | None:
    """The run's total exemplar count M (None: a fixed number per class), from the config's budget.

    ``final_model_bytes``: everything but exemplars the method holds after the last task (for
    ``total_mb``); ``backbone_params``/``kept_params``: P and what the method keeps of T backbones
    (for ``aligned``: P for a single-network method, g + T*s for MEMO, T*P for DER).
    """
    c, h, w = benchmark.spec.image_shape
    return resolve_budget(config.budget_config(), final_model_bytes=final_model_bytes, image_bytes=c * h * w,
                          n_tasks=len(benchmark.task_sizes), backbone_params=backbone_params,
                          kept_params=kept_params)


def quota(total: int | None, per_class: int, classes_seen: int) -> int:
    """Exemplars per class: M // classes_seen (docs/protocols.md), or the fixed per-class number."""
    return per_class if total is None else total // max(classes_seen, 1)


def planned_exemplars(total: int | None, per_class: int, benchmark: BenchmarkConfig) -> int:
    """Exemplars held after the last task: every class keeps min(quota, its training images)."""
    q = quota(total, per_class, benchmark.spec.n_classes)
    return sum(min(q, n) for n in train_images_by_class(benchmark))


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
