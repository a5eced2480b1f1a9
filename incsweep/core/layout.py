"""Where a study keeps its parts inside its storage directory (or URI)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import yaml

from incsweep.core.errors import ConfigError

__all__ = ["StudyLayout", "EVALUATE_DIR", "TUNE_NAME", "sub_location", "resolve_storage"]

SPEC_FILE = "study.yaml"
TUNE_NAME = "tune"  # Tune's experiment directory under the storage
EVALUATE_DIR = "evaluate"  # protocols two_phase and first_task: the front's evaluation phase (study/confirm.py)


def resolve_storage(storage: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it for a local directory or a URI (s3://, gs://, ...)."""
    if "://" in storage and not storage.startswith("file://"):
        try:
            fs, path = pafs.FileSystem.from_uri(storage)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            scheme = storage.split("://", 1)[0]
            raise ConfigError(f"storage {storage!r}: scheme {scheme!r} is not usable here ({str(exc).splitlines()[0]}); "
                              "use a local directory, file://, s3://, gs:// or hdfs://") from None
        return fs, path.rstrip("/")
    local = storage[len("file://"):] if storage.startswith("file://") else storage
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(local))


def sub_location(storage: str, name: str) -> str:
    """``storage``/``name``, keeping a URI's query (s3://b/p?endpoint_override=... -> s3://b/p/name?...)."""
    base, sep, query = storage.partition("?")
    return f"{base.rstrip('/')}/{name}{sep}{query}"


@dataclass(frozen=True)
class StudyLayout:
    """``<storage>/study.yaml`` (the resolved spec), ``optuna.journal`` (the Optuna study),
    ``tune/`` (Tune's experiment state and trial checkpoints), ``results/`` (Parquet),
    ``prefix_cache/`` (task-prefix states)."""

    storage: str

    @cached_property
    def _resolved(self):
        """(pyarrow filesystem, path inside it), built once: a URI's filesystem is not free to make."""
        return resolve_storage(self.storage)

    @property
    def is_local(self) -> bool:
        return "://" not in self.storage or self.storage.startswith("file://")

    @property
    def local_root(self) -> Path:
        return Path(self._resolved[1])

    @property
    def tune_storage(self) -> str:
        """Tune's storage_path: a local directory, or the path inside ``tune_filesystem``."""
        return self._resolved[1]

    @property
    def tune_filesystem(self):
        """None for local storage; else the URI's pyarrow filesystem. Handing Tune the filesystem,
        not the URI, keeps a URI's query (endpoint_override=..., region=...) off Tune's joined paths."""
        return None if self.is_local else self._resolved[0]

    @property
    def tune_experiment(self) -> str:
        return f"{self.tune_storage}/{TUNE_NAME}"

    @property
    def spec_uri(self) -> str:
        return f"{self._resolved[1]}/{SPEC_FILE}"

    def optuna_url(self, override: str | None) -> str:
        if override:
            return override
        if not self.is_local:
            raise ConfigError(f"storage {self.storage!r} is a URI: give optuna_storage (an RDB URL such as "
                              "postgresql://... or sqlite:////shared/optuna.db) in the spec")
        return str(self.local_root / "optuna.journal")

    def prefix_cache_dir(self) -> str | None:
        """``<storage>/prefix_cache``; an evaluation phase (``<study>/evaluate``) shares its study's, so
        under first_task the front's whole-stream runs start from the task-0 states its search stored."""
        if not self.is_local:
            return None
        root = self.local_root
        if root.name == EVALUATE_DIR and (root.parent / SPEC_FILE).exists():
            root = root.parent
        return str(root / "prefix_cache")

    def heartbeat_dir(self) -> str | None:
        """``<storage>/heartbeat``: each running trial's epochs and batches done (local storage only: a
        driver reads it every few seconds, which an object store would bill and lag)."""
        return str(self.local_root / "heartbeat") if self.is_local else None

    def location(self, name: str) -> str:
        """``name`` under the study as a trial on any node opens it: an absolute path (from where the
        study is now: a moved or copied study's trials read its own files) or the storage URI's."""
        return str(self.local_root / name) if self.is_local else sub_location(self.storage, name)

    def read_spec(self) -> dict | None:
        fs = self._resolved[0]
        from pyarrow.fs import FileType

        if fs.get_file_info(self.spec_uri).type == FileType.NotFound:
            return None
        with fs.open_input_stream(self.spec_uri) as f:
            return yaml.safe_load(f.read().decode())

    def write_spec(self, data: dict) -> None:
        fs, root = self._resolved
        fs.create_dir(root, recursive=True)
        tmp = f"{self.spec_uri}.tmp"
        with fs.open_output_stream(tmp) as f:
            f.write(yaml.safe_dump(data, sort_keys=False).encode())
        fs.move(tmp, self.spec_uri)
