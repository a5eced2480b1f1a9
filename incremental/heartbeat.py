"""How far training is inside a task (epochs and batches done), for whoever watches a long task.

``fit`` calls ``beat`` after every minibatch; nothing happens unless a caller opened a sink with
``heartbeat_to`` (a study's trial writes a small file its driver reads: trainables/trial.py and
study/sink.py ProgressLog), and then at most once per ``every_s`` seconds. The sink is held in a
context variable, set and reset by ``heartbeat_to``: nothing outlives the block.
"""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

__all__ = ["Beat", "beat", "heartbeat_to", "write_beat", "read_beat"]


@dataclass(frozen=True)
class Beat:
    label: str  # what trains, e.g. "finetune task 2"
    epoch: int  # the epoch under way, 1-based
    epochs: int
    batch: int  # minibatches done in it
    batches: int
    at: float  # time.time() when it was taken


_SINK: ContextVar[Callable[[str, int, int, int, int], None] | None] = ContextVar("incsweep_heartbeat", default=None)


def beat(label: str, epoch: int, epochs: int, batch: int, batches: int) -> None:
    """Training's position; a no-op without a sink (one context-variable read per minibatch)."""
    sink = _SINK.get()
    if sink is not None:
        sink(label, epoch, epochs, batch, batches)


@contextmanager
def heartbeat_to(sink: Callable[[Beat], None], every_s: float = 5.0) -> Iterator[None]:
    """Within the block, hand ``sink`` a Beat at most every ``every_s`` seconds (the first at once)."""
    last = [-float("inf")]

    def throttled(label: str, epoch: int, epochs: int, batch: int, batches: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s:
            last[0] = now
            sink(Beat(label, epoch, epochs, batch, batches, time.time()))

    token = _SINK.set(throttled)
    try:
        yield
    finally:
        _SINK.reset(token)


def write_beat(path: str | Path) -> Callable[[Beat], None]:
    """A sink writing each Beat to ``path`` as JSON (a temporary file, then os.replace: a reader never
    sees half a beat). A file that cannot be written is given up silently: a heartbeat is a courtesy."""
    target = Path(path)

    def write(b: Beat) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
            tmp.write_text(json.dumps(asdict(b)))
            os.replace(tmp, target)
        except OSError:
            pass

    return write


def read_beat(path: str | Path) -> Beat | None:
    """The last Beat written to ``path`` (None: none, or unreadable)."""
    try:
        return Beat(**json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return None
