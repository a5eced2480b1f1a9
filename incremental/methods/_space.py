"""Search ranges several built-in methods share, and the read-only form every default space takes.

Each built-in method declares its default space in its own file (``Method.search_space``). Ranges
bracket the published settings (the comment on each says which) by a factor of a few, so a study
explores around them; a study spec narrows, widens, fixes or adds any config field.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Mapping

from incsweep.core.params import Float, Int, Param

__all__ = ["SEARCHED_LR", "SEARCHED_WEIGHT_DECAY", "SEARCHED_MEMORY_SIZE", "frozen_space"]

# SGD learning rate: PyCIL uses 0.1 for every CIFAR method and BMKP 0.05 (0.03 on Tiny-ImageNet).
SEARCHED_LR = Float(0.005, 0.5, log=True)
# Weight decay: PyCIL 2e-4 (later tasks) to 5e-4 (first task).
SEARCHED_WEIGHT_DECAY = Float(1e-5, 2e-3, log=True)
# Exemplar count: PyCIL's 2,000 on CIFAR-100; the lower end is a few per class on 10-class benchmarks.
SEARCHED_MEMORY_SIZE = Int(20, 2000, log=True)


def frozen_space(space: dict[str, Param]) -> Mapping[str, Param]:
    """``space``, read-only: a class attribute every study reads must not be changed by one of them."""
    return MappingProxyType(space)
