"""Which globals real studies' Tune state names and calls: the measurement behind
study/tune_state.py's ALLOWED_GLOBALS and ALLOWED_CALLS.

Reads every Tune experiment under the given folders (any folder holding ``experiment_state-*.json``,
e.g. a pytest ``--basetemp`` after the study tests, or a set of study storages) with the same dry run
resume uses, and prints each (module, name) with how it is used: ``call`` (REDUCE: called with the
pickle's arguments), ``named`` (only referred to, or created empty and given state), and whether the
rules allow it. Run it after upgrading Ray or Optuna: a pair marked REFUSED that a real study holds
must be reviewed and added, or resumes of such studies are refused (with the way out in the message).

Usage: .venv/bin/python benchmarks/tune_state_globals.py DIR [DIR ...]
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pyarrow.fs as pafs

from incsweep.study.tune_state import _ERROR_FILE, _embedded, _state_files, pickle_use, refused


def main(dirs: list[str]) -> int:
    roots = sorted({p.parent for d in dirs for p in Path(d).rglob("experiment_state-*.json")})
    fs = pafs.LocalFileSystem()
    named: Counter[tuple[str, str]] = Counter()
    called: Counter[tuple[str, str]] = Counter()
    bad: set[str] = set()
    files = 0
    for root in roots:
        for info in _state_files(fs, str(root)):
            data = Path(info.path).read_bytes()
            try:
                blobs = list(_embedded(json.loads(data))) if info.base_name.startswith("experiment_state-") else [data]
                for blob in blobs:
                    use = pickle_use(blob)
                    named.update(use.named)
                    called.update(use.called)
                    bad.update(refused(use, error_file=info.base_name == _ERROR_FILE))
                files += 1
            except Exception as exc:  # noqa: BLE001 - a damaged file is reported, not fatal here
                print(f"damaged: {info.path} ({type(exc).__name__})")
    print(f"{len(roots)} experiments, {files} files")
    for module, name in sorted(named):
        how = "call " if (module, name) in called else "named"
        verdict = "REFUSED" if f"{module}.{name}" in bad or f"a call of {module}.{name}" in bad else "allowed"
        print(f"{verdict:8s} {how} {module} {name} ({named[(module, name)]} files)")
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    raise SystemExit(main(sys.argv[1:]))
