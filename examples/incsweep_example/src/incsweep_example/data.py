"""``toy-shapes``: six classes of drawn shapes (16x16 greyscale), shipped as an ``.npz`` in this
package and registered as an incsweep benchmark. ``make_toy_shapes`` writes the file (it is
deterministic: the committed file is its output with seed 0)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from incsweep.incremental.api import BenchmarkSpec, npz_benchmark

DATA_FILE = Path(__file__).parent / "data" / "toy_shapes.npz"
SHAPES = ("disc", "square", "cross", "hbar", "vbar", "ring")
SIZE = 16


def _draw(kind: str, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    cy, cx = rng.uniform(5, SIZE - 5, size=2)
    r = rng.uniform(3.0, 4.5)
    d = np.hypot(yy - cy, xx - cx)
    mask = {
        "disc": d <= r,
        "square": (abs(yy - cy) <= r * 0.8) & (abs(xx - cx) <= r * 0.8),
        "cross": ((abs(yy - cy) <= 1) & (abs(xx - cx) <= r)) | ((abs(xx - cx) <= 1) & (abs(yy - cy) <= r)),
        "hbar": (abs(yy - cy) <= 1.2) & (abs(xx - cx) <= r + 1),
        "vbar": (abs(xx - cx) <= 1.2) & (abs(yy - cy) <= r + 1),
        "ring": (d <= r) & (d >= r - 1.5),
    }[kind]
    img = mask * rng.uniform(0.6, 1.0) + rng.normal(0.0, 0.12, size=(SIZE, SIZE))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def make_toy_shapes(path: Path = DATA_FILE, *, train_per_class: int = 80, test_per_class: int = 20,
                    seed: int = 0) -> Path:
    """Write the toy-shapes ``.npz`` (x_* uint8 N x 16 x 16, y_* int64)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        y = np.repeat(np.arange(len(SHAPES)), n)
        arrays[f"x_{split}"] = np.stack([_draw(SHAPES[c], rng) for c in y])
        arrays[f"y_{split}"] = y.astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def toy_shapes() -> BenchmarkSpec:
    """The entry point: the spec (classes, shape, statistics, fingerprint) comes from the file."""
    return npz_benchmark(DATA_FILE)


if __name__ == "__main__":
    print(make_toy_shapes())
