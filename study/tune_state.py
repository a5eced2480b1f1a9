"""Check Tune's saved experiment state before ``Tuner.restore`` unpickles it (issue 18).

Tune keeps its state as pickles (``tuner.pkl``, ``searcher-state-*.pkl``, ``search_gen_state-*``,
``trial_*/params.pkl``) and as JSON with cloudpickled values inside (``experiment_state-*.json``:
``{"_type": "CLOUDPICKLE_FALLBACK", "value": <hex>}``). Unpickling runs whatever callables a pickle
names, so a file planted in shared study storage would run code in the driver on
``incsweep study resume``. Every pickle is first read by a dry-run unpickler that resolves no name
(each global becomes an inert stub, so nothing is called) and records the globals it names and
which of them it would call through REDUCE (a call with the pickle's own arguments). Resume goes on
only when every global is one of the exact (module, qualified name) pairs Tune's state of an
incsweep study holds (``ALLOWED_GLOBALS``) and every REDUCE call is to a constructor of plain values
(``ALLOWED_CALLS``). Module prefixes are not enough: Python's unpickler resolves a dotted name by
attribute traversal, so module ``incsweep.study.runner`` with name ``os.system`` is ``os.system``;
and an allowed function called with planted arguments (``_upload_to_fs_path``: a file copy) is as bad
as a planted one. A trial's ``error.pkl`` may hold exception types only. A damaged file (a torn write,
a truncated searcher state, on which Tune itself hangs) is caught the same way. docs/cluster.md,
"Trust", says what this does not cover.
"""

from __future__ import annotations

import builtins
import importlib
import io
import json
import pickle
import zipfile
from typing import Any, Iterator

import pyarrow.fs as pafs

from incsweep.incremental.errors import ConfigError

__all__ = ["check_tune_state", "pickle_use", "refused", "PickleUse", "ALLOWED_GLOBALS", "ALLOWED_CALLS",
           "ALLOWED_BUILTINS"]

# The exact (module, qualified name) pairs Tune's state of an incsweep study names, measured on this
# version's studies (FIFO and ParetoASHA; TPE, GP and random samplers; journal and RDB Optuna
# storages; trackers; local, S3 and object-store filesystems; the kill -9, SIGTERM and failure tests' states) with
# benchmarks/tune_state_globals.py. A pair that is not here (a new Ray or Optuna release renaming a
# class) refuses the resume with the way out: Tune's state aside, resume from Parquet and the journal.
_TUNE = {
    "ray.tune": ("Checkpoint", "CheckpointConfig", "FailureConfig", "RunConfig"),
    "ray.tune.experiment.experiment": ("Experiment",),
    "ray.tune.experiment.trial": ("Trial", "_TrialInfo"),
    "ray.tune.schedulers.trial_scheduler": ("FIFOScheduler",),
    "ray.tune.stopper.noop": ("NoopStopper",),
    "ray.tune.tune_config": ("TuneConfig",),
    "ray.tune.search.search_generator": ("SearchGenerator",),
    "ray.tune.search.concurrency_limiter": ("ConcurrencyLimiter",),
    "ray.train": ("SyncConfig", "Checkpoint", "CheckpointConfig", "FailureConfig", "RunConfig"),
    "ray.train._checkpoint": ("Checkpoint",),
    "ray.train._internal.checkpoint_manager": ("_CheckpointManager",),
    "ray.train._internal.session": ("_TrainingResult",),
    "ray.train._internal.storage": ("StorageContext", "_FilesystemSyncer", "_upload_to_fs_path"),
    "ray.air._internal.usage": ("AirEntrypoint",),
    "ray.air.config": ("RunConfig", "CheckpointConfig", "FailureConfig"),
}
_OPTUNA = {
    "optuna.distributions": ("CategoricalDistribution", "FloatDistribution", "IntDistribution"),
    "optuna.pruners._nop": ("NopPruner",),
    "optuna.pruners._median": ("MedianPruner",),  # optuna.create_study's default pruner
    "optuna.samplers._lazy_random_state": ("LazyRandomState",),
    "optuna.samplers._random": ("RandomSampler",),
    "optuna.samplers._gp.sampler": ("GPSampler",),
    "optuna._gp.gp": ("GPRegressor",),
    "optuna._gp.prior": ("default_log_prior",),
    "optuna.samplers._tpe.parzen_estimator": ("_ParzenEstimator", "_ParzenEstimatorParameters"),
    "optuna.samplers._tpe.sampler": ("TPESampler", "default_weights", "default_gamma", "default_gamma_multiobjective"),
    "optuna.search_space.intersection": ("IntersectionSearchSpace",),
    "optuna.search_space.group_decomposed": ("_GroupDecomposedSearchSpace", "_SearchSpaceGroup"),
    "optuna.storages.journal._file": ("JournalFileBackend", "JournalFileSymlinkLock", "JournalFileOpenLock"),
    "optuna.storages.journal._storage": ("JournalStorage",),
    "optuna.storages._rdb.storage": ("RDBStorage",),
    "optuna.storages._cached_storage": ("_CachedStorage", "_StudyInfo"),  # an RDB storage's cache
    "optuna.study._study_direction": ("StudyDirection",),
    "optuna.study.study": ("Study",),
    "optuna.trial._frozen": ("FrozenTrial",),
    "optuna.trial._state": ("TrialState",),
    "optuna.trial._trial": ("Trial",),
}
_INCSWEEP = {
    "incsweep.incremental.constraints": ("Constraint",),
    "incsweep.search_spaces.define_by_run": ("StudySpace",),
    "incsweep.search_spaces.params": ("Choice", "Fixed", "Float", "Int"),
    "incsweep.study.runner": ("trial_dirname",),
    "incsweep.study.scheduler": ("ParetoASHA",),
    "incsweep.study.searcher": ("StudySearcher",),
    "incsweep.study.sink": ("ParquetSink", "ProgressLog"),
    "incsweep.study.tracker_callbacks": ("TrackerCallbacks",),
    "incsweep.study.trackers": ("TrackerSpec",),
}
_DATA = {
    "collections": ("Counter", "deque", "OrderedDict", "defaultdict"),
    "copyreg": ("_reconstructor", "__newobj__"),
    "datetime": ("datetime", "date", "timedelta", "timezone"),
    "uuid": ("UUID",),
    "pathlib": ("PosixPath", "PurePosixPath", "Path"),
    "_codecs": ("encode",),
    "enum": ("Enum",),
    "decimal": ("Decimal",),
    "fractions": ("Fraction",),
    # numpy 2 and 1 names of the same reconstructors
    "numpy": ("dtype", "ndarray", "float64", "int64", "bool_"),
    "numpy._core.multiarray": ("_reconstruct", "scalar"),
    "numpy.core.multiarray": ("_reconstruct", "scalar"),
    "numpy._core.numeric": ("_frombuffer",),
    "numpy.core.numeric": ("_frombuffer",),
    "numpy.random._mt19937": ("MT19937",),
    "numpy.random._pickle": ("__bit_generator_ctor", "__randomstate_ctor", "__generator_ctor"),
    "pyarrow._fs": ("FileSystem._from_uri", "LocalFileSystem"),
    "pyarrow._s3fs": ("S3FileSystem._reconstruct",),
    "pyarrow._gcsfs": ("GcsFileSystem._reconstruct",),
    "pyarrow._hdfs": ("HadoopFileSystem._reconstruct",),
    # GP sampler state: tensors, saved by torch.save inside the pickle (checked in turn: _NESTED)
    "torch._utils": ("_rebuild_tensor_v2", "_rebuild_parameter"),
    "torch.storage": ("_load_from_bytes", "UntypedStorage"),
    "torch": ("FloatStorage", "DoubleStorage", "LongStorage", "IntStorage", "BoolStorage", "float32", "float64",
              "int64", "Size", "device"),
}
ALLOWED_GLOBALS = frozenset((module, name) for table in (_TUNE, _OPTUNA, _INCSWEEP, _DATA)
                            for module, names in table.items() for name in names)
# What a pickle may call with its own arguments (REDUCE): constructors of plain values and the
# reconstructors numpy, pyarrow and torch pickle through. Classes named above are otherwise only
# created empty and given their state (NEWOBJ/BUILD), which runs none of their code but __setstate__.
ALLOWED_CALLS = frozenset({
    ("collections", "Counter"), ("collections", "deque"), ("collections", "OrderedDict"),
    ("collections", "defaultdict"), ("copyreg", "_reconstructor"), ("copyreg", "__newobj__"),
    ("datetime", "datetime"), ("datetime", "date"), ("datetime", "timedelta"), ("datetime", "timezone"),
    ("uuid", "UUID"), ("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("pathlib", "Path"),
    ("_codecs", "encode"), ("decimal", "Decimal"), ("fractions", "Fraction"),
    ("numpy", "dtype"), ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy.random._pickle", "__bit_generator_ctor"), ("numpy.random._pickle", "__randomstate_ctor"),
    ("numpy.random._pickle", "__generator_ctor"),
    # enums, rebuilt from their value
    ("optuna.study._study_direction", "StudyDirection"), ("optuna.trial._state", "TrialState"),
    ("ray.air._internal.usage", "AirEntrypoint"),
    ("pyarrow._fs", "FileSystem._from_uri"), ("pyarrow._s3fs", "S3FileSystem._reconstruct"),
    ("pyarrow._gcsfs", "GcsFileSystem._reconstruct"), ("pyarrow._hdfs", "HadoopFileSystem._reconstruct"),
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"), ("torch", "Size"),
    ("torch", "device"), ("torch.storage", "_load_from_bytes"),
})
# Calls whose argument is itself a pickle that runs with weights_only=False (torch.storage's
# _load_from_bytes: torch.load of a torch.save file): that file's data.pkl is checked by the same rules.
_NESTED = frozenset({("torch.storage", "_load_from_bytes")})
_LEGACY_PICKLES = 5  # torch/serialization.py _legacy_load: magic, protocol, sys_info, object, storage keys
# builtins a pickle may name: containers and plain values; never getattr, eval, exec, open, __import__
ALLOWED_BUILTINS = frozenset({"set", "frozenset", "list", "dict", "tuple", "bytearray", "bytes", "complex",
                              "range", "slice", "object", "int", "float", "str", "bool", "type"})
_PICKLE_SUFFIXES = (".pkl",)
_GEN_STATE = "search_gen_state-"  # Tune pickles this one although it is named .json
_ERROR_FILE = "error.pkl"  # a failed trial's exception (Ray's types wrapping the trial's own)
_ERROR_MODULES = ("ray.exceptions", "incsweep", "optuna", "torch", "ray.tune", "ray.train", "ray.air", "pyarrow")


class _Stub:
    """What every global and every object built from one becomes: accepts anything, does nothing."""

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


class PickleUse:
    """What a pickle names (``named``) and what it would call with its own arguments (``called``)."""

    def __init__(self) -> None:
        self.named: set[tuple[str, str]] = set()
        self.called: set[tuple[str, str]] = set()
        self.nested: list[bytes | bytearray] = []  # arguments of _NESTED calls: pickles in their own right


def _global_stub(use: PickleUse, module: str, name: str) -> type:
    """A stand-in class for the global: calling it (REDUCE) is recorded, creating it empty (NEWOBJ) is not."""
    key = (module, name)

    class _Recorder(type):
        def __call__(cls, *args: Any, **kwargs: Any) -> _Stub:
            use.called.add(key)
            if key in _NESTED:
                use.nested += [a for a in args if isinstance(a, (bytes, bytearray))]
            return _Stub()

    def new(cls: type, *args: Any, **kwargs: Any) -> _Stub:
        return object.__new__(_Stub)

    return _Recorder("G", (_Stub,), {"__new__": new})


class _DryRun(pickle.Unpickler):
    def __init__(self, data: bytes | io.BytesIO, use: PickleUse):
        super().__init__(data if isinstance(data, io.BytesIO) else io.BytesIO(data))
        self.use = use

    def find_class(self, module: str, name: str) -> Any:
        self.use.named.add((module, name))
        return _global_stub(self.use, module, name)

    def persistent_load(self, pid: Any) -> Any:
        return _Stub()


def pickle_use(data: bytes) -> PickleUse:
    """What a pickle names and calls, read without resolving or calling any of it; a nested
    torch.save file (zip) is read the same way, into the same record."""
    use = PickleUse()
    _DryRun(data, use).load()
    while use.nested:
        blob = io.BytesIO(bytes(use.nested.pop()))
        if zipfile.is_zipfile(blob):
            with zipfile.ZipFile(blob) as archive:
                for member in archive.namelist():
                    if member.endswith("data.pkl"):
                        _DryRun(archive.read(member), use).load()
        else:
            # torch's legacy format (what a storage's __reduce__ writes): magic number, protocol,
            # system info, the object, its storage keys; raw storage bytes follow, never unpickled
            blob.seek(0)
            for _ in range(_LEGACY_PICKLES):
                _DryRun(blob, use).load()
    return use


def _builtin_ok(name: str) -> bool:
    # plus the builtin exception types (a RayTaskError's cause); looking a builtin up runs nothing
    kind = getattr(builtins, name, None)
    return name in ALLOWED_BUILTINS or (isinstance(kind, type) and issubclass(kind, BaseException))


def _exception_type(module: str, name: str) -> bool:
    """An exception class of an installed, trusted package (error.pkl's one kind of global)."""
    if "." in name or not any(module == m or module.startswith(m + ".") for m in _ERROR_MODULES):
        return False
    try:
        kind = getattr(importlib.import_module(module), name, None)
    except Exception:  # noqa: BLE001 - a module that does not import holds no exception type of ours
        return False
    return isinstance(kind, type) and issubclass(kind, BaseException)


def refused(use: PickleUse, *, error_file: bool = False) -> list[str]:
    """The globals and calls of ``use`` the rules do not allow, as ``module.name`` (empty: safe to load)."""
    out = []
    for module, name in sorted(use.named):
        if module == "builtins":
            ok = _builtin_ok(name)
        else:
            ok = (module, name) in ALLOWED_GLOBALS or (error_file and _exception_type(module, name))
        if not ok:
            out.append(f"{module}.{name}")
    for module, name in sorted(use.called):
        if module == "builtins":
            ok = _builtin_ok(name) and name not in ("type", "object")
        else:
            ok = (module, name) in ALLOWED_CALLS or (error_file and _exception_type(module, name))
        if not ok:
            out.append(f"a call of {module}.{name}")
    return out


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
                use = pickle_use(blob)
            except Exception as exc:  # noqa: BLE001 - any failure of the dry run: the file is not Tune's state
                raise ConfigError(f"Tune state {info.path} is damaged ({type(exc).__name__}); {aside}") from None
            bad = refused(use, error_file=info.base_name == _ERROR_FILE)
            if bad:
                raise ConfigError(f"Tune state {info.path} refers to {', '.join(bad[:3])}, which Tune's state "
                                  "never holds; not loading it (unpickling it would run that code); " + aside)
            checked += 1
    return checked
