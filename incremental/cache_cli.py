"""``incsweep cache ls|clear|stats [--dir DIR]``: inspect and empty the task-prefix cache."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

__all__ = ["register", "DEFAULT_DIR_ENV"]

DEFAULT_DIR_ENV = "INCSWEEP_PREFIX_CACHE"  # the directory when --dir is not given
_FALLBACK_DIR = "~/.cache/incsweep/prefixes"  # XDG-style per-user cache location


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("cache", help="inspect or clear the task-prefix cache")
    actions = parser.add_subparsers(dest="cache_action", metavar="ACTION")
    actions.required = True
    for name, handler, text in (("ls", _ls, "list entries, least recently used first"),
                                ("clear", _clear, "remove every entry"),
                                ("stats", _stats, "entries and bytes by method and prefix length")):
        sub = actions.add_parser(name, help=text)
        sub.add_argument("--dir", default=None,
                         help=f"cache directory (default: ${DEFAULT_DIR_ENV} or {_FALLBACK_DIR})")
        sub.set_defaults(func=handler)


def _directory(args: argparse.Namespace) -> Path:
    path = Path(os.path.expanduser(args.dir or os.environ.get(DEFAULT_DIR_ENV) or _FALLBACK_DIR))
    if not path.is_dir():
        raise FileNotFoundError(f"cache directory {path} does not exist")
    return path


def _open(args: argparse.Namespace):
    from incsweep.incremental.prefix_cache import PrefixCache

    # version only matters for keys of new entries; listing and clearing read what is there
    return PrefixCache(_directory(args), max_bytes=None, version="inspect")


def _ls(args: argparse.Namespace) -> int:
    import time

    entries = _open(args).entries()
    print(f"{'key':32}  {'method':10} {'tasks':>5} {'bytes':>11}  last used")
    for e in entries:
        used = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.last_used))
        print(f"{e.key:32}  {e.method:10} {e.n_done:>5} {e.bytes:>11}  {used}")
    print(f"{len(entries)} entries, {sum(e.bytes for e in entries)} bytes")
    return 0


def _clear(args: argparse.Namespace) -> int:
    n = _open(args).clear()
    print(f"removed {n} entries from {_directory(args)}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    entries = _open(args).entries()
    by: dict[tuple[str, int], list[int]] = {}
    for e in entries:
        by.setdefault((e.method, e.n_done), []).append(e.bytes)
    print(f"{'method':10} {'tasks':>5} {'entries':>7} {'bytes':>11}")
    for (method, n_done), sizes in sorted(by.items()):
        print(f"{method:10} {n_done:>5} {len(sizes):>7} {sum(sizes):>11}")
    print(f"total: {len(entries)} entries, {sum(e.bytes for e in entries)} bytes in {_directory(args)}")
    return 0
