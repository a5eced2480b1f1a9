"""Check Tune's saved experiment state before ``Tuner.restore`` unpickles it (issue 18).

Tune keeps its state as pickles (``tuner.pkl``, ``searcher-state-*.pkl``, ``search_gen_state-*``,
``trial_*/params.pkl``) and as JSON with cloudpickled values inside (``experiment_state-*.json``:
``{"_type": "CLOUDPICKLE_FALLBACK", "value": <hex>}``). Unpickling runs whatever callables a pickle
names, so a file planted in shared study storage would run code in the driver on
``incsweep study resume``. Every pickle is first read by a dry-run unpickler that resolves no name
(each global becomes an inert stub, so nothing is called) and records the globals it refers to;
resume goes on only when all of them come from the modules Tune's own state uses
(``ALLOWED_MODULES``). A damaged file (a torn write, a truncated searcher state, on which Tune
itself hangs) is caught the same way. docs/cluster.md, "Trust", says what this does not cover.
"""

from __future__ import annotations

import builtins
import io
import json
import pickle
from typing import Any, Iterator

import pyarrow.fs as pafs

from incsweep.incremental.errors import ConfigError

__all__ = ["check_tune_state", "pickle_globals", "ALLOWED_MODULES", "ALLOWED_BUILTINS"]

# Modules whose classes Tune's state of an incsweep study refers to (measured on this version's
# studies: FIFO/ASHA/ParetoASHA, TPE/GP/NSGA-II/random, local and pyarrow filesystems).
ALLOWED_MODULES = ("incsweep", "optuna", "numpy", "ray.tune", "ray.train", "ray.air", "datetime", "uuid",
                   "collections", "copyreg", "pyarrow._fs", "pyarrow._s3fs", "pyarrow._gcsfs", "pyarrow._hdfs",
                   "pathlib", "_codecs", "enum", "decimal", "fractions",
                   # a failed trial's error.pkl: Ray's exception types (ActorDiedError when a worker is
                   # killed, OutOfMemoryError, RayTaskError wrapping the trial's own exception)
                   "ray.exceptions")
# builtins a pickle may name: containers and plain values; never getattr, eval, exec, open, __import__
ALLOWED_BUILTINS = frozenset({"set", "frozenset", "list", "dict", "tuple", "bytearray", "bytes", "complex",
                              "range", "slice", "object", "int", "float", "str", "bool", "type"})
_PICKLE_SUFFIXES = (".pkl",)
_GEN_STATE = "search_gen_state-"  # Tune pickles this one although it is named .json


class _Stub:
    """Stands in for every global and every object built from one: accepts anything, does nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> "_Stub":
        return _Stub()

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass


class _DryRun(pickle.Unpickler):
    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self.found: set[tuple[str, str]] = set()

    def find_class(self, module: str, name: str) -> Any:
        self.found.add((module, name))
        return _Stub

    def persistent_load(self, pid: Any) -> Any:
        return _Stub()


def pickle_globals(data: bytes) -> set[tuple[str, str]]:
    """The (module, name) globals a pickle refers to, read without calling any of them."""
    reader = _DryRun(data)
    reader.load()
    return reader.found


def _allowed(module: str, name: str) -> bool:
    if module == "builtins":
        # plus the builtin exception types (a RayTaskError's cause); looking a builtin up runs nothing
        kind = getattr(builtins, name, None)
        return name in ALLOWED_BUILTINS or (isinstance(kind, type) and issubclass(kind, BaseException))
    return any(module == m or module.startswith(m + ".") for m in ALLOWED_MODULES)


def _embedded(value: Any) -> Iterator[bytes]:
    """Cloudpickled values inside Tune's JSON (nested JSON strings included)."""
    if isinstance(value, dict):
        if value.get("_type") == "CLOUDPICKLE_FALLBACK" and isinstance(value.get("value"), str):
            yield bytes.fromhex(value["value"])
        for v in value.values():
            yield from _embedded(v)
    elif isinstance(value, list):
        for v in value:
            yield from _embedded(v)
    elif isinstance(value, str) and value.lstrip().startswith(("{", "[")):
        try:
            yield from _embedded(json.loads(value))
        except ValueError:
            return


def _state_files(fs: pafs.FileSystem, root: str) -> list[pafs.FileInfo]:
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True))
    out = []
    for info in infos:
        if info.type != pafs.FileType.File or "/checkpoint_" in info.path:
            continue  # trial checkpoints are our state.pt, read with torch.load(weights_only=True)
        base = info.base_name
        if base.endswith(_PICKLE_SUFFIXES) or base.startswith(_GEN_STATE) or (
                base.startswith("experiment_state-") and base.endswith(".json")):
            out.append(info)
    return out


def check_tune_state(experiment: str, filesystem: pafs.FileSystem | None = None) -> int:
    """Raise a one-line ConfigError unless every pickle of the Tune experiment at ``experiment`` is
    readable and names only allowed globals; returns how many pickles were checked."""
    fs = filesystem or pafs.LocalFileSystem()
    if fs.get_file_info(experiment).type == pafs.FileType.NotFound:
        return 0  # no Tune state yet: resume starts a fresh Tuner
    checked = 0
    aside = f"move {experiment} aside to resume from the Parquet results and the Optuna journal instead"
    for info in _state_files(fs, experiment):
        with fs.open_input_stream(info.path) as f:
            data = f.read()
        if info.base_name.startswith("experiment_state-"):
            try:
                blobs = list(_embedded(json.loads(data)))
            except (ValueError, UnicodeDecodeError):
                raise ConfigError(f"Tune state {info.path} is damaged (not JSON); {aside}") from None
        else:
            blobs = [data]
        for blob in blobs:
            try:
                names = pickle_globals(blob)
            except Exception as exc:  # noqa: BLE001 - any failure of the dry run: the file is not Tune's state
                raise ConfigError(f"Tune state {info.path} is damaged ({type(exc).__name__}); {aside}") from None
            refused = sorted(f"{m}.{n}" for m, n in names if not _allowed(m, n))
            if refused:
                raise ConfigError(f"Tune state {info.path} refers to {', '.join(refused[:3])}, which Tune's state "
                                  "never holds; not loading it (unpickling it would run that code); " + aside)
            checked += 1
    return checked
