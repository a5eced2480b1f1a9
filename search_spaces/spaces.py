"""The built-in methods' default search spaces, over fields of each method's config class.

Each method class names its space (``Method.search_space``, e.g. ``Replay.search_space = REPLAY``);
that class attribute is the one source of truth, and :func:`default_space` reads it for any method,
built in or not. Ranges bracket the published settings (the comment on each says which) by a
factor of a few, so a study explores around them; a study spec narrows, widens, fixes or adds any
config field. This module imports nothing but ``params``, so method modules can import it.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from .params import Choice, Float, Int, Param

__all__ = ["LR", "WEIGHT_DECAY", "MEMORY_SIZE", "FINETUNE", "REPLAY", "ICARL", "DER", "MEMO", "BMKP", "LWF",
           "EWC", "default_space"]

# SGD learning rate: PyCIL uses 0.1 for every CIFAR method and BMKP 0.05 (0.03 on Tiny-ImageNet).
LR = Float(0.005, 0.5, log=True)
# Weight decay: PyCIL 2e-4 (later tasks) to 5e-4 (first task).
WEIGHT_DECAY = Float(1e-5, 2e-3, log=True)
# Exemplar count: PyCIL's 2,000 on CIFAR-100; the lower end is a few per class on 10-class benchmarks.
MEMORY_SIZE = Int(20, 2000, log=True)


def _frozen(space: dict[str, Param]) -> Mapping[str, Param]:
    return MappingProxyType(space)


FINETUNE = _frozen({"lr": LR, "weight_decay": WEIGHT_DECAY})
REPLAY = _frozen({"lr": LR, "weight_decay": WEIGHT_DECAY, "memory_size": MEMORY_SIZE})
ICARL = _frozen({**REPLAY, "kd_temperature": Float(1.0, 4.0)})  # PyCIL T = 2
DER = _frozen({
    "lr": LR, "init_lr": LR, "weight_decay": WEIGHT_DECAY, "init_weight_decay": WEIGHT_DECAY,
    "memory_size": MEMORY_SIZE,
    "alpha_aux": Float(0.0, 2.0),  # exps/memo.json / DER: 1.0
})
MEMO = _frozen({
    **DER,
    # Which blocks are shared: the end of the stem or of a stage (MEMO Fig. 3 studies every split;
    # the paper's choice shares up to layer2 of ResNet-32, i.e. "layer2").
    "split_after": Choice(("stem", "layer1", "layer2")),
    "train_base": Choice((True, False)),  # exps/memo.json: true for B0, false for B50
    "backbone": Choice(("resnet20", "resnet32")),  # depth: MEMO's CIFAR backbone is ResNet-32
})
BMKP = _frozen({
    "gamma": Float(0.80, 0.999),  # paper Sec. 6.1: 0.96
    "gamma_first": Float(0.80, 0.999),  # main.py threshold_first
    "max_rank": Int(4, 160, log=True),  # up to C_out = 8 * nf of the widest layer (nf = 20)
    "lam": Float(0.1, 100.0, log=True),  # paper Sec. 6.1: 10
    "lr": Float(0.005, 0.2, log=True),  # paper: 0.05 (0.03 on Tiny-ImageNet)
    "width": Int(8, 32),  # nf: paper 20
    "epochs": Int(1, 50),  # paper 50
})
LWF = _frozen({
    "lr": LR, "weight_decay": WEIGHT_DECAY,
    # Li & Hoiem (2016) use T = 2 and weight 1 on the distillation term; PyCIL's lwf.py T = 2 and
    # lamda = 3 (its CIFAR-100 setting), so the range brackets both.
    "kd_temperature": Float(1.0, 4.0),
    "kd_weight": Float(0.3, 10.0, log=True),
})
EWC = _frozen({
    "lr": LR, "weight_decay": WEIGHT_DECAY,
    # Penalty strength: PyCIL's ewc.py lamda = 1000 (Fisher as the mean squared gradient); mammoth's
    # best online-EWC settings span e_lambda 0.7 to 100 with gamma 1.0 (its paper's Table 11 grid).
    "ewc_lambda": Float(1.0, 1e4, log=True),
    "ewc_gamma": Float(0.5, 1.0),  # online decay of the old Fisher: Schwarz et al. (2018) 0.9 to 1.0
})


def default_space(method: str) -> dict[str, Param]:
    """A copy of ``method``'s default space ({} for a method that declares none, e.g. joint)."""
    from incsweep.incremental.methods import get_method  # the registry imports the methods, which import us

    return dict(get_method(method).search_space or {})
