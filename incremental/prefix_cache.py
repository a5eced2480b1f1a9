"""Task-prefix reuse: a content-addressed store of run states after the first k tasks.

Many trials of a study agree on everything that determines their first tasks (MEMO's expensive
first task, BMKP's task 0: most searched fields only act from task 1 on). A state stored after
``n_done`` tasks is keyed by exactly what can influence it (``Method.fields_for_tasks``, the whole
benchmark, seed, scenario, augmentation, device type, evaluation batch, code version), so a new
trial may start from the longest stored prefix and produce the same metrics as a run from scratch.

Layout: one directory, per key ``<key>.pt`` (the run's checkpoint, ``run.make_state``) and
``<key>.json`` (metadata). Both are written atomically (temp file + ``os.replace``), the ``.pt``
first, so an entry is visible only once complete and concurrent writers of one key are harmless
(same key -> same content). A size limit evicts least recently used entries (the ``.json``'s
mtime is touched on every hit). Shared storage (NFS) makes it work across nodes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

import torch

try:
    import fcntl
except ImportError:  # Windows: no flock; the prefix cache then scans at every put
    fcntl = None  # type: ignore[assignment]

from incsweep.core.configs import to_mapping
from incsweep.core.errors import ConfigError
from incsweep.incremental.methods import get_method
from incsweep.incremental.run import CHECKPOINT_FILE, CHECKPOINT_FORMAT, RunConfig, RunResult, TaskResult, load_checkpoint, run

if TYPE_CHECKING:
    from incsweep.incremental.benchmarks import Benchmark

__all__ = ["PrefixCache", "CacheEntry", "prefix_key", "prefix_fields", "prefix_state", "engine_version",
           "start_state", "run_through_cache", "cached_results", "DEFAULT_MAX_BYTES"]

log = logging.getLogger(__name__)

KEY_FORMAT = 2  # bump when the key's payload changes meaning
# The cache's bytes are kept in a ledger file beside the entries, updated under a lock at each put,
# so a put scans the directory only when the ledger says the limit may be passed, or after this many
# puts (to see entries written or removed outside the ledger: an older incsweep, a person). A scan at
# every put cost a trial 0.08 s at 10,000 entries and grew with the study: 6.7% of a trial process's
# time at 4,500 trials of benchmarks/study_scale.py's 10,000-trial run (py-spy).
RESCAN_EVERY = 64
_LEDGER, _LOCK = ".bytes", ".lock"
DEFAULT_MAX_BYTES = 2 * 2**30  # 2 GiB: ~400 MEMO ResNet-32 prefixes with 2,000 CIFAR exemplars (~5 MB each)


def engine_version() -> str:
    """A hash of the engine's sources (``incremental/**.py``) and the torch version.

    Finer than the git commit: an uncommitted edit of a method invalidates its prefixes, a commit
    that only touches analysis/ does not.
    """
    root = Path(__file__).resolve().parent
    h = hashlib.sha256(torch.__version__.encode())
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def prefix_fields(config: RunConfig, n_done: int) -> frozenset[str] | None:
    """Method-config fields that can influence the state after ``n_done`` tasks (None: all)."""
    fields = get_method(config.method).fields_for_tasks(config.method_config, n_done)
    if fields is not None:
        known = {f.name for f in dataclasses.fields(config.method_config)}
        if not fields <= known:
            raise ValueError(f"{config.method}.fields_for_tasks names unknown fields {sorted(fields - known)}")
    return fields


def prefix_key(config: RunConfig, n_done: int, version: str) -> str:
    """The content address of the state after ``n_done`` tasks of ``config`` under code ``version``."""
    fields = prefix_fields(config, n_done)
    method_values = to_mapping(config.method_config)
    if fields is not None:
        method_values = {name: method_values[name] for name in sorted(fields)}
    bench = config.benchmark
    payload = {
        "format": KEY_FORMAT,
        "method": config.method,
        "all_fields": fields is None,
        "method_config": method_values,
        "benchmark": to_mapping(bench),
        "data": bench.spec.fingerprint,  # file benchmarks: the bytes, not just the path
        "seed": config.seed,
        "scenario": config.scenario,
        "augment_policy": config.augment_policy or (bench.spec.augmentation if bench.augment else "none"),
        "device_type": torch.device(config.device).type,  # cuda:0 and cuda:1 compute alike
        "eval_batch_size": config.eval_batch_size,  # evaluation rows (and herding features) are in the state
        "threads": config.threads,  # CPU results depend on the thread count (RunConfig.threads)
        "compile": config.compile,  # compiled kernels fuse, so they round differently from eager ones
        "precision": config.precision,
        "code": version,
        "n_done": n_done,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def prefix_state(state: Mapping[str, Any], config: RunConfig, n_done: int, version: str) -> dict[str, Any]:
    """A stored prefix state made resumable by ``config``: the explicit, verified way to start
    ``run(config, initial_state=...)`` from a state written by a *compatible* config.

    ``run`` still refuses any checkpoint whose config differs; this rewrites the stored config
    only after checking that the stored config's prefix key equals ``config``'s.
    """
    if state.get("format") != CHECKPOINT_FORMAT or len(state.get("results", ())) != n_done:
        raise ConfigError(f"prefix state is not a checkpoint after {n_done} task(s)")
    stored = RunConfig.from_dict(json.loads(state["config"]))
    if prefix_key(stored, n_done, version) != prefix_key(config, n_done, version):
        raise ConfigError(f"prefix state after {n_done} task(s) was written by a config that differs in a field "
                          "that acts on those tasks; refusing to start from it")
    return {**state, "config": config.to_json()}


def cached_results(state: Mapping[str, Any]) -> list[TaskResult]:
    """The per-task results a prefix state carries (to report them before training continues)."""
    return [TaskResult.from_dict(r) for r in state["results"]]


@dataclass(frozen=True)
class CacheEntry:
    key: str
    method: str
    n_done: int
    bytes: int
    last_used: float  # seconds since the epoch
    meta: dict[str, Any]


class PrefixCache:
    """A directory of prefix states with an LRU size limit (``max_bytes``, None: unlimited)."""

    def __init__(self, directory: str | os.PathLike, *, max_bytes: int | None = DEFAULT_MAX_BYTES,
                 version: str | None = None):
        if max_bytes is not None and max_bytes <= 0:
            raise ConfigError(f"prefix cache max_bytes={max_bytes} must be positive (or None for no limit)")
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.version = version or engine_version()

    # ---- entries ----------------------------------------------------------------------------
    def _paths(self, key: str) -> tuple[Path, Path]:
        return self.dir / f"{key}.pt", self.dir / f"{key}.json"

    def entries(self) -> list[CacheEntry]:
        """Every complete entry, least recently used first; unreadable metadata is skipped."""
        out = []
        for meta_path in self.dir.glob("*.json"):
            key = meta_path.stem
            try:
                meta = json.loads(meta_path.read_text())
                pt_size = (self.dir / f"{key}.pt").stat().st_size
                st = meta_path.stat()
            except (OSError, ValueError):
                continue  # being evicted by another process, or corrupt (reported by get)
            out.append(CacheEntry(key, str(meta.get("method")), int(meta.get("n_done", -1)),
                                  pt_size + st.st_size, st.st_mtime, meta))
        return sorted(out, key=lambda e: (e.last_used, e.key))

    def total_bytes(self) -> int:
        return sum(e.bytes for e in self.entries())

    def remove(self, key: str) -> None:
        for path in self._paths(key)[::-1]:  # metadata first: the entry disappears at once
            try:
                path.unlink()
            except FileNotFoundError:
                pass

    def clear(self) -> int:
        """Remove every entry (and stray temp files); returns the number of entries removed."""
        entries = self.entries()
        for e in entries:
            self.remove(e.key)
        for tmp in self.dir.glob("*.tmp*"):
            tmp.unlink(missing_ok=True)
        (self.dir / _LEDGER).unlink(missing_ok=True)  # the next put scans and writes it again
        return len(entries)

    # ---- get / put --------------------------------------------------------------------------
    def get(self, config: RunConfig, n_done: int) -> dict[str, Any] | None:
        """The state after ``n_done`` tasks of a compatible config, ready for ``run(initial_state=)``;
        None on a miss. A corrupt or mismatching entry is logged, removed and treated as a miss."""
        key = prefix_key(config, n_done, self.version)
        pt, meta_path = self._paths(key)
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("key") != key:
                raise ValueError(f"metadata names key {meta.get('key')!r}")
            state = load_checkpoint(pt)
            state = prefix_state(state, config, n_done, self.version)
        except FileNotFoundError:
            return None  # evicted between the check and the read
        except Exception as err:  # noqa: BLE001 - any unreadable entry is a miss, never a failed trial
            log.warning("prefix cache: ignoring corrupt entry %s (%s: %s)", key, type(err).__name__, err)
            self.remove(key)
            return None
        try:
            os.utime(meta_path)  # LRU: last use = the metadata's mtime (atime is often off: noatime)
        except FileNotFoundError:
            pass
        return state

    def put(self, config: RunConfig, state: Mapping[str, Any] | str | os.PathLike, n_done: int) -> str | None:
        """Store the state after ``n_done`` tasks (a checkpoint mapping, or the path of a ``state.pt``
        that holds exactly those tasks). Returns the key, or None if the entry alone exceeds the limit."""
        key = prefix_key(config, n_done, self.version)
        pt, meta_path = self._paths(key)
        self.dir.mkdir(parents=True, exist_ok=True)
        tag = f".tmp{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp_pt, tmp_meta = pt.with_name(pt.name + tag), meta_path.with_name(meta_path.name + tag)
        if isinstance(state, Mapping):
            if len(state.get("results", ())) != n_done or state.get("config") != config.to_json():
                raise ValueError(f"put(): the state is not {config.method}'s checkpoint after {n_done} task(s)")
            torch.save(dict(state), tmp_pt)
        else:
            tmp_pt.write_bytes(Path(state).read_bytes())
        size = tmp_pt.stat().st_size
        if self.max_bytes is not None and size > self.max_bytes:
            tmp_pt.unlink()
            log.warning("prefix cache: a %d-byte entry exceeds max_bytes=%d; not stored", size, self.max_bytes)
            return None
        fields = prefix_fields(config, n_done)
        meta = {"key": key, "method": config.method, "n_done": n_done, "code": self.version,
                "fields": None if fields is None else sorted(fields), "config": config.to_dict(),
                "created": time.time()}
        tmp_meta.write_text(json.dumps(meta, sort_keys=True))
        with self._locked() as locked:
            os.replace(tmp_pt, pt)
            os.replace(tmp_meta, meta_path)
            if self.max_bytes is not None:
                entry = size + meta_path.stat().st_size
                ledger = self._read_ledger() if locked else None
                if ledger is None or ledger[0] + entry > self.max_bytes or ledger[1] + 1 >= RESCAN_EVERY:
                    self._evict(keep=key)
                else:
                    self._write_ledger(ledger[0] + entry, ledger[1] + 1)
        return key

    @contextmanager
    def _locked(self) -> Iterator[bool]:
        """The cache's lock (an flock on ``.lock``): puts and evictions of every process, one at a time.
        Yields False where there is no flock (Windows, a network file system without locking): the
        ledger cannot be trusted there, and each put scans."""
        if fcntl is None:
            yield False
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / _LOCK, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX)
            except OSError:  # ENOLCK: an NFS mount without a lock manager
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read_ledger(self) -> tuple[int, int] | None:
        """(bytes of the entries, puts since the last scan), or None: no ledger, or one that cannot
        be trusted (then the caller scans, which writes a new one)."""
        try:
            total, puts = (int(x) for x in (self.dir / _LEDGER).read_text().split())
        except (OSError, ValueError):
            return None
        return total, puts

    def _write_ledger(self, total: int, puts: int) -> None:
        tmp = self.dir / f"{_LEDGER}.tmp{os.getpid()}"
        tmp.write_text(f"{total} {puts}\n")
        os.replace(tmp, self.dir / _LEDGER)

    def _sizes(self) -> list[tuple[float, str, int]]:
        """(last used, key, bytes) of every complete entry, least recently used first, from the
        directory's metadata only: eviction reads no entry. Reading every entry's JSON at each ``put``
        (``entries()``) took 0.38 s at 4,500 entries, once a trial, growing with the study
        (benchmarks/results/study_scale.txt, the 10,000-trial run); a stat of each file 0.02 s."""
        stats: dict[str, os.stat_result] = {}
        try:
            with os.scandir(self.dir) as it:
                for entry in it:
                    if entry.name.endswith((".json", ".pt")):
                        try:
                            stats[entry.name] = entry.stat()
                        except FileNotFoundError:
                            continue  # evicted by another process meanwhile
        except FileNotFoundError:
            return []
        out = []
        for name, meta in stats.items():
            key, suffix = name.rsplit(".", 1)
            pt = stats.get(f"{key}.pt")
            if suffix == "json" and pt is not None:  # complete: the .pt is renamed in first
                out.append((meta.st_mtime, key, meta.st_size + pt.st_size))
        return sorted(out)

    def evict(self, keep: str | None = None) -> list[str]:
        """Drop least recently used entries until the cache fits ``max_bytes``; returns the keys dropped."""
        if self.max_bytes is None:
            return []
        with self._locked():
            return self._evict(keep)

    def _evict(self, keep: str | None) -> list[str]:
        assert self.max_bytes is not None
        sizes = self._sizes()
        total, dropped = sum(b for _, _, b in sizes), []
        for _, key, size in sizes:
            if total <= self.max_bytes:
                break
            if key == keep:
                continue
            self.remove(key)
            total -= size
            dropped.append(key)
        self._write_ledger(total, 0)  # exact where the lock is held: no put went in meanwhile
        return dropped


# ---- the hooks a trainable calls -------------------------------------------------------------
def start_state(config: RunConfig, cache: PrefixCache | None,
                max_tasks: int | None = None) -> tuple[dict[str, Any] | None, int]:
    """The longest stored prefix of ``config`` of at most ``max_tasks`` tasks (None: any) -> (state
    for ``run(initial_state=)``, tasks done); (None, 0) on a miss or without a cache."""
    if cache is None:
        return None, 0
    longest = len(config.benchmark.task_sizes) if max_tasks is None else min(max_tasks, len(config.benchmark.task_sizes))
    for n_done in range(longest, 0, -1):
        state = cache.get(config, n_done)
        if state is not None:
            log.info("prefix cache: %s starts after task %d", config.method, n_done - 1)
            return state, n_done
    return None, 0


def run_through_cache(config: RunConfig, cache: PrefixCache | None,
                      on_task_end: Callable[[TaskResult], None] | None = None, *,
                      checkpoint_dir: str | os.PathLike | None,
                      initial_state: Mapping[str, Any] | None = None,
                      on_cached: Callable[[Mapping[str, Any]], None] | None = None,
                      benchmark: Benchmark | None = None, stop_after: int | None = None) -> tuple[RunResult, int]:
    """One run through the prefix cache, as a study's trial makes it (the trainable and the
    benchmarks that replay studies all call this): without ``initial_state``, start from the longest
    stored prefix of ``config`` (of at most ``stop_after`` tasks) and hand that state to ``on_cached``
    before training; after every trained task, store its state (the run's checkpoint in
    ``checkpoint_dir``, which a cache needs) when other configs can share it, then call ``on_task_end``.
    Only shareable prefixes are stored: a state that depends on every field (``fields_for_tasks`` None)
    would only serve an identical config, and would push shareable ones out of the LRU. Returns the
    run's result and the number of tasks taken from the cache."""
    if cache is not None and checkpoint_dir is None:
        raise ValueError("run_through_cache: a cache stores the run's checkpoints; give checkpoint_dir")
    n_cached = 0
    state = initial_state
    if state is None:
        state, n_cached = start_state(config, cache, max_tasks=stop_after)
        if state is not None and on_cached is not None:
            on_cached(state)
    def stored_then(result: TaskResult) -> None:
        n_done = result.task + 1
        if cache is not None and prefix_fields(config, n_done) is not None:
            assert checkpoint_dir is not None
            cache.put(config, Path(checkpoint_dir) / CHECKPOINT_FILE, n_done)
        if on_task_end is not None:
            on_task_end(result)

    result = run(config, stored_then, checkpoint_dir=checkpoint_dir, initial_state=state, benchmark=benchmark,
                 stop_after=stop_after)
    return result, n_cached
