"""The contract every method implements, and the configuration fields methods share.

The run loop (``incremental.run``) owns ordering, seeding, evaluation and checkpointing; a
method only learns, predicts, accounts for its memory and (de)serialises its state.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Mapping, TypeVar

import torch

from incsweep.core.configs import spec, validate
from incsweep.core.ranges import BATCH_SIZE, EPOCHS, LR, MOMENTUM, WEIGHT_DECAY
from incsweep.incremental.augment import Augmenter
from incsweep.incremental.backbones import BACKBONES
from incsweep.incremental.benchmarks import BenchmarkConfig, Task
from incsweep.incremental.budget import BudgetConfig, budget_field
from incsweep.incremental.memory import MemoryReport
from incsweep.incremental.training import BN_STATS, Schedule

__all__ = ["MethodConfig", "ExemplarConfig", "RunContext", "Method", "BudgetPlan"]

SCENARIOS = ("class_il", "task_il")


@dataclass(frozen=True)
class MethodConfig:
    """Backbone and SGD schedule. ``init_*`` fields override the schedule for task 0 when set."""

    backbone: str = spec("resnet32", choices=tuple(BACKBONES))
    width: int | None = spec(None, range=(1, 1024))  # backbone width (resnet: first stage; nf for reduced_resnet18)
    epochs: int = spec(1, range=EPOCHS)
    lr: float = spec(0.1, range=LR)
    momentum: float = spec(0.9, range=MOMENTUM)
    weight_decay: float = spec(5e-4, range=WEIGHT_DECAY)
    batch_size: int = spec(128, range=BATCH_SIZE)
    schedule: str = spec("step", choices=("step", "cosine", "constant"))
    milestones: tuple[int, ...] = spec((), range=(1, None))
    lr_decay: float = spec(0.1, range=(0.0, 1.0))
    init_epochs: int | None = spec(None, range=EPOCHS)
    init_lr: float | None = spec(None, range=LR)
    init_weight_decay: float | None = spec(None, range=WEIGHT_DECAY)
    init_milestones: tuple[int, ...] | None = spec(None, range=(1, None))
    # After each training phase, BatchNorm statistics are recomputed for the final weights on the
    # phase's un-augmented training data ("recompute"), or torch's running averages are kept
    # ("running": PyCIL's and mammoth's behaviour). Why: training.recompute_bn_stats, docs/engine.md.
    bn_stats: str = spec("recompute", choices=BN_STATS)

    def __post_init__(self) -> None:
        validate(self)
        self.task_schedule(0), self.task_schedule(1)  # validates both schedules now, at the boundary

    def task_schedule(self, task_index: int) -> Schedule:
        first = task_index == 0
        pick = lambda init, later: init if first and init is not None else later  # noqa: E731
        return Schedule(
            epochs=pick(self.init_epochs, self.epochs),
            lr=pick(self.init_lr, self.lr),
            momentum=self.momentum,
            weight_decay=pick(self.init_weight_decay, self.weight_decay),
            batch_size=self.batch_size,
            kind=self.schedule,
            milestones=pick(self.init_milestones, self.milestones),
            lr_decay=self.lr_decay,
        )

    def backbone_kwargs(self) -> dict[str, Any]:
        if self.width is None:
            return {}
        return {"nf": self.width} if self.backbone == "reduced_resnet18" else {"width": self.width}


@dataclass(frozen=True)
class ExemplarConfig(MethodConfig):
    """A method with an exemplar memory; fields as in ``budget.BudgetConfig``."""

    budget: str = budget_field("budget")
    memory_size: int = budget_field("memory_size")
    memory_per_class: int = budget_field("memory_per_class")
    memory_mb: float = budget_field("memory_mb")
    aligned_base: int = budget_field("aligned_base")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.budget_config()

    def budget_config(self) -> BudgetConfig:
        return BudgetConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(BudgetConfig)})


@dataclass(frozen=True)
class RunContext:
    """What a method may know about its run: device, scenario, benchmark shape, augmentation, seed."""

    device: torch.device
    scenario: str
    benchmark: BenchmarkConfig
    augmenter: Augmenter
    eval_batch_size: int
    seed: int
    # The run's exemplar budget M, fixed once by the engine from plan() before the method is built
    # (docs/protocols.md). None: a fixed number per class, no exemplars, or plan()'s own shape-only build.
    exemplar_total: int | None = None

    @property
    def n_tasks(self) -> int:
        return len(self.benchmark.task_sizes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.benchmark.spec.image_shape

    @property
    def image_bytes(self) -> int:
        c, h, w = self.image_shape
        return c * h * w

    def generator(self, task_index: int, stream: int = 0) -> torch.Generator:
        """A generator for task ``task_index``: a pure function of (seed, task, stream), so resume is exact.

        On the meta device (plan()'s shape-only build) torch has no generator: a CPU one stands in,
        so a begin_task that draws can still be planned (nothing is drawn into meta tensors)."""
        g = torch.Generator(device=self.device if self.device.type != "meta" else "cpu")
        g.manual_seed(derive_seed(self.seed, task_index, stream))
        return g


def derive_seed(seed: int, task_index: int, stream: int = 0) -> int:
    # Distinct, stable streams per (seed, task, stream); 2**31-1 keeps it valid for numpy too.
    return (seed * 1_000_003 + task_index * 7919 + stream * 104_729 + 12_345) % (2**31 - 1)


C = TypeVar("C", bound=MethodConfig)  # a method's config type (Method[C]: self.config, plan, fields_for_tasks)


@dataclass(frozen=True)
class BudgetPlan:
    """``incsweep budget``: the memory a configuration will use after the last task."""

    model_bytes: int  # final model (all tasks' parts)
    extra_bytes: int
    image_bytes: int
    n_exemplars: int  # total exemplars after the last task (0 for exemplar-free methods)
    # The exemplar budget M the run fixes at its start (memory_size, or what total_mb/aligned buys);
    # n_exemplars can be below it when M does not divide evenly over the classes. 0: no exemplars.
    exemplar_total: int | None = None  # None: a fixed number per class (memory_per_class)
    backbone_params: int | None = None  # P of one backbone (what the aligned budget counts)
    train_state_bytes: int = 0  # training-time only state (BMKP's working network), not in the total
    # For people (``incsweep budget`` prints it): code reads only the typed fields above.
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.extra_bytes + self.n_exemplars * self.image_bytes

    def report(self) -> MemoryReport:
        """The MemoryReport the run will end with (an upper bound where ``plan_is_exact`` is False)."""
        return MemoryReport(model_bytes=self.model_bytes, exemplar_bytes=self.n_exemplars * self.image_bytes,
                            extra_bytes=self.extra_bytes, n_exemplars=self.n_exemplars,
                            train_state_bytes=self.train_state_bytes)


class Method(ABC, Generic[C]):
    """Lifecycle per task: begin_task -> train_task -> end_task; predict any time after."""

    config_cls: ClassVar[type[MethodConfig]] = MethodConfig
    scenarios: ClassVar[tuple[str, ...]] = SCENARIOS  # the first is the default
    # The names task_stats() returns (each a stat_<name> results column of every file of a study).
    task_stat_names: ClassVar[tuple[str, ...]] = ()
    plan_is_exact: ClassVar[bool] = True  # False: plan() is an upper bound (memory() <= plan), e.g. BMKP's data-dependent ranks
    # The default search space: config field -> incsweep.core.params Float/Int/Choice, or None for
    # "no default space" (a study then runs the defaults unless its spec searches fields). Declared,
    # not inherited from here, so that a method without one is a choice its author made: the
    # registry (methods.check_method_class) refuses a class that leaves it out.
    search_space: ClassVar[Mapping[str, Any] | None]
    # The Ray Tune trainable, as module:function; None: the shared one (trainables.run_trial), which
    # runs any method through incremental.run.
    trainable: ClassVar[str | None] = None

    def __init__(self, config: C, ctx: RunContext):
        self.config: C = config
        self.ctx = ctx

    def begin_task(self, task: Task) -> None:  # noqa: B027 - optional hook
        """Grow the model for the task's classes."""

    @abstractmethod
    def train_task(self, task: Task) -> None:
        """Learn the task (its ``train`` split only)."""

    def end_task(self, task: Task) -> None:  # noqa: B027 - optional hook
        """Consolidate: select exemplars, project, align."""

    def task_stats(self) -> dict[str, float]:
        """Diagnostics of the task just ended (after ``end_task``), reported per task and stored in
        the results' ``method_stats``; e.g. BMKP's working vs knowledge network accuracy. The keys
        are ``task_stat_names``."""
        return {}

    @abstractmethod
    def predict(self, x: torch.Tensor, task_id: int | None) -> torch.Tensor:
        """Logits over every class seen so far for uint8 images ``x``; ``task_id`` is given in task-IL."""

    @abstractmethod
    def memory(self) -> MemoryReport:
        """What the method must keep to predict, by part."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly (tensors and plain data only)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    @classmethod
    def plan(cls, config: C, benchmark: BenchmarkConfig) -> BudgetPlan:
        """The final memory of this configuration on this benchmark, without training.

        Default: ``memory()`` of the method built on the meta device and grown by ``begin_task`` for
        every task, plus the budget's exemplars and ``planned_extra_bytes()`` (methods/planning.py).
        Override it only where sizes depend on the data (BMKP's ranks: then ``plan_is_exact = False``).
        """
        from incsweep.incremental.methods.planning import measured_plan  # planning builds on this module

        return measured_plan(cls, config, benchmark)

    def planned_extra_bytes(self) -> int:
        """Called by the default ``plan()`` on the method grown to the last task's shapes (meta
        tensors): the extra bytes ``end_task`` will compute from data and keep (EWC's Fisher, class
        means), which the grown method does not hold yet."""
        return 0

    def kept_backbone_params(self, backbone_params: int) -> int:
        """Called like ``planned_extra_bytes``: the parameters this method keeps of DER's T backbones of
        ``backbone_params`` each (the aligned budget's g + T*s; one backbone by default)."""
        return backbone_params

    @classmethod
    def fields_for_tasks(cls, config: C, n_done: int) -> frozenset[str] | None:
        """Config fields that can influence the state after the first ``n_done`` tasks (None: all)."""
        return None
