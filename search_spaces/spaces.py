"""Default search spaces, one per method, over fields of that method's config class.

Ranges bracket the published settings (the comment on each says which) by a factor of a few,
so a study explores around them; a study spec narrows, widens, fixes or adds any config field.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from .params import Choice, Float, Int, Param

__all__ = ["SPACES", "default_space"]

# SGD learning rate: PyCIL uses 0.1 for every CIFAR method and BMKP 0.05 (0.03 on Tiny-ImageNet).
_LR = Float(0.005, 0.5, log=True)
# Weight decay: PyCIL 2e-4 (later tasks) to 5e-4 (first task).
_WD = Float(1e-5, 2e-3, log=True)
# Exemplar count: PyCIL's 2,000 on CIFAR-100; the lower end is a few per class on 10-class benchmarks.
_MEMORY = Int(20, 2000, log=True)

_FINETUNE: dict[str, Param] = {"lr": _LR, "weight_decay": _WD}
_REPLAY: dict[str, Param] = {"lr": _LR, "weight_decay": _WD, "memory_size": _MEMORY}
_ICARL: dict[str, Param] = {**_REPLAY, "kd_temperature": Float(1.0, 4.0)}  # PyCIL T = 2
_DER: dict[str, Param] = {
    "lr": _LR, "init_lr": _LR, "weight_decay": _WD, "init_weight_decay": _WD, "memory_size": _MEMORY,
    "alpha_aux": Float(0.0, 2.0),  # exps/memo.json / DER: 1.0
}
_MEMO: dict[str, Param] = {
    **_DER,
    # Which blocks are shared: the end of the stem or of a stage (MEMO Fig. 3 studies every split;
    # the paper's choice shares up to layer2 of ResNet-32, i.e. "layer2").
    "split_after": Choice(("stem", "layer1", "layer2")),
    "train_base": Choice((True, False)),  # exps/memo.json: true for B0, false for B50
    "backbone": Choice(("resnet20", "resnet32")),  # depth: MEMO's CIFAR backbone is ResNet-32
}
_BMKP: dict[str, Param] = {
    "gamma": Float(0.80, 0.999),  # paper Sec. 6.1: 0.96
    "gamma_first": Float(0.80, 0.999),  # main.py threshold_first
    "max_rank": Int(4, 160, log=True),  # up to C_out = 8 * nf of the widest layer (nf = 20)
    "lam": Float(0.1, 100.0, log=True),  # paper Sec. 6.1: 10
    "lr": Float(0.005, 0.2, log=True),  # paper: 0.05 (0.03 on Tiny-ImageNet)
    "width": Int(8, 32),  # nf: paper 20
    "epochs": Int(1, 50),  # paper 50
}

SPACES: Mapping[str, Mapping[str, Param]] = MappingProxyType({
    "finetune": MappingProxyType(_FINETUNE),
    "replay": MappingProxyType(_REPLAY),
    "icarl": MappingProxyType(_ICARL),
    "der": MappingProxyType(_DER),
    "memo": MappingProxyType(_MEMO),
    "bmkp": MappingProxyType(_BMKP),
})


def default_space(method: str) -> dict[str, Param]:
    """A copy of ``method``'s default space ({} for methods without one, e.g. joint)."""
    return dict(SPACES.get(method, {}))
