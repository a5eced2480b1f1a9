"""A study's results read whole by pandas, pyarrow, DuckDB and polars with their defaults.

Before: `study` and `method` were hive folders and columns in every file (pandas and pyarrow
failed: string vs dictionary), and each method's files had their own param_* columns (readers that
take the first file's schema dropped the others). Each reader is compared with load_results.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from incsweep.analysis import load_results
from incsweep.study.spec import StudySpec

SYNTH = {"name": "synthetic", "n_classes": 6, "image_size": 16, "train_per_class": 24, "test_per_class": 8,
         "val_fraction": 0.25}
NET = {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 16}


@pytest.fixture(scope="module")
def study(local_ray, tmp_path_factory) -> tuple[Path, pa.Table]:
    from incsweep.study.runner import run_study

    storage = tmp_path_factory.mktemp("readers") / "st"
    spec = StudySpec.from_dict({
        "name": "readers", "methods": ["finetune", "replay", "bmkp"], "scenario": "task_il", "benchmark": SYNTH,
        "search": {"finetune": {**NET, "lr": {"low": 0.01, "high": 0.1}, "momentum": {"choices": [0.0, 0.9]}},
                   "replay": {**NET, "memory_size": {"low": 6, "high": 60}, "lr": {"low": 0.01, "high": 0.1}},
                   "bmkp": {"width": 4, "epochs": 1, "retrain_epochs": 1, "batch_size": 16, "example_num": 16,
                            "gamma": {"low": 0.8, "high": 0.95}}},
        "objectives": ["avg_acc:max", "total_mb:min"], "trials": 6, "concurrency": 2, "storage": str(storage),
        "sampler": {"name": "random"}})
    run_study(spec)
    return storage / "results", load_results(str(storage))


def _expect(table: pa.Table) -> tuple[int, set[str]]:
    return table.num_rows, {c for c in table.column_names if c.startswith(("param_", "stat_"))}


def test_every_file_has_the_study_schema_without_partition_keys(study):
    results, table = study
    schemas = {pq.read_schema(f) for f in results.rglob("*.parquet")}
    assert len(schemas) == 1
    (schema,) = schemas
    assert "study" not in schema.names and "method" not in schema.names
    assert {"param_lr", "param_memory_size", "param_gamma", "param_momentum", "stat_working_acc",
            "stat_knowledge_acc"} <= set(schema.names)
    assert schema.field("param_momentum").type == pa.float64() and schema.field("param_memory_size").type == pa.int64()
    assert set(table["method"].to_pylist()) == {"finetune", "replay", "bmkp"}


def test_pyarrow_reads_it_whole(study):
    results, table = study
    rows, extra = _expect(table)
    for read in (pq.read_table(results), ds.dataset(results, partitioning="hive").to_table()):
        assert read.num_rows == rows and extra <= set(read.column_names)
        assert set(read["method"].to_pylist()) == set(table["method"].to_pylist())


def test_pandas_reads_it_whole(study):
    import pandas as pd

    results, table = study
    rows, extra = _expect(table)
    df = pd.read_parquet(results)
    assert len(df) == rows and extra <= set(df.columns)
    assert df["param_memory_size"].notna().sum() == pa.compute.sum(pa.compute.is_valid(table["param_memory_size"])).as_py()


def test_duckdb_reads_it_whole(study):
    duckdb = pytest.importorskip("duckdb")
    results, table = study
    rows, extra = _expect(table)
    rel = duckdb.sql(f"SELECT * FROM read_parquet('{results}/**/*.parquet', hive_partitioning = true)")
    assert len(rel.fetchall()) == rows and extra <= set(rel.columns) and {"study", "method"} <= set(rel.columns)
    n_bmkp = duckdb.sql(f"SELECT count(*) FROM read_parquet('{results}/**/*.parquet', hive_partitioning = true) "
                        "WHERE method = 'bmkp' AND stat_working_acc IS NOT NULL").fetchall()[0][0]
    assert n_bmkp == sum(1 for m, s in zip(table["method"].to_pylist(), table["stat_working_acc"].to_pylist())
                         if m == "bmkp" and s is not None)


def test_polars_reads_it_whole(study):
    pl = pytest.importorskip("polars")
    results, table = study
    rows, extra = _expect(table)
    df = pl.scan_parquet(f"{results}/**/*.parquet", hive_partitioning=True).collect()
    assert df.height == rows and extra <= set(df.columns) and {"study", "method"} <= set(df.columns)


def test_a_study_in_the_earlier_layout_is_migrated_without_loss(study, tmp_path):
    """Files of the earlier layout (partition keys as columns, only their own method's params) made
    the standard readers fail on the directory; `incsweep study migrate` rewrites them in the
    study's one schema, every row and value kept."""
    import shutil

    from incsweep.cli import main

    results, table = study
    storage = tmp_path / "old"
    shutil.copytree(results.parent, storage, ignore=shutil.ignore_patterns("tune", "prefix_cache"))
    before = load_results(str(storage))
    for f in sorted((storage / "results").rglob("*.parquet")):  # back to the earlier layout
        t = pq.read_table(f, partitioning=None)
        keep = [c for c in t.column_names if not (c.startswith("param_") and t[c].null_count == t.num_rows)]
        t = t.select(keep)
        t = t.append_column("study", pa.array(["readers"] * t.num_rows)).append_column(
            "method", pa.array([f.parent.name.split("=", 1)[1]] * t.num_rows))
        pq.write_table(t, f)
    with pytest.raises(Exception):  # what a user met: pyarrow cannot combine the files
        pq.read_table(storage / "results")
    assert main(["study", "migrate", str(storage), "--dry-run"]) == 0
    assert main(["study", "migrate", str(storage)]) == 0
    assert main(["study", "migrate", str(storage)]) == 0  # idempotent: nothing left to rewrite
    after = pq.read_table(storage / "results")
    assert after.num_rows == before.num_rows
    assert {c for c in after.column_names if c.startswith("param_")} == {c for c in before.column_names
                                                                           if c.startswith("param_")}
    key = ["trial_id", "task", "is_final"]
    a = sorted(zip(*(after[c].to_pylist() for c in key + ["avg_acc", "param_lr"])), key=lambda r: r[:3])
    b = sorted(zip(*(before[c].to_pylist() for c in key + ["avg_acc", "param_lr"])), key=lambda r: r[:3])
    assert a == b
