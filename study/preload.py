"""Imports that Tune makes when a study's ``fit`` starts, made aside while Ray starts instead.

``tune.run`` records which callbacks a run uses (``ray.air._internal.usage.tag_callbacks``, called
whenever callbacks are given, as a study always does), and to tell Ray's own callbacks from a
user's it imports Ray's MLflow, W&B, Comet and Aim integrations: those import MLflow and W&B
wherever they are installed (incsweep's ``trackers`` extra), whether or not the study uses them.
Tune's default TensorBoard logger then imports tensorboardX. On the 2-core CI machine that was
2.4 s of the driver's time between Ray's start-up and the first trial (a py-spy profile of
``incsweep study resume``, docs/cluster.md §8). Ray's start-up is mostly the driver
waiting for its GCS and raylet processes, so these imports run in a thread meanwhile and the same
imports in ``fit`` find the modules loaded.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

log = logging.getLogger(__name__)

__all__ = ["TUNE_FIT_IMPORTS", "imported_aside"]

# What tune.run imports before its first trial (Ray 2.60: ray/air/_internal/usage.py _count_callbacks,
# ray/tune/logger/tensorboardx.py); a name missing from another Ray version only costs nothing.
TUNE_FIT_IMPORTS = ("ray.air.integrations.mlflow", "ray.air.integrations.wandb", "ray.air.integrations.comet",
                    "ray.tune.logger.aim", "tensorboardX")


def _import_all(modules: Sequence[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - Tune makes the same import later, where its error counts
            log.debug("importing %s aside failed (%s: %s); Tune will import it itself", name, type(exc).__name__, exc)


@contextmanager
def imported_aside(modules: Sequence[str] = TUNE_FIT_IMPORTS) -> Iterator[None]:
    """Import ``modules`` in a background thread while the block runs; the block's end waits for it,
    so no import is still running when the block's caller goes on (or exits on an error)."""
    thread = threading.Thread(target=_import_all, args=(tuple(modules),), name="incsweep-preload", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
