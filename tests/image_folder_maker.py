"""Writes learnable image folders in ImageNet's on-disk layout, for tests and benchmarks/image_stream.py.

Each class is a smooth random colour prototype (8 x 8 upsampled); an image is its class's
prototype at a random size and aspect, plus noise, saved as a JPEG (or PNG). Real JPEG decoding,
mixed sizes and greyscale files: what ImageNet's folders hold, at any scale the caller asks for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np


def write_image(path: Path, proto: np.ndarray, size: tuple[int, int], rng: np.random.Generator, *,
                grey: bool = False) -> None:
    """``proto`` (8 x 8 x 3 in [0, 1]) resized to ``size`` (w, h) with noise, written to ``path``."""
    from PIL import Image

    w, h = size
    base = Image.fromarray((proto * 255).astype(np.uint8)).resize((w, h), Image.BILINEAR)
    pixels = np.asarray(base, dtype=np.float32) * 0.75 + rng.uniform(0, 64, (h, w, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if grey:
        img = img.convert("L")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, quality=90) if path.suffix.lower() in (".jpeg", ".jpg") else img.save(path)


def write_folder(root: Path, classes: Sequence[str], *, train_per_class: int, test_per_class: int,
                 split_dirs: tuple[str, str] = ("train", "val"), sizes: tuple[int, int] = (40, 96), seed: int = 0,
                 suffix: str = ".JPEG", grey_every: int = 0) -> Path:
    """``root/<split>/<class>/<class>_<k><suffix>`` for both splits, side lengths drawn in ``sizes``;
    every ``grey_every``-th image (if set) is greyscale, as a few hundred ImageNet images are."""
    rng = np.random.default_rng(seed)
    protos = rng.uniform(0, 1, (len(classes), 8, 8, 3))
    k = 0
    for split, per_class in zip(split_dirs, (train_per_class, test_per_class)):
        for c, name in enumerate(classes):
            for i in range(per_class):
                w, h = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
                k += 1
                write_image(root / split / name / f"{name}_{split}_{i}{suffix}", protos[c], (w, h), rng,
                            grey=bool(grey_every) and k % grey_every == 0)
    return root
