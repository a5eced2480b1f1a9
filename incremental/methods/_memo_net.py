"""MEMO's split network (memo.md): generalized blocks G shared by every task, one copy of the
specialized blocks S_i per task, a classifier over the concatenated features [S_0(G(x)), ...,
S_b(G(x))] and a training-time auxiliary head on the newest copy's features.

Any backbone of ``backbones.BACKBONES`` that exposes ``stem`` and ``blocks`` can be split: the stem
and the first k blocks form G, the remaining blocks (plus the global pool) form S. With nothing
shared (DER) every task owns a whole backbone, stem included.
"""

from __future__ import annotations

import copy
import math
from typing import cast

import torch
from torch import nn

from incsweep.core.errors import ConfigError
from incsweep.incremental.backbones import Backbone, count_params
from incsweep.incremental.memory import module_bytes

__all__ = ["stage_ends", "split_points", "resolve_shared", "Specialized", "SplitNet", "split_sizes"]


def stage_ends(backbone: Backbone) -> tuple[int, ...]:
    """Block index at which each stage ends (a stage: consecutive blocks of one output width)."""
    try:
        widths = [cast(nn.Conv2d, block.conv1).out_channels for block in backbone.blocks]
    except AttributeError:
        raise ConfigError(f"backbone {type(backbone).__name__} exposes no residual blocks with conv1; "
                          "MEMO/DER need a backbone with .stem and .blocks") from None
    return tuple(i for i in range(1, len(widths)) if widths[i] != widths[i - 1]) + (len(widths),)


def split_points(backbone: Backbone) -> dict[str, int]:
    """Named split points -> shared block count: "stem" (0) and "layerI" = after the I-th stage.

    ResNet-32: layer1 -> 5, layer2 -> 10; ResNet-18: layer1/2/3 -> 2/4/6 (the last stage is never
    shared: every task needs at least one block of its own).
    """
    ends = stage_ends(backbone)
    return {"stem": 0, **{f"layer{i + 1}": end for i, end in enumerate(ends[:-1])}}


def resolve_shared(backbone: Backbone, backbone_name: str, shared_blocks: int | None, split_after: str | None) -> int:
    """The number k of residual blocks in G, validated against the backbone.

    Neither given: the paper's default, everything but the last stage shared (k = 10 on ResNet-32,
    layer4 specialized on ResNet-18; memo.md).
    """
    n_blocks = len(backbone.blocks)
    points = split_points(backbone)
    if shared_blocks is not None and split_after is not None:
        raise ConfigError(f"set shared_blocks ({shared_blocks}) or split_after ({split_after!r}), not both")
    if split_after is not None:
        if split_after not in points:
            raise ConfigError(f"split_after={split_after!r} is not a split point of {backbone_name}; "
                              f"allowed: {sorted(points)}")
        return points[split_after]
    if shared_blocks is None:
        return max(points.values())
    if not 0 <= shared_blocks < n_blocks:
        raise ConfigError(f"shared_blocks={shared_blocks} does not fit {backbone_name}, which has {n_blocks} residual "
                          f"blocks; allowed 0..{n_blocks - 1} (every task keeps at least one block of its own)")
    return shared_blocks


class Specialized(nn.Module):
    """One task's specialized part: (its own stem, when nothing is shared) + the deep blocks + global pool."""

    def __init__(self, stem: nn.Module | None, blocks: list[nn.Module]):
        super().__init__()
        self.stem = stem if stem is not None else nn.Identity()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def _linear(in_features: int, out_features: int, device: torch.device) -> nn.Linear:
    # PyCIL's SimpleLinear: kaiming-uniform weights (linear gain), zero bias.
    fc = nn.Linear(in_features, out_features, device=device)
    nn.init.kaiming_uniform_(fc.weight, nonlinearity="linear")
    nn.init.zeros_(fc.bias)
    return fc


class SplitNet(nn.Module):
    """G + [S_0, ..., S_b] + classifier; ``n_shared=None`` shares nothing, not even the stem (DER)."""

    def __init__(self, backbone: Backbone, n_shared: int | None):
        super().__init__()
        blocks = list(backbone.blocks)
        if n_shared is None:
            self.shared = nn.Sequential()  # identity, no parameters
            first = Specialized(backbone.stem, blocks)
        else:
            self.shared = nn.Sequential(backbone.stem, *blocks[:n_shared])
            first = Specialized(None, blocks[n_shared:])
        # S_0 exists from the start (it is the backbone's own deep part, initialised as the backbone is);
        # the first grow() uses it, later ones copy the newest one.
        self.specialized = nn.ModuleList([first])
        self.out_dim = backbone.out_dim
        self.classifier: nn.Linear | None = None
        self.aux: nn.Linear | None = None  # training-time only: (new classes + 1) outputs

    @property
    def n_tasks(self) -> int:
        return 0 if self.classifier is None else len(self.specialized)

    @property
    def n_classes(self) -> int:
        return 0 if self.classifier is None else self.classifier.out_features

    def grow(self, n_new: int, with_aux: bool) -> None:
        """Start a task: a new specialized copy initialised from the newest one (PyCIL: S_b <- S_{b-1}),
        the classifier widened and lengthened with old weights in the old-rows x old-columns block
        (the rest freshly initialised, as PyCIL does), and a fresh auxiliary head if asked."""
        device = next(self.specialized[0].parameters()).device
        if self.classifier is not None:
            self.specialized.append(copy.deepcopy(self.specialized[-1]))
        old = self.classifier
        fc = _linear(len(self.specialized) * self.out_dim, self.n_classes + n_new, device)
        if old is not None:
            with torch.no_grad():
                fc.weight[: old.out_features, : old.in_features] = old.weight
                fc.bias[: old.out_features] = old.bias
        self.classifier = fc
        self.aux = _linear(self.out_dim, n_new + 1, device) if with_aux else None

    def restore_shape(self, n_tasks: int, n_classes: int) -> None:
        """Grow an untrained net to the shape of a saved one (its weights are loaded next)."""
        device = next(self.specialized[0].parameters()).device
        while len(self.specialized) < n_tasks:
            self.specialized.append(copy.deepcopy(self.specialized[-1]))
        self.classifier = _linear(n_tasks * self.out_dim, n_classes, device)
        self.aux = None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        base = self.shared(x)
        return torch.cat([s(base) for s in self.specialized], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.classifier is not None, "SplitNet.grow() before the first forward"
        return self.classifier(self.features(x))

    def freeze(self, train_shared: bool) -> None:
        """Only the newest S (and G if ``train_shared``) and the heads learn; old S_i never change."""
        self.shared.requires_grad_(train_shared)
        for s in self.specialized[:-1]:
            s.requires_grad_(False)
        self.specialized[-1].requires_grad_(True)

    def train_mode(self, train_shared: bool) -> None:
        """Train mode for what learns; frozen parts stay in eval mode, so their BN statistics never move."""
        self.train()
        if not train_shared:
            self.shared.eval()
        for s in self.specialized[:-1]:
            s.eval()

    @torch.no_grad()
    def align_weights(self, n_old: int) -> float:
        """Weight aligning (Zhao et al. 2020; PyCIL): scale new-class rows to the old rows' mean norm."""
        assert self.classifier is not None, "align_weights after grow()"
        w = self.classifier.weight
        if n_old == 0 or n_old >= w.shape[0]:
            return 1.0
        gamma = float(w[:n_old].norm(dim=1).mean() / w[n_old:].norm(dim=1).mean())
        if math.isfinite(gamma):
            w[n_old:] *= gamma
        return gamma

    def stored_bytes(self) -> int:
        """What prediction needs: G, every S_i, the classifier (the auxiliary head is training-time only)."""
        head = module_bytes(self.classifier) if self.classifier is not None else 0
        return module_bytes(self.shared) + sum(module_bytes(s) for s in self.specialized) + head


def split_sizes(backbone: Backbone, n_shared: int | None) -> dict[str, int]:
    """Parameters and bytes of G, of one S and of the whole backbone P (docs/protocols.md's g, s, P)."""
    net = SplitNet(backbone, n_shared)
    s = net.specialized[0]
    return {"shared_params": count_params(net.shared), "specialized_params": count_params(s),
            "backbone_params": count_params(backbone), "shared_bytes": module_bytes(net.shared),
            "specialized_bytes": module_bytes(s)}
