"""Batched tensor augmentation (incremental/augment.py): every output is checked against the input pixels."""

from __future__ import annotations

import pytest
import torch

from incsweep.core.errors import ConfigError
from incsweep.incremental.augment import AUGMENTATIONS, AugmentConfig, Augmenter
from incsweep.incremental.benchmarks import BENCHMARKS
from incsweep.incremental.image_sets import ImageView

CPU = torch.device("cpu")


def _images(n: int = 32, c: int = 3, h: int = 8, w: int = 8) -> torch.Tensor:
    """uint8 images with distinct, non-zero pixels inside each channel, so any crop or flip is recognisable."""
    base = torch.arange(1, h * w + 1, dtype=torch.int64).view(1, 1, h, w) * 3 % 251 + 1
    shift = torch.arange(n).view(n, 1, 1, 1) + 7 * torch.arange(c).view(1, c, 1, 1)
    return ((base + shift) % 254 + 1).to(torch.uint8)


def _raw(aug: AugmentConfig) -> Augmenter:
    """Mean 0, std 1: outputs are pixel/255, so 255 * output gives the augmented pixels back."""
    return Augmenter(aug, (0.0,), (1.0,), CPU)


def _pixels(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.int64)


def test_normalize_values_and_dtypes():
    aug = Augmenter(AugmentConfig(), (0.5, 0.25, 0.0), (0.25, 0.5, 1.0), CPU)
    x = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).repeat(1, 3, 1, 1)
    out = aug.normalize(x)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 1, 2)
    assert out[0, :, 0, 0].tolist() == [-2.0, -0.5, 0.0]  # (0 - mean) / std
    assert out[0, :, 0, 1].tolist() == [2.0, 1.5, 1.0]  # (1 - mean) / std
    assert torch.equal(aug.normalize(x.float() / 255), out)  # [0, 1] floats are accepted as they are


def test_train_shapes_dtypes_and_no_augmentation_is_normalize():
    x = _images()
    for name, cfg in AUGMENTATIONS.items():
        view = ImageView(size=x.shape[-1], resize=x.shape[-1] + 1) if cfg.resized_crop else None  # an image set's
        out = Augmenter(cfg, (0.5,) * 3, (0.25,) * 3, CPU, view=view).train(x, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == torch.float32, name
    none = Augmenter(AUGMENTATIONS["none"], (0.5,), (0.25,), CPU)
    assert torch.equal(none.train(x, torch.Generator()), none.normalize(x))
    assert x.dtype == torch.uint8 and torch.equal(x, _images())  # the input batch is left untouched


@pytest.mark.parametrize("pad", [2, 4])
def test_random_crop_is_a_window_of_the_zero_padded_image(pad):
    x = _images(n=64)
    out = _pixels(_raw(AugmentConfig(crop_pad=pad)).train(x, torch.Generator().manual_seed(1)))
    padded = torch.nn.functional.pad(x.to(torch.int64), (pad,) * 4)
    offsets = set()
    for i in range(len(x)):
        found = [(oy, ox) for oy in range(2 * pad + 1) for ox in range(2 * pad + 1)
                 if torch.equal(out[i], padded[i, :, oy:oy + 8, ox:ox + 8])]
        assert len(found) == 1, f"sample {i} is not one window of its padded image"
        offsets.add(found[0])
    # offsets stay inside [0, 2*pad] (checked above) and are drawn, not fixed: most of the grid appears
    assert len(offsets) > (2 * pad + 1) ** 2 // 2
    assert any(oy in (0, 2 * pad) or ox in (0, 2 * pad) for oy, ox in offsets)  # the extreme shifts occur


@pytest.mark.parametrize("pad", [1, 4])
def test_crop_and_flip_in_one_gather_equal_crop_then_flip(pad):
    """The fused gather draws what crop-then-flip draws, in the same order, and yields the same pixels."""
    x = _images(n=64)
    out = _raw(AugmentConfig(crop_pad=pad, flip=True)).train(x, torch.Generator().manual_seed(3))
    gen = torch.Generator().manual_seed(3)
    oy = torch.randint(0, 2 * pad + 1, (64,), generator=gen)
    ox = torch.randint(0, 2 * pad + 1, (64,), generator=gen)
    flip = torch.rand(64, generator=gen) < 0.5
    padded = torch.nn.functional.pad(x, (pad,) * 4)
    crops = torch.stack([padded[i, :, oy[i]:oy[i] + 8, ox[i]:ox[i] + 8] for i in range(64)])
    want = torch.where(flip[:, None, None, None], crops.flip(3), crops)
    assert 10 < int(flip.sum()) < 54
    assert torch.equal(out, _raw(AugmentConfig()).train(want, torch.Generator()))


def test_flip_really_flips_about_half_of_the_batch():
    x = _images(n=200)
    out = _pixels(_raw(AugmentConfig(flip=True)).train(x, torch.Generator().manual_seed(2)))
    same = torch.tensor([torch.equal(o, i.long()) for o, i in zip(out, x)])
    flipped = torch.tensor([torch.equal(o, i.long().flip(2)) for o, i in zip(out, x)])
    assert torch.all(same ^ flipped)  # each image is either itself or its mirror image, never both
    assert 70 < int(flipped.sum()) < 130  # p = 0.5: 100 +- 4 standard deviations
    assert torch.equal(out[flipped][:, :, :, 0], x[flipped][:, :, :, -1].long())  # left column <- right column


def test_brightness_scales_each_image_within_its_range():
    b = 63 / 255  # MEMO/PyCIL's ColorJitter(brightness=63/255)
    x = _images(n=100)
    out = _raw(AugmentConfig(brightness=b)).train(x, torch.Generator().manual_seed(3))
    ratio = out / (x.float() / 255)
    unclamped = out < 1.0
    factors = torch.stack([r[u].mean() for r, u in zip(ratio, unclamped)])
    for r, u, f in zip(ratio, unclamped, factors):
        assert torch.allclose(r[u], f.expand_as(r[u]), atol=1e-5)  # one factor per image
    assert torch.all(factors >= 1 - b - 1e-6) and torch.all(factors <= 1 + b + 1e-6)
    assert factors.std() > 0.1  # drawn per image
    assert out.max() <= 1.0 and out.min() >= 0.0  # clamped like an image before normalising


def test_augmentation_is_deterministic_under_a_generator():
    x = _images(n=48)
    aug = Augmenter(AUGMENTATIONS["cifar_memo"], (0.5,) * 3, (0.25,) * 3, CPU)
    a = aug.train(x, torch.Generator().manual_seed(7))
    b = aug.train(x, torch.Generator().manual_seed(7))
    c = aug.train(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(0)
    d = aug.train(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, d)  # the global RNG plays no part


def test_every_benchmark_names_a_registered_augmentation_and_configs_are_validated():
    assert {s.augmentation for s in BENCHMARKS.values()} <= set(AUGMENTATIONS)
    assert not AUGMENTATIONS["fmnist"].flip and AUGMENTATIONS["cifar"].crop_pad == 4
    with pytest.raises(ConfigError, match="crop_pad=17"):
        AugmentConfig(crop_pad=17)
    with pytest.raises(ConfigError, match="brightness"):
        AugmentConfig(brightness=1.5)
