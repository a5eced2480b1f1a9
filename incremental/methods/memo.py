"""MEMO (Zhou et al., "A Model or 603 Exemplars", ICLR 2023; memo.md): shared generalized blocks,
one copy of the specialized blocks per task, an auxiliary head, weight aligning and iCaRL herding,
with the split point ``shared_blocks`` a parameter and budgets that keep comparisons memory-fair.

DER (der.py) is the same machinery with nothing shared.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F

from incsweep.core.configs import spec
from incsweep.core.params import Choice, Float
from incsweep.core.ranges import BATCH_SIZE, EPOCHS, LR, MOMENTUM, WEIGHT_DECAY
from incsweep.incremental.backbones import Backbone, build_backbone, count_params, meta_backbone
from incsweep.incremental.benchmarks import BenchmarkConfig, Task
from incsweep.incremental.memory import MemoryReport, module_bytes
from incsweep.incremental.methods._exemplar import ExemplarMemory, rehearsal_ce, with_exemplars
from incsweep.incremental.methods._memo_net import SplitNet, resolve_shared, split_points, split_sizes
from incsweep.incremental.methods._prefix import budget_fields, first_task_fields
from incsweep.incremental.methods._single import head_bytes
from incsweep.incremental.methods._space import SEARCHED_LR, SEARCHED_MEMORY_SIZE, SEARCHED_WEIGHT_DECAY, frozen_space
from incsweep.incremental.methods.base import BudgetPlan, ExemplarConfig, Method, RunContext
from incsweep.incremental.training import fit, predict_in_batches, recompute_bn_stats

__all__ = ["ExpansionConfig", "MEMOConfig", "MEMO", "aux_targets"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExpansionConfig(ExemplarConfig):
    """What MEMO and DER share. Defaults are the CIFAR-100 settings of the MEMO paper (Sec. 5 and
    appendix), identical in PyCIL's exps/memo.json and models/der.py. The backbone default, ResNet-32,
    is MethodConfig's already."""

    epochs: int = spec(170, range=EPOCHS)  # later tasks: 170 epochs (exps/memo.json "epochs")
    lr: float = spec(0.1, range=LR)  # exps/memo.json "lrate"
    momentum: float = spec(0.9, range=MOMENTUM)  # PyCIL: SGD(momentum=0.9) for every task
    weight_decay: float = spec(2e-4, range=WEIGHT_DECAY)  # exps/memo.json "weight_decay"
    batch_size: int = spec(128, range=BATCH_SIZE)  # exps/memo.json "batch_size"
    schedule: str = spec("step", choices=("step", "cosine", "constant"))  # "steplr" (cosine also in the code)
    milestones: tuple[int, ...] = spec((80, 120, 150), range=(1, None))  # exps/memo.json "milestones"
    lr_decay: float = spec(0.1, range=(0.0, 1.0))  # "lrate_decay" and "init_lr_decay"
    init_epochs: int | None = spec(200, range=EPOCHS)  # task 0: "init_epoch" 200
    init_lr: float | None = spec(0.1, range=LR)  # "init_lr" 0.1
    init_weight_decay: float | None = spec(5e-4, range=WEIGHT_DECAY)  # "init_weight_decay" 5e-4
    init_milestones: tuple[int, ...] | None = spec((60, 120, 170), range=(1, None))  # "init_milestones"
    alpha_aux: float = spec(1.0, range=(0.0, 10.0))  # exps/memo.json "alpha_aux"; DER adds the aux loss with weight 1
    weight_align: bool = True  # PyCIL MEMO/DER align after every task > 0


@dataclass(frozen=True)
class MEMOConfig(ExpansionConfig):
    """``shared_blocks`` = k residual blocks in G (None: all but the last stage, the paper's k = 10 on
    ResNet-32 and layer4 specialized on ResNet-18), or ``split_after`` a named stage end."""

    shared_blocks: int | None = spec(None, range=(0, 1000))
    split_after: str | None = spec(None, choices=("stem", "layer1", "layer2", "layer3"))
    train_base: bool = True  # exps/memo.json "train_base": true (and the README's B0 Inc10 command); B50: false

    def __post_init__(self) -> None:
        super().__post_init__()
        # The backbone's block count is only known once it is built: check the split now, at the boundary.
        resolve_shared(meta_backbone(self.backbone, 3, self.backbone_kwargs()), self.backbone, self.shared_blocks,
                       self.split_after)


def aux_targets(y: torch.Tensor, n_old: int) -> torch.Tensor:
    """Auxiliary labels: every old class -> 0, new class n_old + j -> j + 1 (PyCIL MEMO/DER)."""
    return torch.where(y >= n_old, y - n_old + 1, torch.zeros_like(y))


# The fields MEMO and DER share (DER's whole space): schedule, first-task schedule, budget, aux loss.
EXPANSION_SPACE = frozen_space({
    "lr": SEARCHED_LR, "init_lr": SEARCHED_LR, "weight_decay": SEARCHED_WEIGHT_DECAY, "init_weight_decay": SEARCHED_WEIGHT_DECAY,
    "memory_size": SEARCHED_MEMORY_SIZE,
    "alpha_aux": Float(0.0, 2.0),  # exps/memo.json / DER: 1.0
})
MEMO_SPACE = frozen_space({
    **EXPANSION_SPACE,
    # Which blocks are shared: the end of the stem or of a stage (MEMO Fig. 3 studies every split;
    # the paper's choice shares up to layer2 of ResNet-32, i.e. "layer2").
    "split_after": Choice(("stem", "layer1", "layer2")),
    "train_base": Choice((True, False)),  # exps/memo.json: true for B0, false for B50
    "backbone": Choice(("resnet20", "resnet32")),  # depth: MEMO's CIFAR backbone is ResNet-32
})


XC = TypeVar("XC", bound=ExpansionConfig)  # MEMO and DER (a whole backbone per task)


class MEMO(Method[XC]):
    config_cls: ClassVar[type[ExpansionConfig]] = MEMOConfig
    search_space = MEMO_SPACE
    scenarios = ("class_il", "task_il")
    # Config fields (besides the network, schedule and budget) that task 0 reads: see fields_for_tasks.
    split_fields: ClassVar[tuple[str, ...]] = ("shared_blocks", "split_after")

    def __init__(self, config: XC, ctx: RunContext):
        super().__init__(config, ctx)
        backbone = build_backbone(config.backbone, ctx.image_shape[0], **config.backbone_kwargs())
        self.net = SplitNet(backbone, type(self).n_shared(config, backbone)).to(ctx.device)
        self.n_seen = 0
        self.exemplars = ExemplarMemory(ctx.exemplar_total, config.memory_per_class)  # M: from plan(), as in replay
        self._aux_bytes = 0

    # ---- what differs between MEMO and DER ----------------------------------------------------------
    @classmethod
    def n_shared(cls, config: ExpansionConfig, backbone: Backbone) -> int | None:
        """Residual blocks in G (None: nothing shared, not even the stem)."""
        if not isinstance(config, MEMOConfig):
            raise TypeError(f"MEMO needs a MEMOConfig, got {type(config).__name__}")
        return resolve_shared(backbone, config.backbone, config.shared_blocks, config.split_after)

    def trains_shared(self, task_index: int) -> bool:
        """G learns in task 0, and later only with ``train_base`` (memo.md)."""
        return task_index == 0 or bool(getattr(self.config, "train_base", True))  # DER overrides this

    # ---- lifecycle ----------------------------------------------------------------------------------
    def begin_task(self, task: Task) -> None:
        self.net.grow(len(task.classes), with_aux=task.index > 0)
        self.n_seen = task.classes[-1] + 1
        self.net.freeze(self.trains_shared(task.index))

    def train_task(self, task: Task) -> None:
        x, y = with_exemplars(task, self.exemplars)
        cfg, net, n_old, d = self.config, self.net, task.offset, self.net.out_dim
        sizes, train_shared = self.ctx.benchmark.task_sizes, self.trains_shared(task.index)

        classifier = net.classifier
        assert classifier is not None, "begin_task grows the classifier"

        def loss_fn(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            feats = net.features(xb)
            loss = rehearsal_ce(classifier(feats), yb, self.n_seen, self.ctx.scenario, sizes)
            aux = net.aux
            if aux is not None and cfg.alpha_aux > 0:
                loss = loss + cfg.alpha_aux * F.cross_entropy(aux(feats[:, -d:]), aux_targets(yb, n_old))
            return loss

        fit(net.parameters(), loss_fn, x.to(self.ctx.device), y, cfg.task_schedule(task.index), self.ctx.augmenter,
            self.ctx.generator(task.index), train_mode=lambda: net.train_mode(train_shared),
            label=f"{type(self).__name__.lower()} task {task.index}")
        if cfg.bn_stats == "recompute":
            # What trained this task: the newest S, and G when it learned (frozen parts keep theirs).
            trained = [net.specialized[-1], *([net.shared] if train_shared else [])]
            newest = lambda xb: net.specialized[-1](net.shared(xb))  # noqa: E731 - old S_i need no pass
            recompute_bn_stats(trained, newest, x, self.ctx.augmenter, self.config.batch_size)
        if task.index > 0 and cfg.weight_align:
            log.debug("task %d: weight aligning gamma %.4f", task.index, net.align_weights(n_old))

    def end_task(self, task: Task) -> None:
        self._aux_bytes = module_bytes(self.net.aux) if self.net.aux is not None else 0
        self.net.aux = None  # only needed while training
        self.exemplars.update(task, self.features)  # herding on L2-normalised concatenated features

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated features [S_0(G(x)), ..., S_b(G(x))] of un-augmented uint8 images."""
        self.net.eval()
        return predict_in_batches(self.net.features, x, self.ctx.augmenter, self.ctx.eval_batch_size)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, task_id: int | None) -> torch.Tensor:
        self.net.eval()
        return predict_in_batches(self.net, x, self.ctx.augmenter, self.ctx.eval_batch_size)[:, : self.n_seen]

    def memory(self) -> MemoryReport:
        return MemoryReport(model_bytes=self.net.stored_bytes(), exemplar_bytes=self.exemplars.nbytes,
                            n_exemplars=len(self.exemplars), train_state_bytes=self._aux_bytes)

    # ---- planning -----------------------------------------------------------------------------------
    def kept_backbone_params(self, backbone_params: int) -> int:
        """g + T*s: G and the T specialized copies (the aligned budget counts parameters, as the paper does)."""
        return count_params(self.net.shared) + sum(count_params(s) for s in self.net.specialized)

    @classmethod
    def plan(cls, config: XC, benchmark: BenchmarkConfig) -> BudgetPlan:
        """The measured plan (G + T copies of S + a classifier over T*d features, and the exemplars the
        budget leaves: ``aligned`` gives M = base + floor((T*P - (g + T*s)) * 4 / img)), with the split
        spelled out for people (``incsweep budget``)."""
        plan = super().plan(config, benchmark)
        c, h, w = benchmark.spec.image_shape
        backbone = meta_backbone(config.backbone, c, config.backbone_kwargs())
        k = cls.n_shared(config, backbone)
        sz = split_sizes(backbone, k)
        t, n_classes, d = len(benchmark.task_sizes), benchmark.spec.n_classes, backbone.out_dim
        g, s, p = sz["shared_params"], sz["specialized_params"], sz["backbone_params"]
        classifier = head_bytes(t * d, n_classes)
        n, total = plan.n_exemplars, plan.exemplar_total
        names = {v: name for name, v in split_points(backbone).items()}
        details: dict[str, Any] = {
            "shared_blocks": "none (DER: a whole backbone per task)" if k is None else k,
            "split": "none" if k is None else names.get(k, f"after block {k}"),
            "n_blocks": len(backbone.blocks), "n_tasks": t,
            "shared_params_g": g, "specialized_params_s": s,
            "shared_bytes": sz["shared_bytes"], "specialized_bytes_per_task": sz["specialized_bytes"],
            "specialized_bytes": t * sz["specialized_bytes"], "classifier_bytes": classifier,
            "per_class_final": n // n_classes,
        }
        if config.budget == "aligned":
            details["aligned_formula"] = (f"{config.aligned_base} + floor(({t}*{p} - ({g} + {t}*{s})) * 4 / {c * h * w})"
                                          f" = {total}")
        return dataclasses.replace(plan, details=details)

    @classmethod
    def fields_for_tasks(cls, config: XC, n_done: int) -> frozenset[str] | None:
        """Task 0 reads the network, its split, its schedule and the budget; alpha_aux, weight_align and
        train_base act from task 1 on."""
        return first_task_fields(config, *cls.split_fields) | budget_fields() if n_done <= 1 else None

    # ---- state --------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # Checkpoints are taken between tasks, when the auxiliary head is already gone.
        return {"net": self.net.state_dict(), "n_tasks": self.net.n_tasks, "n_classes": self.net.n_classes,
                "n_seen": self.n_seen, "exemplars": self.exemplars.state_dict(), "aux_bytes": self._aux_bytes}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["n_tasks"]:
            self.net.restore_shape(state["n_tasks"], state["n_classes"])
        self.net.load_state_dict(state["net"])
        self.n_seen = state["n_seen"]
        self.exemplars.load_state_dict(state["exemplars"])
        self._aux_bytes = state["aux_bytes"]
