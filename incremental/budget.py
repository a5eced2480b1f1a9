"""The exemplar budget, in one place: how many raw exemplars a run may keep (docs/protocols.md,
"Budgets"; docs/memo.md for the aligned budget).

A budget (``BudgetConfig``: count, per_class, total_mb or aligned) resolves once per run, from the
method's plan, to M, the total exemplar count (or None: a fixed number per class); each seen class
then keeps ``quota`` = M // classes seen, at most its training images; ``planned_exemplars`` is what
a run holds after its last task. The engine fixes M before building the method (``RunContext.exemplar_total``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from incsweep.core.configs import spec, validate
from incsweep.core.errors import ConfigError
from incsweep.core.units import MB

if TYPE_CHECKING:
    from incsweep.incremental.benchmarks import BenchmarkConfig
    from incsweep.incremental.methods.base import ExemplarConfig

__all__ = ["BudgetConfig", "budget_field", "resolve_budget", "exemplars_for_budget", "aligned_exemplars",
           "exemplar_total", "quota", "planned_exemplars", "train_images_by_class", "train_images_per_class"]

# Training images per class in each dataset's official training split (Fashion-MNIST 60,000 / 10,
# CIFAR-10 50,000 / 10, CIFAR-100 50,000 / 100, Tiny-ImageNet-200 100,000 / 200). Synthetic data
# has exactly ``train_per_class`` (default 60, benchmarks._load_synthetic).
_FULL_TRAIN_PER_CLASS = {"seq-fashionmnist": 6000, "seq-cifar10": 5000, "seq-cifar100": 500, "seq-tinyimagenet": 500}
_SYNTHETIC_DEFAULT_PER_CLASS = 60  # benchmarks._load_synthetic


@dataclass(frozen=True)
class BudgetConfig:
    """How many exemplars a method may keep (docs/protocols.md and memo.md "Budgets").

    - ``count``: ``memory_size`` exemplars in total, ``memory_size // classes_seen`` per class;
    - ``per_class``: ``memory_per_class`` for every seen class;
    - ``total_mb``: whatever fits in ``memory_mb`` after the final model's bytes;
    - ``aligned``: DER's memory, ``aligned_base`` exemplars + T backbones (MEMO's fair comparison).
    """

    budget: str = spec("count", choices=("count", "per_class", "total_mb", "aligned"))
    memory_size: int = spec(2000, range=(0, None))  # PyCIL/MEMO default total exemplars
    memory_per_class: int = spec(20, range=(0, None))  # iCaRL/PyCIL fixed-per-class default
    memory_mb: float = spec(0.0, range=(0.0, None))
    aligned_base: int = spec(2000, range=(0, None))  # MEMO aligns to DER with 2,000 exemplars

    def __post_init__(self) -> None:
        validate(self)
        if self.budget == "total_mb" and self.memory_mb <= 0:
            raise ConfigError("budget=total_mb needs memory_mb > 0 (the total memory in MB = 2^20 bytes)")


def budget_field(name: str) -> Any:
    """A new dataclass field with the default, range and choices of ``BudgetConfig.<name>``: the one
    declaration every exemplar method's config repeats (``ExemplarConfig``)."""
    (field,) = (f for f in dataclasses.fields(BudgetConfig) if f.name == name)
    meta = field.metadata
    return spec(field.default, range=meta["range"], choices=meta["choices"], help=meta["help"])


def resolve_budget(cfg: BudgetConfig, *, final_model_bytes: int, image_bytes: int, n_tasks: int,
                   backbone_params: int, kept_params: int) -> int | None:
    """Total exemplar count M for the run, or None for a fixed per-class budget."""
    if cfg.budget == "count":
        return cfg.memory_size
    if cfg.budget == "per_class":
        return None
    if cfg.budget == "total_mb":
        m = exemplars_for_budget(cfg.memory_mb, final_model_bytes, image_bytes)
        if m == 0:
            raise ConfigError(
                f"memory_mb={cfg.memory_mb} leaves no room for exemplars: the model alone needs "
                f"{final_model_bytes / MB:.3f} MB"
            )
        return m
    return aligned_exemplars(base=cfg.aligned_base, n_tasks=n_tasks, backbone_params=backbone_params,
                             kept_params=kept_params, image_bytes=image_bytes)


def exemplars_for_budget(total_mb: float, model_bytes: int, image_bytes: int) -> int:
    """How many raw uint8 exemplars fit in ``total_mb`` after the model's bytes (0 if none fit)."""
    free = int(total_mb * MB) - model_bytes
    return max(free // image_bytes, 0)


def aligned_exemplars(*, base: int, n_tasks: int, backbone_params: int, kept_params: int, image_bytes: int) -> int:
    """Exemplars at DER's memory (docs/protocols.md): base + the float32 bytes of T backbones not kept.

    ``kept_params`` is what the method holds of those T backbones (1 backbone for a single-model
    method; g + T*s for MEMO), so DER itself (kept = T*P) gets exactly ``base``.
    """
    spare = n_tasks * backbone_params - kept_params
    return base + max(spare, 0) * 4 // image_bytes


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
