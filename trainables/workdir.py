"""A trial's scratch directory (its run checkpoint between reports), and the sweep of orphaned ones.

Why a sweep: a trial whose process is killed (the driver killed with its embedded Ray, a node lost,
Ray shut down under a running trial) never runs the cleanup of ``run_trial``'s
``TemporaryDirectory``, and each left-behind directory holds a full run checkpoint (model and
exemplars: megabytes on CIFAR); a kill -9 and resume left 3 in /tmp (docs/ray-optuna.md, trap 12).
The directory names carry the trial process's pid; a directory whose process is gone is removed
by the next trial that starts on that machine and, on an embedded Ray, by the study when it ends.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

__all__ = ["WORKDIR_PREFIX", "trial_workdir", "sweep_orphaned_workdirs", "workdir_pid", "process_alive"]

log = logging.getLogger(__name__)

WORKDIR_PREFIX = "incsweep-trial-"
_NAME = re.compile(re.escape(WORKDIR_PREFIX) + r"(\d+)-")


def trial_workdir() -> tempfile.TemporaryDirectory:
    """A fresh scratch directory named after this process (orphans of dead trials swept first)."""
    sweep_orphaned_workdirs()
    return tempfile.TemporaryDirectory(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-")


def workdir_pid(path: str | os.PathLike) -> int | None:
    """The pid a trial scratch directory is named after (None: not one of ours, or an older name)."""
    m = _NAME.match(Path(path).name)
    return int(m.group(1)) if m else None


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (POSIX: signal 0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_orphaned_workdirs(root: str | os.PathLike | None = None, *, wait_s: float = 0.0) -> list[Path]:
    """Remove trial scratch directories under ``root`` (the temporary directory) whose process has
    exited; ``wait_s``: wait up to this long for live owners to exit (a study that has just shut
    its Ray down). Returns what was removed. POSIX only (elsewhere: nothing is removed)."""
    if os.name != "posix":
        return []
    base = Path(root) if root is not None else Path(tempfile.gettempdir())
    deadline = time.monotonic() + wait_s
    removed: list[Path] = []
    while True:
        pending = []
        for path in base.glob(f"{WORKDIR_PREFIX}*"):
            pid = workdir_pid(path)
            if pid is None or not path.is_dir():
                continue  # not ours (or written by an older incsweep without a pid: left alone)
            if process_alive(pid):
                pending.append(path)
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    if removed:
        log.info("removed %d scratch director%s of stopped trials", len(removed), "y" if len(removed) == 1 else "ies")
    return removed
