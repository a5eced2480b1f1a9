"""Process-wide state a run must set (torch threads, cuDNN flags, the global RNGs), scoped to the
run: whatever the caller had is back when the run returns or raises."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np
import torch

__all__ = ["run_process_state", "scoped_global_rng"]


@contextmanager
def run_process_state(threads: int | None, device: torch.device) -> Iterator[None]:
    """Set ``threads`` torch threads (None: leave them) and, on CUDA, deterministic cuDNN kernels
    (same config + seed -> same metrics on the same device: docs/engine.md, "Determinism"); the global torch
    and numpy RNGs may be reseeded inside. All of it is restored on exit."""
    saved_threads = torch.get_num_threads()
    saved_cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    saved_torch_rng = torch.get_rng_state()
    saved_numpy_rng = np.random.get_state()
    saved_cuda_rng = torch.cuda.get_rng_state_all() if device.type == "cuda" and torch.cuda.is_initialized() else None
    try:
        if threads is not None and threads != saved_threads:
            torch.set_num_threads(threads)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        yield
    finally:
        if torch.get_num_threads() != saved_threads:
            torch.set_num_threads(saved_threads)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved_cudnn
        torch.set_rng_state(saved_torch_rng)
        np.random.set_state(saved_numpy_rng)
        if saved_cuda_rng is not None:
            torch.cuda.set_rng_state_all(saved_cuda_rng)


@contextmanager
def scoped_global_rng(device: torch.device) -> Iterator[None]:
    """The global torch (CPU, and ``device``'s when CUDA) and numpy RNGs as they were, on exit."""
    cuda = [device.index or 0] if device.type == "cuda" and torch.cuda.is_initialized() else []
    numpy_state = np.random.get_state()
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
