"""The reduced ResNet-18 of BMKP written functionally: conv weights are arguments, so the same
layout runs with the working memory's raw weights or with weights composed from basis and
coefficients, and with any task's BatchNorm set.

Layout as ``incremental.backbones.ReducedResNet18`` (GPM/BMKP): a 3x3 stride-1 stem, four stages
of two BasicBlocks with widths nf, 2nf, 4nf, 8nf, 1x1 conv shortcuts where the shape changes,
bias-free convolutions each followed by a BatchNorm, global average pooling. Every convolution,
the three 1x1 shortcuts included, is one projected layer (20 in all).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ConvLayer", "Block", "Layout", "BNSet", "init_conv_weights", "init_head"]


@dataclass(frozen=True)
class ConvLayer:
    c_in: int
    c_out: int
    kernel: int
    stride: int

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.c_out, self.c_in, self.kernel, self.kernel)

    @property
    def fan_in(self) -> int:
        """D: columns of the weight viewed as a C_out x D matrix."""
        return self.c_in * self.kernel * self.kernel

    @property
    def padding(self) -> int:
        return self.kernel // 2  # 3x3 convs pad 1, 1x1 shortcuts 0 (as in ReducedResNet18)


@dataclass(frozen=True)
class Block:
    """Indices into the layer list of one BasicBlock's convs; ``shortcut`` None is the identity."""

    conv1: int
    conv2: int
    shortcut: int | None


Tap = Callable[[int, torch.Tensor], None]


@dataclass(frozen=True)
class Layout:
    layers: tuple[ConvLayer, ...]
    blocks: tuple[Block, ...]
    out_dim: int

    @classmethod
    def reduced_resnet18(cls, nf: int, in_channels: int) -> "Layout":
        layers = [ConvLayer(in_channels, nf, 3, 1)]
        blocks, in_planes = [], nf
        for stage, mult in enumerate((1, 2, 4, 8)):
            for i in range(2):
                stride = 2 if stage > 0 and i == 0 else 1
                planes = nf * mult
                c1 = len(layers)
                layers += [ConvLayer(in_planes, planes, 3, stride), ConvLayer(planes, planes, 3, 1)]
                sc = None
                if stride != 1 or in_planes != planes:
                    sc = len(layers)
                    layers.append(ConvLayer(in_planes, planes, 1, stride))
                blocks.append(Block(c1, c1 + 1, sc))
                in_planes = planes
        return cls(tuple(layers), tuple(blocks), in_planes)

    def conv(self, i: int, x: torch.Tensor, weights: Sequence[torch.Tensor], tap: Tap | None) -> torch.Tensor:
        layer = self.layers[i]
        z = F.conv2d(x, weights[i], None, layer.stride, layer.padding)
        if tap is not None:
            tap(i, z)  # the pre-BN output: what knowledge projection decomposes
        return z

    def features(self, x: torch.Tensor, weights: Sequence[torch.Tensor], bns: "BNSet", tap: Tap | None = None) -> torch.Tensor:
        """Pooled features of ``x`` with the given conv weights and BatchNorm set."""
        bn = bns.bns
        h = F.relu(bn[0](self.conv(0, x, weights, tap)))
        for b in self.blocks:
            out = F.relu(bn[b.conv1](self.conv(b.conv1, h, weights, tap)))
            out = bn[b.conv2](self.conv(b.conv2, out, weights, tap))
            short = h if b.shortcut is None else bn[b.shortcut](self.conv(b.shortcut, h, weights, tap))
            h = F.relu(out + short)
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)


class BNSet(nn.Module):
    """One task's BatchNorm layers, one per conv layer (weight, bias, running mean and variance)."""

    def __init__(self, layout: Layout):
        super().__init__()
        self.bns = nn.ModuleList(nn.BatchNorm2d(layer.c_out) for layer in layout.layers)


def init_conv_weights(layout: Layout, gen: torch.Generator) -> list[torch.Tensor]:
    """Kaiming-normal (fan_out, ReLU) conv weights, as ``backbones._init_weights`` gives ReducedResNet18."""
    out = []
    for layer in layout.layers:
        w = torch.empty(layer.shape)
        nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu", generator=gen)
        out.append(w)
    return out


def init_head(in_features: int, n_out: int, gen: torch.Generator) -> nn.Linear:
    """A linear layer with torch's default init (uniform +-1/sqrt(fan_in)), drawn from ``gen``."""
    head = nn.Linear(in_features, n_out)
    bound = 1.0 / math.sqrt(in_features)
    with torch.no_grad():
        head.weight.uniform_(-bound, bound, generator=gen)
        head.bias.uniform_(-bound, bound, generator=gen)
    return head

