"""Read result Parquet files (incsweep/core/schema.py) from directories, globs, files or URIs into one Table.

Files of different methods may carry different ``param_<name>`` columns, or the same name with
different types: schemas are unified (numeric types promoted; a column whose types cannot be
reconciled is read as strings). A file that cannot be read, or that lacks the identity columns,
is skipped with a warning naming it; the rest are used.
"""

from __future__ import annotations

import glob
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from incsweep.core.errors import ConfigError

__all__ = ["load_results", "complete_runs", "to_pandas", "find_result_files", "require_columns", "SOURCE_COLUMN"]

log = logging.getLogger(__name__)

SOURCE_COLUMN = "source_file"  # added by the loader: the file each row came from (provenance of exports)
# Columns without which a row cannot be attributed to a run or judged complete.
REQUIRED_COLUMNS = ("study", "trial_id", "method", "is_final", "complete", "status")
DICTIONARY_COLUMNS = ("study", "trial_id", "method", "benchmark", "scenario", "status", "error", "config_json",
                      "code_version")
_GLOB_CHARS = set("*?[")
# Several files are read at once: each read is mostly I/O and Parquet decoding (pyarrow releases
# the GIL); 8 keeps a shared 2-core machine responsive while hiding per-file latency.
_READ_WORKERS = 8


def _is_uri(text: str) -> bool:
    return "://" in text


def _list_dir(fs: pafs.FileSystem, root: str) -> list[str]:
    # A study's storage also holds Tune and cache folders: look only under results/ when it is there,
    # and under its re-runs' results: <storage>/confirm/seed-<k>/results (incsweep confirm) and
    # <storage>/evaluate/results (protocols two_phase and first_task).
    base = root.rstrip("/")
    roots = [root]
    if fs.get_file_info(f"{base}/results").type == pafs.FileType.Directory:
        roots = [f"{base}/results"]
        confirm = f"{base}/confirm"
        if fs.get_file_info(confirm).type == pafs.FileType.Directory:
            roots += [f"{i.path}/results" for i in fs.get_file_info(pafs.FileSelector(confirm))
                      if i.type == pafs.FileType.Directory
                      and fs.get_file_info(f"{i.path}/results").type == pafs.FileType.Directory]
        if fs.get_file_info(f"{base}/evaluate/results").type == pafs.FileType.Directory:
            roots.append(f"{base}/evaluate/results")
    found = []
    for r in roots:
        infos = fs.get_file_info(pafs.FileSelector(r, recursive=True))
        # Hidden names are the sink's temporary files (".<trial>.<uuid>.tmp") or editor debris.
        found += [i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".parquet")
                  and not i.path.rsplit("/", 1)[-1].startswith(".")]
    return sorted(found)


def find_result_files(paths: str | Sequence[str]) -> list[tuple[pafs.FileSystem, str]]:
    """Every ``.parquet`` file named by ``paths`` (directories searched recursively, globs expanded).

    Raises FileNotFoundError for a path that does not exist or a glob that matches nothing.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        raise ConfigError("no input given; pass result directories, files, globs or URIs")
    found: dict[str, tuple[pafs.FileSystem, str]] = {}
    for raw in map(str, paths):
        if _is_uri(raw):
            fs, path = pafs.FileSystem.from_uri(raw)
            targets = [path]
        else:
            fs = pafs.LocalFileSystem()
            expanded = os.path.expanduser(raw)
            targets = sorted(glob.glob(expanded, recursive=True)) if _GLOB_CHARS & set(expanded) else [expanded]
            if not targets:
                raise FileNotFoundError(f"{raw}: the pattern matches no file")
            targets = [os.path.abspath(t) for t in targets]
        for target in targets:
            kind = fs.get_file_info(target).type
            if kind == pafs.FileType.NotFound:
                raise FileNotFoundError(f"{raw}: no such file or directory")
            files = _list_dir(fs, target) if kind == pafs.FileType.Directory else [target]
            for f in files:
                found.setdefault(f"{type(fs).__name__}:{f}", (fs, f))
    return list(found.values())


def _with_partition_keys(table: pa.Table, path: str) -> pa.Table:
    """``study`` and ``method`` from the file's hive path (``study=X/method=Y/``) when the file does
    not hold them (incsweep/core/schema.py: newer files keep them in the path only)."""
    keys = dict(part.split("=", 1) for part in path.replace("\\", "/").split("/") if "=" in part)
    for position, name in ((0, "study"), (2, "method")):
        if name not in table.column_names and name in keys:
            column = pa.DictionaryArray.from_arrays(pa.array([0] * table.num_rows, pa.int32()), pa.array([keys[name]]))
            table = table.add_column(min(position, table.num_columns), name, column)
    return table


def _read_one(fs: pafs.FileSystem, path: str) -> pa.Table | None:
    try:
        with fs.open_input_file(path) as f:
            # A file handle: no hive partition columns are derived from the path. Identity strings
            # and config_json repeat on every row of a trial: kept dictionary-encoded as Parquet
            # stores them, they are not expanded into a string per row (3x faster at 1e6 rows).
            table = pq.read_table(f, read_dictionary=DICTIONARY_COLUMNS)
    except (OSError, pa.ArrowException) as err:
        log.warning("skipping %s: not a readable Parquet file (%s)", path, str(err).splitlines()[0])
        return None
    table = _with_partition_keys(table, path)
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        log.warning("skipping %s: missing column(s) %s, which every results file has (incsweep/core/schema.py)", path, missing)
        return None
    source = pa.DictionaryArray.from_arrays(pa.array([0] * table.num_rows, pa.int32()), pa.array([path]))
    return table.append_column(SOURCE_COLUMN, source)


def _unify(tables: list[pa.Table], paths: list[str]) -> pa.Schema:
    try:
        return pa.unify_schemas([t.schema for t in tables], promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    # Some column has irreconcilable types across files (e.g. a param that is a number in one
    # method's space and a string in another's): read those columns as strings everywhere.
    types: dict[str, set[pa.DataType]] = {}
    for t in tables:
        for field in t.schema:
            types.setdefault(field.name, set()).add(field.type)
    for name, kinds in types.items():
        if len(kinds) < 2:
            continue
        try:
            pa.unify_schemas([pa.schema([(name, k)]) for k in kinds], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            log.warning("column %s has incompatible types %s across files; it is read as strings",
                        name, sorted(map(str, kinds)))
            for i, t in enumerate(tables):
                if name in t.column_names:
                    idx = t.column_names.index(name)
                    tables[i] = t.set_column(idx, pa.field(name, pa.string()), pc.cast(t.column(idx), pa.string()))
    return pa.unify_schemas([t.schema for t in tables], promote_options="permissive")


def load_results(paths: str | Sequence[str]) -> pa.Table:
    """All rows of the result files under ``paths`` (directories, files, globs, pyarrow-fs URIs) as one Table.

    Adds ``source_file``. Rows come ordered by study, trial, task (final row last), whatever files
    hold them. Unreadable files are skipped with a warning; raises FileNotFoundError when a path
    does not exist and ConfigError when no file is usable.
    """
    files = find_result_files(paths)
    if not files:
        raise FileNotFoundError(f"no .parquet result files under {', '.join(map(str, _as_list(paths)))}")
    workers = min(_READ_WORKERS, len(files))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        read = list(pool.map(lambda item: _read_one(*item), files))
    pairs = [(t, p) for t, (_, p) in zip(read, files) if t is not None]
    if not pairs:
        raise ConfigError(f"none of the {len(files)} result file(s) could be used (see the warnings above)")
    pairs = _first_copies(pairs)
    tables, used = [t for t, _ in pairs], [p for _, p in pairs]
    schema = _unify(tables, used)
    tables = [t.cast(pa.schema([schema.field(n) for n in t.column_names])) if t.schema != schema else t
              for t in tables]
    table = pa.concat_tables(tables, promote_options="permissive").select(schema.names)
    # One row order whatever the files: the run that stands for points tied on a front (the knee, a
    # method's best) is the first in this order, and it must not depend on how a study's rows are
    # split into files (compaction's generated names, when a driver was killed, a copied study).
    names = [name for name in _CANONICAL_ORDER if name in table.column_names]
    if not names:
        return table
    # the partition columns are dictionary-encoded, which Arrow does not sort
    key = pa.table({n: table[n].cast(table[n].type.value_type) if pa.types.is_dictionary(table[n].type) else table[n]
                    for n in names})
    return table.take(pc.sort_indices(key, [(n, "ascending") for n in names]))


# study, then trial, then its tasks in order and its final row last
_CANONICAL_ORDER = ("study", "trial_id", "is_final", "task")


def _first_copies(pairs: list[tuple[pa.Table, str]]) -> list[tuple[pa.Table, str]]:
    """Each (study, trial_id) from the first file that holds it: a study directory given twice, or a
    copy of one next to it, would count every trial twice on a front and in every mean."""
    seen: dict[tuple[str, str], str] = {}
    kept, dropped = [], []
    for table, path in pairs:
        pairs_of = table.select(["study", "trial_id"]).group_by(["study", "trial_id"]).aggregate([])
        keys = set(zip(pairs_of["study"].to_pylist(), pairs_of["trial_id"].to_pylist()))  # one per file, usually
        again = [k for k in keys if k in seen]
        if again and len(again) == len(keys):
            dropped.append((path, seen[again[0]], again[0]))
            continue
        if again:  # part of the file repeats trials: keep its other rows
            mask = [k not in seen for k in zip(table["study"].to_pylist(), table["trial_id"].to_pylist())]
            dropped.append((path, seen[again[0]], again[0]))
            table = table.filter(pa.array(mask))
        for k in keys:
            seen.setdefault(k, path)
        kept.append((table, path))
    if dropped:
        path, first, (study, trial) = dropped[0]
        log.warning("%d result file(s) repeat trials already read (e.g. study %s trial %s in %s, first read from %s); "
                    "each trial is counted once, from the first file", len(dropped), study, trial, path, first)
    return kept


def _as_list(paths: str | Sequence[str]) -> list[str]:
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def as_table(data: Any) -> pa.Table:
    """``data`` as a pyarrow Table: a Table as it is, a pandas or polars DataFrame (what ``to_pandas``
    and the user's own filtering give back) converted; anything else is a TypeError naming what is taken."""
    if isinstance(data, pa.Table):
        return data
    kind = type(data).__module__.split(".")[0]
    if kind == "pandas" and hasattr(data, "columns"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if kind == "polars" and hasattr(data, "to_arrow"):
        return data.to_arrow()
    if hasattr(data, "__arrow_c_stream__"):  # any other Arrow PyCapsule producer
        return pa.table(data)
    raise TypeError(f"results as a {type(data).__name__}: give a pyarrow Table (load_results) or a pandas or "
                    "polars DataFrame")


def complete_runs(table: pa.Table | Any) -> pa.Table:
    """Final rows of runs that finished every task with status ``complete`` (pruned/error/diverged never)."""
    table = as_table(table)
    mask = pc.and_(pc.and_(table["is_final"], table["complete"]), pc.equal(table["status"], "complete"))
    return table.filter(pc.fill_null(mask, False))


def to_pandas(table: pa.Table):
    """The Table as a pandas DataFrame (needs pandas; ``pip install pandas``)."""
    try:
        import pandas  # noqa: F401  (only to give a clear message when it is missing)
    except ImportError as err:
        raise ImportError("to_pandas needs pandas: pip install pandas") from err
    return table.to_pandas()


def require_columns(table: pa.Table, names: Iterable[str]) -> None:
    """Raise ConfigError naming any of ``names`` that ``table`` lacks, with the columns it has."""
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise ConfigError(f"column(s) {missing} are not in the results; available: {sorted(table.column_names)}")
