"""Feature extractors. Each exposes ``out_dim``; the CIFAR ResNets also expose ``stem`` and ``blocks``
(an ordered ModuleList of residual blocks) so that MEMO can split them into shared and per-task parts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

__all__ = ["Backbone", "BACKBONES", "build_backbone", "meta_backbone", "CifarResNet", "ReducedResNet18", "ResNet18",
           "TinyConvNet", "GrowingHead", "count_params"]


class Backbone(nn.Module):
    """A feature extractor: uint8-normalised images -> ``out_dim`` features per image."""

    out_dim: int
    # Residual backbones only (CIFAR ResNets, ResNet-18): what MEMO splits into shared and per-task
    # parts. Others lack them; MEMO's split check turns the AttributeError into a ConfigError.
    stem: nn.Module
    blocks: nn.ModuleList


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class _ShortcutA(nn.Module):
    """Parameter-free downsampling (He et al.'s option A): stride-2 subsample, zero-pad new channels."""

    def __init__(self, in_planes: int, planes: int):
        super().__init__()
        self.extra = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, ::2, ::2]
        pad = self.extra // 2
        return nn.functional.pad(x, (0, 0, 0, 0, pad, self.extra - pad))


class _BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers and a residual shortcut; the subclass says what the shortcut is where the
    shape changes (stride or width) and where it does not."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        reshape = stride != 1 or in_planes != planes
        self.shortcut = self.reshaping_shortcut(in_planes, planes, stride) if reshape else self.same_shortcut()

    def reshaping_shortcut(self, in_planes: int, planes: int, stride: int) -> nn.Module:
        raise NotImplementedError

    def same_shortcut(self) -> nn.Module:
        return nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class CifarBasicBlock(_BasicBlock):
    """The CIFAR ResNets' block (He et al. 2016, option A: a parameter-free subsampling, zero-padded shortcut)."""

    def reshaping_shortcut(self, in_planes: int, planes: int, stride: int) -> nn.Module:
        return _ShortcutA(in_planes, planes)


class CifarStem(nn.Module):
    def __init__(self, in_channels: int, width: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class _StemBlocksPool(Backbone):
    """A stem, a list of residual blocks, global average pooling: ``self.stem`` and ``self.blocks`` are
    the subclass's (MEMO splits ``blocks``)."""

    stem: nn.Module
    blocks: nn.ModuleList

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def _stages(block: type[_BasicBlock], in_planes: int, widths: tuple[int, ...], per_stage: int) -> tuple[nn.ModuleList, int]:
    """``per_stage`` blocks at each width, the first of every stage after the first at stride 2: (blocks, out width)."""
    blocks = []
    for stage, planes in enumerate(widths):
        for i in range(per_stage):
            blocks.append(block(in_planes, planes, 2 if stage > 0 and i == 0 else 1))
            in_planes = planes
    return nn.ModuleList(blocks), in_planes


class CifarResNet(_StemBlocksPool):
    """ResNet-(6n+2) for 32x32 inputs as in MEMO/PyCIL: widths 16/32/64, option-A shortcuts.

    ResNet-32 (n=5) has 463,504 parameters without a classifier (docs/protocols.md anchor).
    """

    def __init__(self, depth: int = 32, in_channels: int = 3, width: int = 16):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CifarResNet depth={depth} must be 6n+2 (14, 20, 26, 32, ...)")
        n = (depth - 2) // 6
        self.stem = CifarStem(in_channels, width)
        self.blocks, self.out_dim = _stages(CifarBasicBlock, width, (width, 2 * width, 4 * width), n)
        _init_weights(self)


class _RBasicBlock(_BasicBlock):
    """BasicBlock of the reduced ResNet-18 (GPM/BMKP): 1x1 conv shortcut where the shape changes."""

    def reshaping_shortcut(self, in_planes: int, planes: int, stride: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def same_shortcut(self) -> nn.Module:
        return nn.Sequential()  # an empty Sequential, as the reference code has (state-dict keys unchanged)


class ReducedResNet18(_StemBlocksPool):
    """Reduced ResNet-18 (Lopez-Paz & Ranzato; GPM; BMKP): 3x3 stride-1 stem, widths nf..8nf."""

    def __init__(self, nf: int = 20, in_channels: int = 3):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, nf, 3, 1, 1, bias=False), nn.BatchNorm2d(nf), nn.ReLU())
        self.blocks, self.out_dim = _stages(_RBasicBlock, nf, (nf, 2 * nf, 4 * nf, 8 * nf), 2)
        _init_weights(self)


class ResNet18(ReducedResNet18):
    """ResNet-18 as torchvision builds it (He et al. 2016; 1x1-conv+BN downsampling shortcuts), without
    the classifier: 11,176,512 parameters at width 64. ``small_stem``: a 3x3 stride-1 stem and no max-pool,
    the usual variant for 32x32/64x64 inputs (PyCIL's resnet18 for CIFAR), i.e. the reduced ResNet-18 at
    nf = 64. ``blocks`` are layer1..layer4, two blocks each (MEMO splits after layer1/2/3).
    """

    def __init__(self, in_channels: int = 3, width: int = 64, small_stem: bool = False):
        super().__init__(nf=width, in_channels=in_channels)
        if not small_stem:  # torchvision: 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool
            self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
                                      nn.ReLU(), nn.MaxPool2d(3, 2, 1))
            _init_weights(self.stem)


class TinyConvNet(_StemBlocksPool):
    """Two conv layers and a pool: for tests and smoke runs, learns synthetic data in seconds."""

    def __init__(self, in_channels: int = 3, width: int = 16):
        super().__init__()
        self.stem = CifarStem(in_channels, width)
        self.blocks = nn.ModuleList([CifarBasicBlock(width, width, 1), CifarBasicBlock(width, 2 * width, 2)])
        self.out_dim = 2 * width
        _init_weights(self)


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class GrowingHead(nn.Module):
    """A linear classifier that grows by whole tasks, keeping old rows (and columns) as they were."""

    def __init__(self, in_features: int, out_features: int = 0):
        super().__init__()
        self.fc = nn.Linear(in_features, max(out_features, 0)) if out_features else None
        self.in_features = in_features

    @property
    def out_features(self) -> int:
        return 0 if self.fc is None else self.fc.out_features

    def expand(self, n_new: int, in_features: int | None = None) -> None:
        """Add ``n_new`` outputs (and widen inputs to ``in_features``); old weights go to the top-left block."""
        new_in = in_features or self.in_features
        fc = nn.Linear(new_in, self.out_features + n_new)
        if self.fc is not None:
            with torch.no_grad():
                fc.weight.zero_()  # old rows on new feature columns start at 0: old logits unchanged
                fc.weight[: self.out_features, : self.in_features] = self.fc.weight
                fc.bias[: self.out_features] = self.fc.bias
        old = self.fc
        self.fc = fc.to(old.weight.device) if old is not None else fc
        self.in_features = new_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.fc is not None, "GrowingHead.expand() before the first forward"
        return self.fc(x)


def _cifar(depth: int) -> Callable[..., Backbone]:
    return lambda in_channels, **kw: CifarResNet(depth, in_channels, **kw)


# One explicit registry; names are what configs and search spaces use.
BACKBONES: dict[str, Callable[..., Backbone]] = {
    "tiny": lambda in_channels, **kw: TinyConvNet(in_channels, **kw),
    "resnet14": _cifar(14),
    "resnet20": _cifar(20),
    "resnet26": _cifar(26),
    "resnet32": _cifar(32),
    "reduced_resnet18": lambda in_channels, **kw: ReducedResNet18(in_channels=in_channels, **kw),
    "resnet18": lambda in_channels, **kw: ResNet18(in_channels, **kw),  # ImageNet stem (7x7/2 + max-pool)
    "resnet18_cifar": lambda in_channels, **kw: ResNet18(in_channels, small_stem=True, **kw),  # 3x3 stem, 32/64 px
}


def build_backbone(name: str, in_channels: int, **kwargs) -> Backbone:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}")
    return BACKBONES[name](in_channels, **kwargs)


class _NoMetaNormalFill(TorchFunctionMode):
    """``normal_`` on a meta tensor returns it at once. Torch runs it through a Python reference
    kernel whose wrapper imports ``torch._dynamo`` on first use: 1.7 s of a study's start-up before
    Ray starts (check_methods builds every method on meta; docs/cluster.md §8), for a fill that writes
    nothing. Shapes, dtypes and the returned tensor are what the kernel would give."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func in _NORMAL_FILLS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


# the in-place normal fills weight initialisers reach: kaiming_normal_ and xavier_normal_ call the
# method; torch.nn.init.normal_ is itself dispatched to a mode before it calls the method
_NORMAL_FILLS: tuple[Any, ...] = (torch.Tensor.normal_, torch.nn.init.normal_)


@contextmanager
def on_meta() -> Iterator[None]:
    """Modules and tensors made in the block are on torch's meta device (shapes, no storage); their
    normal fills are skipped (_NoMetaNormalFill)."""
    with torch.device("meta"), _NoMetaNormalFill():
        yield


def meta_backbone(name: str, in_channels: int, kwargs: dict[str, Any]) -> Backbone:
    """The backbone's structure on torch's meta device: shapes, no storage (for plans and validation)."""
    with on_meta():
        return build_backbone(name, in_channels, **kwargs)
