"""Ray's W&B logger callback with a ``__del__`` that tolerates interpreter exit. Ray's own looks up
``ray.is_initialized`` when module globals may already be gone and prints a traceback after every
study (ray/air/integrations/wandb.py, Ray 2.60). A module of its own: importing it imports wandb,
which only studies with ``callbacks: [wandb]`` pay for; module level, so Tune can pickle it."""

from __future__ import annotations

from ray.air.integrations.wandb import WandbLoggerCallback

__all__ = ["QuietWandbLoggerCallback"]


class QuietWandbLoggerCallback(WandbLoggerCallback):
    def __del__(self) -> None:
        try:
            super().__del__()
        except (AttributeError, TypeError):  # ray's module attributes are None during interpreter shutdown
            pass
