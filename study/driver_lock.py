"""One live driver per study: ``<storage>/driver.lock`` names the driver that holds the study.

Two drivers on one study corrupt it (a resume while the first driver still ran gave 10 trials for an
8-trial study and overwrote a completed trial's final row with an error). ``study run`` and ``study
resume`` take the lock after every launch check, before Ray starts, and give it back when they end.
The lock survives a kill -9 of its holder without locking the study forever, because a lock is only
honoured while its holder is alive:

- same host: the holder's pid exists and its process started when the lock says (a reused pid is a
  different process: Linux's /proc start time; elsewhere the pid alone);
- another host (shared storage: NFS, a cluster's file system): the holder rewrites its heartbeat every
  ``HEARTBEAT_S``; a lock whose heartbeat is older than ``STALE_S`` is a dead driver's.

A refusal is one line naming the holder (host, pid, start time) and what to do. Object-store
storage (``s3://``...) has no atomic create: there the lock is advisory (written and read the same
way, so a second driver is refused, but two drivers starting in the same second may both pass).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow.fs as pafs

from incsweep.core.errors import ConfigError
from incsweep.core.layout import resolve_storage

__all__ = ["DriverLock", "Holder", "LOCK_FILE", "HEARTBEAT_S", "STALE_S"]

log = logging.getLogger(__name__)

LOCK_FILE = "driver.lock"
HEARTBEAT_S = 10.0
# Six missed heartbeats: a driver paused that long (a stopped process, a frozen VM) is taken for dead.
STALE_S = 60.0


def _start_time(pid: int) -> float | None:
    """The process's start time in clock ticks since boot (Linux /proc), or None where unknown."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return float(fields[19])  # field 22 of /proc/PID/stat: starttime; [19] after pid and comm
    except (OSError, IndexError, ValueError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class Holder:
    """Who holds a study: host, pid, the process's start time, when it took the lock, its last heartbeat."""

    host: str
    pid: int
    start: float | None
    since: float
    heartbeat: float
    token: str

    @classmethod
    def me(cls) -> "Holder":
        now = time.time()
        return cls(socket.gethostname(), os.getpid(), _start_time(os.getpid()), now, now, uuid.uuid4().hex)

    def alive(self, now: float | None = None) -> bool:
        if self.host == socket.gethostname():
            return _pid_alive(self.pid) and (self.start is None or _start_time(self.pid) in (None, self.start))
        return (now if now is not None else time.time()) - self.heartbeat < STALE_S

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since))
        return f"pid {self.pid} on {self.host}, since {started}"


class DriverLock:
    """``with DriverLock(storage):`` holds the study for this driver (ConfigError if another live one does)."""

    def __init__(self, storage: str):
        self.fs, root = resolve_storage(storage)
        self.path = f"{root.rstrip('/')}/{LOCK_FILE}"
        self.storage = storage
        self.me = Holder.me()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._created = False  # whether acquire() made the storage folder

    # -- the file -------------------------------------------------------------------------------
    def read(self) -> Holder | None:
        try:
            with self.fs.open_input_stream(self.path) as f:
                data = json.loads(f.read())
            return Holder(**data)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            return None  # a torn or foreign file holds nobody

    def _write(self, holder: Holder, *, exclusive: bool) -> bool:
        text = json.dumps(asdict(holder)).encode()
        if isinstance(self.fs, pafs.LocalFileSystem):
            if exclusive:
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    return False
                with os.fdopen(fd, "wb") as f:
                    f.write(text)
                return True
            tmp = f"{self.path}.{holder.token}.tmp"
            with open(tmp, "wb") as f:
                f.write(text)
            os.replace(tmp, self.path)
            return True
        if exclusive and self.fs.get_file_info(self.path).type != pafs.FileType.NotFound:
            return False
        with self.fs.open_output_stream(self.path) as f:
            f.write(text)
        return True

    # -- acquire / release ------------------------------------------------------------------------
    def acquire(self) -> None:
        folder = self.path.rsplit("/", 1)[0]
        self._created = self.fs.get_file_info(folder).type == pafs.FileType.NotFound
        self.fs.create_dir(folder, recursive=True)
        for _ in range(3):
            if self._write(self.me, exclusive=True):
                break
            held = self.read()
            if held is not None and held.token != self.me.token and held.alive():
                raise ConfigError(f"{self.storage} is in use by another incsweep driver ({held.describe()}); wait "
                                  f"for it to end, or stop it and run `incsweep study resume {self.storage}`")
            # a dead driver's lock (kill -9, a lost node): take it over
            log.info("taking over %s from a driver that is gone (%s)", self.path,
                     held.describe() if held else "unreadable lock")
            try:
                self.fs.delete_file(self.path)
            except FileNotFoundError:
                pass
        else:
            raise ConfigError(f"{self.storage}: could not take {LOCK_FILE} (another driver starting at the same "
                              "moment?); try again")
        held = self.read()  # two takers of one stale lock: the file says who won
        if held is None or held.token != self.me.token:
            raise ConfigError(f"{self.storage} was taken by another incsweep driver starting at the same moment "
                              f"({held.describe() if held else 'unknown'}); let it run")
        self._beat = threading.Thread(target=self._heartbeat, name="incsweep-driver-lock", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            held = self.read()
            if held is None or held.token != self.me.token:
                log.warning("%s no longer names this driver; another driver may be writing the study", self.path)
                return
            try:
                self._write(Holder(**{**asdict(self.me), "heartbeat": time.time()}), exclusive=False)
            except OSError as err:
                log.warning("could not refresh %s (%s)", self.path, err)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        held = self.read()
        if held is not None and held.token == self.me.token:
            try:
                self.fs.delete_file(self.path)
            except (FileNotFoundError, OSError):
                pass
        folder = self.path.rsplit("/", 1)[0]
        if self._created and isinstance(self.fs, pafs.LocalFileSystem):
            try:
                os.rmdir(folder)  # a launch that wrote nothing leaves nothing, not even the folder
            except OSError:
                pass  # not empty: the study's files

    def __enter__(self) -> "DriverLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()
