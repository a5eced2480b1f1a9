"""DER (Yan et al., "Dynamically Expandable Representation", CVPR 2021) as PyCIL trains it: a whole new
backbone per task (initialised from the previous one), old ones frozen, a classifier over all
features, the auxiliary head and weight aligning. Like PyCIL, without DER's channel masking and
pruning. It is MEMO with nothing shared (memo.md: "k = 0 is essentially DER"); here not even the
stem is shared, so DER holds exactly T backbones and the aligned budget gives it exactly 2,000 exemplars.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from incsweep.incremental.backbones import Backbone
from incsweep.incremental.methods.memo import EXPANSION_SPACE, MEMO, ExpansionConfig

__all__ = ["DERConfig", "DER"]


@dataclass(frozen=True)
class DERConfig(ExpansionConfig):
    """DER's fields: MEMO's without a split. Its schedule defaults are PyCIL's models/der.py constants,
    the same numbers as MEMO's (init 200 epochs, lr 0.1, wd 5e-4, 60/120/170; later 170, wd 2e-4, 80/120/150)."""


class DER(MEMO[DERConfig]):
    config_cls = DERConfig
    search_space = EXPANSION_SPACE  # MEMO's fields without the split: DER shares nothing
    split_fields: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def n_shared(cls, config: ExpansionConfig, backbone: Backbone) -> int | None:
        return None  # every task owns a whole backbone

    def trains_shared(self, task_index: int) -> bool:
        return False  # there is no shared part
