"""The public API for method and benchmark authors: what a method outside incsweep builds on.

Everything here is stable across releases; the modules these names live in are not. LwF and EWC
(``incremental/methods/lwf.py``, ``ewc.py``) import only from here, as an outside author would; the
worked example is ``examples/incsweep_example`` and the contract is docs/extending.md.
"""

from __future__ import annotations

from incsweep.core.configs import spec
from incsweep.core.errors import ConfigError, DataFormatError
from incsweep.core.memory_report import MemoryReport
from incsweep.core.params import Choice, Fixed, Float, Int
from incsweep.incremental.backbones import Backbone, GrowingHead, build_backbone, count_params
from incsweep.incremental.benchmarks import BenchmarkConfig, BenchmarkSpec, Split, Task
from incsweep.incremental.budget import exemplar_total, planned_exemplars, quota
from incsweep.incremental.census import Census, MemoryMisreport, take_census
from incsweep.incremental.datasets import RawData
from incsweep.incremental.exemplars import ExemplarStore, herding_order
from incsweep.incremental.file_benchmarks import array_benchmark, image_folder_benchmark, npz_benchmark
from incsweep.incremental.image_sets import ImageSet, ImageView, as_tensor
from incsweep.incremental.memory import module_bytes, tensor_bytes
from incsweep.incremental.methods._distill import DistillingNetMethod, kd_loss
from incsweep.incremental.methods._exemplar import (
    ExemplarMemory,
    class_means,
    l2_normalize,
    nme_logits,
    rehearsal_ce,
    with_exemplars,
)
from incsweep.incremental.methods._prefix import budget_fields, first_task_fields
from incsweep.incremental.methods._single import IncrementalNet, SingleNetMethod, head_bytes
from incsweep.incremental.methods._space import SEARCHED_LR, SEARCHED_MEMORY_SIZE, SEARCHED_WEIGHT_DECAY, frozen_space
from incsweep.incremental.methods.base import BudgetPlan, ExemplarConfig, Method, MethodConfig, RunContext
from incsweep.incremental.training import Schedule, fit, predict_in_batches, recompute_bn_stats

__all__ = [
    # the method contract and its configs
    "Method", "MethodConfig", "ExemplarConfig", "RunContext", "BudgetPlan", "MemoryReport", "spec", "ConfigError",
    # a single growing network trained by SGD, as finetune/replay/LwF/EWC use it
    "SingleNetMethod", "IncrementalNet", "Backbone", "GrowingHead", "build_backbone", "count_params", "head_bytes",
    "fit", "predict_in_batches", "recompute_bn_stats", "Schedule",
    # distillation from the previous task's model (iCaRL, LwF): the loss and the network that keeps it
    "kd_loss", "DistillingNetMethod",
    # rehearsal: the budget (M from the engine: RunContext.exemplar_total; quota per class), the store,
    # herding, the loss over batches that mix tasks (task-IL masking included), class means
    "ExemplarMemory", "ExemplarStore", "herding_order", "with_exemplars", "quota", "planned_exemplars",
    "exemplar_total", "rehearsal_ce", "l2_normalize", "class_means", "nme_logits",
    # memory accounting (the engine's census checks every memory() report) and prefix reuse
    "module_bytes", "tensor_bytes", "take_census", "Census", "MemoryMisreport", "first_task_fields", "budget_fields",
    # default search spaces, and the ranges the built-in methods share
    "Float", "Int", "Choice", "Fixed", "frozen_space", "SEARCHED_LR", "SEARCHED_WEIGHT_DECAY", "SEARCHED_MEMORY_SIZE",
    # data
    "Task", "Split", "BenchmarkConfig", "BenchmarkSpec", "RawData", "DataFormatError", "npz_benchmark",
    "image_folder_benchmark", "array_benchmark",
    # image sets (ImageNet-100, mixed-size folders): what task.train.x is there, decoded when used;
    # as_tensor gives a set's evaluation views (or a tensor as it is)
    "ImageSet", "ImageView", "as_tensor",
]
