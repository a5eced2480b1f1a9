"""``plan()`` by default: the method grown to the last task's shapes, measured by its own ``memory()``.

A method states its memory once, in ``memory()``, over the tensors it holds. To predict the memory
of a configuration before any training (``incsweep budget``, the exemplar budget M, a study's
memory axis), the method is built on torch's ``meta`` device, where tensors have shapes and dtypes
but no storage and no compute, and ``begin_task`` is called for every task on shape-only tasks
(the right classes, no images). What ``memory()`` then reports is what the run will hold, except
what only data can create:

- exemplars: their count is the budget's (``planned_exemplars``), for an ``ExemplarConfig``;
- tensors ``end_task`` computes from data (EWC's Fisher, iCaRL's class means): the method's
  ``planned_extra_bytes()``, called on the grown method, so it reads shapes from the real modules;
- data-dependent sizes (BMKP's ranks): such a method overrides ``plan()`` (an upper bound, with
  ``plan_is_exact = False``).

The contract check ``memory_equals_plan`` then compares the trained run's ``memory()`` with this plan
(a method that grows something outside ``begin_task`` without planning for it fails there), and
checks that ``memory()`` accounts for every module the method holds, so an under-report cannot
hide by being the same in both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from incsweep.core.errors import ConfigError
from incsweep.incremental.augment import AUGMENTATIONS, Augmenter
from incsweep.incremental.backbones import count_params, meta_backbone, on_meta
from incsweep.incremental.benchmarks import BenchmarkConfig, Split, Task
from incsweep.incremental.budget import exemplar_total, planned_exemplars
from incsweep.incremental.methods.base import BudgetPlan, ExemplarConfig, MethodConfig, RunContext
from incsweep.incremental.process_state import scoped_global_rng

if TYPE_CHECKING:
    from incsweep.incremental.methods.base import Method

__all__ = ["META", "shape_only_tasks", "grown_for_plan", "measured_plan"]

META = torch.device("meta")


def shape_only_tasks(benchmark: BenchmarkConfig) -> tuple[Task, ...]:
    """The benchmark's tasks with their classes and no images (what ``begin_task`` may read)."""
    c, h, w = benchmark.spec.image_shape
    empty = Split(torch.empty(0, c, h, w, dtype=torch.uint8, device=META), torch.empty(0, dtype=torch.int64, device=META))
    tasks, lo = [], 0
    for index, size in enumerate(benchmark.task_sizes):
        tasks.append(Task(index=index, classes=tuple(range(lo, lo + size)), train=empty, val=empty, test=empty))
        lo += size
    return tuple(tasks)


def _plan_context(cls: type[Method], benchmark: BenchmarkConfig, device: torch.device) -> RunContext:
    """What a method built only to be measured is told: its default scenario, no augmentation, seed 0."""
    spec = benchmark.spec
    return RunContext(device=device, scenario=cls.scenarios[0], benchmark=benchmark,
                      augmenter=Augmenter(AUGMENTATIONS["none"], spec.mean, spec.std, device), eval_batch_size=1, seed=0)


def grown_for_plan(cls: type[Method], config: MethodConfig, benchmark: BenchmarkConfig) -> Method:
    """The method as ``begin_task`` of every task leaves it, on the meta device (no data, no compute)."""
    ctx = _plan_context(cls, benchmark, META)
    # scoped: construction draws nothing on meta, but a method may touch the global RNGs anyway.
    with scoped_global_rng(META), on_meta():
        try:
            method = cls(config, ctx)
        except (ConfigError, TypeError, ValueError):
            raise
        except Exception as exc:  # noqa: BLE001 - named for the method's author
            raise _constructor_error(cls, config, benchmark, exc) from exc
        try:
            for task in shape_only_tasks(benchmark):
                method.begin_task(task)
        except (ConfigError, TypeError, ValueError):
            raise
        except Exception as exc:  # noqa: BLE001 - named for the method's author, with what to do
            raise ConfigError(
                f"{cls.__name__}.plan(): building it on the meta device and calling begin_task on every task "
                f"failed ({type(exc).__name__}: {exc}); a method whose begin_task needs data or real tensors "
                "must override plan()") from exc
    return method


def _constructor_error(cls: type[Method], config: MethodConfig, benchmark: BenchmarkConfig,
                       exc: Exception) -> ConfigError:
    """A constructor that raised on the meta device: its own error when it raises on the CPU too,
    else what the meta build needs from it."""
    cpu = torch.device("cpu")
    try:
        with scoped_global_rng(cpu):
            cls(config, _plan_context(cls, benchmark, cpu))
    except Exception as again:  # noqa: BLE001 - the method's own error, whatever its type
        return ConfigError(f"{cls.__name__}(config, ctx) raised {type(again).__name__}: {again}")
    return ConfigError(f"{cls.__name__}.plan(): its constructor works on the CPU but not on the meta device "
                       f"({type(exc).__name__}: {exc}); read tensor values in begin_task, or override plan()")


def measured_plan(cls: type[Method], config: MethodConfig, benchmark: BenchmarkConfig) -> BudgetPlan:
    """``Method.plan``'s default: ``memory()`` of the grown method, plus what the data will add."""
    grown = grown_for_plan(cls, config, benchmark)
    mem = grown.memory()
    extra = mem.extra_bytes + grown.planned_extra_bytes()
    c, h, w = benchmark.spec.image_shape
    p = count_params(meta_backbone(config.backbone, c, config.backbone_kwargs()))
    if not isinstance(config, ExemplarConfig):
        return BudgetPlan(mem.model_bytes, extra, c * h * w, 0, backbone_params=p,
                          train_state_bytes=mem.train_state_bytes)
    # M is derived from everything but the exemplars (for total_mb) and what the method keeps of
    # DER's T backbones (for aligned): docs/protocols.md, "Memory accounting".
    total = exemplar_total(config, benchmark, final_model_bytes=mem.model_bytes + extra, backbone_params=p,
                           kept_params=grown.kept_backbone_params(p))
    n = planned_exemplars(total, config.memory_per_class, benchmark)
    return BudgetPlan(mem.model_bytes, extra, c * h * w, n, exemplar_total=total, backbone_params=p,
                      train_state_bytes=mem.train_state_bytes,
                      details={"per_class_final": n // benchmark.spec.n_classes})
