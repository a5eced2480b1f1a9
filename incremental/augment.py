"""Batched augmentation on uint8 tensors, on the run's device: no PIL, no DataLoader workers.

Per-sample randomness comes from an explicit ``torch.Generator`` so runs are reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from incsweep.core.configs import spec, validate
from incsweep.core.errors import ConfigError
from incsweep.incremental.image_sets import ImageSet, ImageView, TensorImages, as_tensor

__all__ = ["AugmentConfig", "AUGMENTATIONS", "Augmenter", "check_policy"]


@dataclass(frozen=True)
class AugmentConfig:
    crop_pad: int = spec(0, range=(0, 16))  # random crop with zero padding (CIFAR: 4)
    flip: bool = False  # random horizontal flip
    brightness: float = spec(0.0, range=(0.0, 1.0))  # ColorJitter brightness factor range [1-b, 1+b]
    # torchvision's RandomResizedCrop from the original image: only image-set benchmarks have one
    # (seq-imagenet100, image folders of mixed sizes), so only they take it; their loader makes the
    # crop and the flip (image_sets.py), the augmenter the brightness.
    resized_crop: bool = False

    def __post_init__(self) -> None:
        validate(self)
        if self.resized_crop and self.crop_pad:
            raise ConfigError("AugmentConfig: resized_crop and crop_pad both set; allowed: one of them")


# One explicit registry: the train-time augmentation of each benchmark (docs/protocols.md).
AUGMENTATIONS: dict[str, AugmentConfig] = {
    "cifar": AugmentConfig(crop_pad=4, flip=True),
    "cifar_memo": AugmentConfig(crop_pad=4, flip=True, brightness=63 / 255),  # MEMO/PyCIL add jitter
    "tinyimagenet": AugmentConfig(crop_pad=8, flip=True),  # 64x64: mammoth pads 4 at 32 -> 8 at 64
    "fmnist": AugmentConfig(crop_pad=2),  # no flip: several classes are left/right asymmetric
    # PyCIL's ImageNet-100 transforms (utils/data.py): RandomResizedCrop(224), flip, brightness 63/255
    "imagenet": AugmentConfig(resized_crop=True, flip=True, brightness=63 / 255),
    "none": AugmentConfig(),
}


def check_policy(config: AugmentConfig, view: ImageView | None, name: str = "this augmentation policy") -> None:
    """Refuse a policy the benchmark's images cannot take (resized crops need the originals an image
    set keeps; an image set is never zero-padded)."""
    fits_sets = sorted(k for k, c in AUGMENTATIONS.items() if not c.crop_pad)
    fits_tensors = sorted(k for k, c in AUGMENTATIONS.items() if not c.resized_crop)
    if config.resized_crop and view is None:
        raise ConfigError(f"{name} takes a random resized crop of the original image, which only image-set "
                          f"benchmarks keep (seq-imagenet100, image folders of mixed sizes); allowed here: {fits_tensors}")
    if view is not None and config.crop_pad:
        raise ConfigError(f"{name} pads and crops (crop_pad={config.crop_pad}); an image-set benchmark takes resized "
                          f"crops instead; allowed: {fits_sets}")


class Augmenter:
    """Turns uint8 batches into normalised float batches, with train-time augmentation."""

    def __init__(self, config: AugmentConfig, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                 *, compile_step: bool = False, bf16: bool = False, view: ImageView | None = None):
        check_policy(config, view)
        self.view = view  # an image-set benchmark's view (image_sets.py): its loader crops and flips
        self.config = config
        self.bf16 = bf16
        self.device = torch.device(device)
        self.compile_step = compile_step
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (or [0,1] float) batch -> normalised float32 on the device (an ImageSet: its
        evaluation views, decoded here)."""
        x = as_tensor(x).to(self.device, non_blocking=True)
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        return self._layout((x - self._mean) / self._std)

    def train(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Random crop/flip/brightness on a uint8 batch, then normalise. Under a resized-crop policy
        the batch is cropped as an image set's batch is (image_sets.py), from a seed drawn from ``gen``."""
        cfg = self.config
        if cfg.resized_crop:
            seed = int(torch.randint(0, 2**62, (1,), generator=gen, device=gen.device))
            batch = torch.arange(len(x))
            cropped = next(self.image_set(x).train_batches([batch], [seed], crop=True, flip=cfg.flip, workers=0))
            return self.finish(cropped, gen)
        x = x.to(self.device, non_blocking=True)
        n, _, h, w = x.shape
        p = cfg.crop_pad
        if p:  # draws first, in a fixed order (crop offsets, flips, brightness): resume and cache rely on it
            oy = torch.randint(0, 2 * p + 1, (n,), generator=gen, device=gen.device).to(self.device)
            ox = torch.randint(0, 2 * p + 1, (n,), generator=gen, device=gen.device).to(self.device)
        flip = (torch.rand(n, generator=gen, device=gen.device) < 0.5).to(self.device) if cfg.flip else None
        if p:
            padded = torch.nn.functional.pad(x, (p, p, p, p))
            span = torch.arange(w, device=self.device)
            if flip is not None:
                # The flip is folded into the crop's gather (mirrored column indices): one pass over
                # the batch instead of a flipped copy plus a select. Same draws, same pixels as
                # crop-then-flip; a CIFAR batch of 128 augments in 0.80-0.84x the time on CPU and
                # 0.92-0.96x on an H100 (docs/gpu.md).
                span = torch.where(flip[:, None], w - 1 - span, span)
            rows = (oy[:, None] + torch.arange(h, device=self.device))[:, None, :, None]
            cols = (ox[:, None] + span)[:, None, None, :]
            batch = torch.arange(n, device=self.device)[:, None, None, None]
            chan = torch.arange(x.shape[1], device=self.device)[None, :, None, None]
            x = padded[batch, chan, rows, cols]
        elif flip is not None:
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return self.finish(x, gen)

    def finish(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Brightness jitter and normalisation of a uint8 batch already cropped and flipped (by
        ``train``, or by an image set's loader)."""
        cfg = self.config
        x = x.to(self.device, non_blocking=True)
        n = len(x)
        xf = x.float().div_(255.0)
        if cfg.brightness:
            b = cfg.brightness
            factor = (1 - b) + 2 * b * torch.rand(n, generator=gen, device=gen.device).to(self.device)
            xf = (xf * factor[:, None, None, None]).clamp_(0.0, 1.0)
        return self._layout((xf - self._mean) / self._std)

    def image_set(self, x: torch.Tensor | ImageSet) -> ImageSet:
        """``x`` as an image set of this benchmark's view (a tensor of evaluation views: stored exemplars)."""
        if isinstance(x, ImageSet):
            return x
        assert self.view is not None, "only image-set benchmarks have a view"
        return ImageSet.of(TensorImages(x), self.view)

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        # CUDA: channels_last lets cuDNN pick its NHWC kernels (tensor cores under bf16). CPU: NCHW.
        # NHWC made CPU trials 1.12-1.19x faster here (benchmarks/results/trial_layout.txt), but
        # torch 2.14.1's CPU backward of a 1x1 stride-2 convolution with 4 input channels on NHWC
        # input corrupts the heap (reduced ResNet-18 at width 4 aborts; repro in that file).
        return x.contiguous(memory_format=torch.channels_last) if self.device.type == "cuda" and x.dim() == 4 else x

    def step_loss(self, loss_fn):
        """``loss_fn`` under ``torch.compile`` when the run asked for it (``RunConfig.compile``), else as is."""
        if not self.compile_step:
            return loss_fn
        # Every fit compiles its own closure (a new network or head per task). Dropping the previous
        # fit's graphs keeps them from piling up and from reaching dynamo's per-function recompile
        # limit (8), past which it would silently fall back to eager.
        torch.compiler.reset()
        return torch.compile(loss_fn)

    def autocast(self) -> torch.autocast:
        """bf16 autocast when the run asked for it (CUDA only; no loss scaling needed, unlike fp16), else a no-op."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)
