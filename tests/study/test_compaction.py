"""Compaction of a large study's results: finished trials' files merged into one compacted file per
100 trials (study/results.py), read whole by every reader, each trial once, kill-safe."""

from __future__ import annotations

import math
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from incsweep.analysis import load_results
from incsweep.study.results import (
    COMPACTED_PREFIX,
    compact_leftovers,
    compact_trial_files,
    list_trial_files,
    read_study_rows,
    read_trial_file,
    tidy_compacted,
    trial_path,
)
from tests.analysis.test_analysis_results import write_trial

TRIALS = [(f"t{i}", "a" if i % 2 else "b", 0.5 + 0.05 * i, 1.0 + i) for i in range(6)]


@pytest.fixture
def results(tmp_path) -> Path:
    """Six finished trials of two methods and one still running (tasks, no final row)."""
    storage = tmp_path / "s"
    for tid, method, acc, mb in TRIALS:
        write_trial(storage, tid, method, acc, mb)
    write_trial(storage, "run", "a", 0.9, 1.0, done=2)
    # the running trial's file without its final row, as the sink holds it mid-trial
    rows = [r for r in read_trial_file(str(storage), "s1", "a", "run") if not r["is_final"]]
    from incsweep.study.results import write_trial_file

    write_trial_file(str(storage), rows)
    return storage


def _own_files(storage: Path) -> list[Path]:
    return sorted(p for p in storage.rglob("*.parquet") if not p.name.startswith(COMPACTED_PREFIX))


def _same(rows: list[dict]) -> list[dict]:
    """Rows comparable with ==: NaN (a metric not measured) as a string, since NaN != NaN."""
    return [{k: "nan" if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()}
            for r in sorted(rows, key=lambda r: (r["is_final"], r["task"]))]


def _rows_by_trial(storage: Path) -> dict[str, list[dict]]:
    return {tid: _same(rows) for (_, tid), rows in read_study_rows(str(storage), "s1").by_trial().items()}


def test_compaction_keeps_every_row_and_every_reader_reads_each_trial_once(results):
    before = _rows_by_trial(results)
    one = read_trial_file(str(results), "s1", "a", "t1")
    all_ids = [(m, t) for t, m, _, _ in TRIALS] + [("a", "run")]
    written = compact_trial_files(str(results), "s1", all_ids)

    assert len(written) == 2  # one per method
    assert [p.stem for p in _own_files(results)] == ["run"]  # the running trial keeps its own file
    assert sorted(list_trial_files(str(results), "s1")) == sorted(all_ids)
    assert _same(read_trial_file(str(results), "s1", "a", "t1")) == _same(one)
    assert read_trial_file(str(results), "s1", "a", "t1", compacted=False) == []  # the sink's view: no own file
    assert _rows_by_trial(results) == before
    # the directory is still one Parquet dataset: analysis and a plain pyarrow reader see every row once
    table = load_results(str(results))
    assert table.num_rows == sum(len(r) for r in before.values())
    assert Counter(table.filter(table["is_final"])["trial_id"].to_pylist()) == Counter(t for t, *_ in TRIALS)
    plain = ds.dataset(str(results / "results"), format="parquet", partitioning="hive").to_table()
    assert plain.num_rows == table.num_rows and set(plain["method"].to_pylist()) == {"a", "b"}


def test_a_kill_between_rename_and_deletions_counts_each_trial_once_and_the_next_start_tidies(results, caplog):
    keep = results.parent / "keep.parquet"
    own = Path(trial_path(str(results), "s1", "a", "t1"))
    shutil.copy(own, keep)
    before = _rows_by_trial(results)
    compact_trial_files(str(results), "s1", [(m, t) for t, m, _, _ in TRIALS])
    shutil.copy(keep, own)  # as if the driver died after the rename, before deleting t1's own file

    assert _rows_by_trial(results) == before  # internal readers: once
    table = load_results(str(results))
    assert Counter(table.filter(table["is_final"])["trial_id"].to_pylist())["t1"] == 1
    assert any("repeat trials already read" in r.getMessage() for r in caplog.records)

    assert tidy_compacted(str(results), "s1") == 1 and not own.exists()
    assert tidy_compacted(str(results), "s1") == 0
    assert _rows_by_trial(results) == before


def test_rows_read_without_the_skipped_columns_are_the_same_rows(results):
    """``study status`` reads without ``config_json``: the same rows and every other column, from own and
    compacted files alike."""
    compact_trial_files(str(results), "s1", [(m, t) for t, m, _, _ in TRIALS[:4]])
    full = read_study_rows(str(results), "s1").table
    lean = read_study_rows(str(results), "s1", skip=("config_json",)).table
    assert "config_json" in full.column_names and "config_json" not in lean.column_names
    assert lean.num_rows == full.num_rows == 6 * 4 + 2  # six finished trials of 3 tasks, one running with 2
    assert _same(lean.to_pylist()) == _same(full.drop_columns(["config_json"]).to_pylist())


def test_unfinished_or_lone_trials_are_not_compacted(results):
    assert compact_trial_files(str(results), "s1", [("a", "run"), ("a", "t1")]) == []  # one finished: nothing to merge
    assert len(_own_files(results)) == 7


def test_a_drivers_end_compacts_the_finished_leftovers_only_of_a_compacting_study(results):
    """No compacted file (a study under COMPACT_EVERY trials): one file per trial stays. Once one exists,
    every finished trial's own file is merged at a driver's end; a running trial keeps its own."""
    before = _rows_by_trial(results)
    assert compact_leftovers(str(results), "s1") == [] and len(_own_files(results)) == 7
    compact_trial_files(str(results), "s1", [("a", "t1"), ("a", "t3")])  # as the sink does mid-study
    written = compact_leftovers(str(results), "s1")
    assert len(written) == 1 and "method=b" in written[0]  # t0, t2, t4 merged
    # method a's one finished leftover has nothing to be merged with; the running trial is left alone
    assert sorted(p.stem for p in _own_files(results)) == ["run", "t5"]
    assert _rows_by_trial(results) == before
    assert compact_leftovers(str(results), "s1") == []  # nothing left but the running trial


def test_leftovers_after_an_interrupted_compaction_are_merged_once(results):
    """A kill between a compaction's rename and its deletions left t1 both in a compacted file and in its
    own: the driver's end tidies first, so no trial lands in two compacted files."""
    own = Path(trial_path(str(results), "s1", "a", "t1"))
    keep = results.parent / "keep.parquet"
    shutil.copy(own, keep)
    compact_trial_files(str(results), "s1", [("a", "t1"), ("a", "t3")])
    shutil.copy(keep, own)
    compact_leftovers(str(results), "s1")
    finals = Counter()
    for path in results.rglob(f"{COMPACTED_PREFIX}*.parquet"):
        table = pq.read_table(path, partitioning=None)
        finals.update(table.filter(table["is_final"])["trial_id"].to_pylist())
    assert finals == Counter({"t0": 1, "t1": 1, "t2": 1, "t3": 1, "t4": 1})  # t5: a lone leftover of a
    assert sorted(p.stem for p in _own_files(results)) == ["run", "t5"]


def test_the_rows_order_does_not_depend_on_how_they_are_split_into_files(results):
    """Which run stands for points tied on a front (the knee, a method's best) is the first in the rows'
    order, so that order must not depend on compaction: the same study, compacted or not, loads alike."""
    def loaded():
        return load_results(str(results)).drop_columns(["source_file"]).to_pylist()

    before = loaded()
    compact_trial_files(str(results), "s1", [("a", "t5"), ("a", "t3"), ("b", "t4"), ("b", "t0")])
    after = loaded()
    assert _same(after) == _same(before) and [r["trial_id"] for r in after] == [r["trial_id"] for r in before]
    assert [r["trial_id"] for r in after if r["is_final"]] == sorted(t for t, *_ in TRIALS)


def test_a_damaged_own_file_is_reported_not_fatal(results):
    compact_trial_files(str(results), "s1", [(m, t) for t, m, _, _ in TRIALS])
    Path(trial_path(str(results), "s1", "a", "run")).write_bytes(b"not parquet")
    stored = read_study_rows(str(results), "s1")
    assert list(stored.damaged) == [("a", "run")]
    assert len(stored.by_trial()) == len(TRIALS)


@pytest.mark.ray
def test_a_study_compacts_as_it_goes_and_status_resume_and_analyze_read_it(local_ray, tmp_path, monkeypatch):
    """The sink compacts every COMPACT_EVERY finished trials (3 here, 100 in a real study), and the driver
    the last ones at its end: a finished study of 8 trials is three compacted files; every reader counts 8."""
    import incsweep.study.sink as sink
    from incsweep.study.runner import run_study
    from incsweep.study.spec import StudySpec
    from incsweep.study.summary import summarize

    monkeypatch.setattr(sink, "COMPACT_EVERY", 3)
    forgotten = []  # what Tune still keeps of each finished trial's history, after the sink's end
    real_forget = sink._forget_tune_history

    def forget(trial):
        meta = trial.run_metadata
        assert meta.metric_analysis  # Tune kept min/max/avg/windows of every numeric key
        assert meta.checkpoint_manager.latest_checkpoint_result is not None  # and each task's checkpoint result
        real_forget(trial)
        forgotten.append(len(meta.metric_analysis) + len(meta.metric_n_steps)
                         + (meta.checkpoint_manager.latest_checkpoint_result is not None))

    monkeypatch.setattr(sink, "_forget_tune_history", forget)
    spec = StudySpec.from_dict({
        "name": "c", "methods": ["finetune"], "trials": 8, "concurrency": 2, "storage": str(tmp_path / "s"),
        "benchmark": {"name": "synthetic", "n_classes": 4, "image_size": 8, "train_per_class": 8,
                      "test_per_class": 4, "val_fraction": 0.25},
        "search": {"finetune": {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 8}}})
    summary = run_study(spec)
    assert summary.statuses == Counter(complete=8) and summary.done
    assert forgotten == [0] * 8  # the driver keeps no metric analysis or checkpoint results of finished trials
    files = sorted(Path(spec.storage, "results").rglob("*.parquet"))
    assert sum(f.name.startswith(COMPACTED_PREFIX) for f in files) == 3 and len(files) == 3
    rows = read_study_rows(spec.storage, "c").by_trial()
    assert len(rows) == 8 and all(len(r) == 3 for r in rows.values())  # 2 tasks + the final row
    assert summarize(spec.storage, spec).statuses == Counter(complete=8)
    assert load_results(spec.storage).num_rows == 24
    assert pq.read_table(Path(spec.storage, "results")).num_rows == 24
    # a finished trial is never continued: its task checkpoints went with its end
    assert not list(Path(spec.storage, "tune").glob("trial_*/checkpoint_*"))
    again = run_study(spec, resume=True)  # nothing left to run: the compacted trials count as finished
    assert again.statuses == Counter(complete=8)


def test_a_compacted_file_in_an_older_schema_is_migrated_into_its_trials_files(results):
    import pyarrow as pa

    from incsweep.study.results import migrate_trial_files

    before = _rows_by_trial(results)
    (part,) = compact_trial_files(str(results), "s1", [(m, t) for t, m, _, _ in TRIALS if m == "a"])
    current = pq.read_schema(part)
    newer = pa.schema([*current, pa.field("param_newly_searched", pa.float64())])
    assert migrate_trial_files(str(results), "s1", newer, dry_run=True)[0] == 5  # 4 own files + the compacted one
    assert Path(part).exists()
    rewritten, _ = migrate_trial_files(str(results), "s1", newer)
    assert rewritten == 5 and not Path(part).exists()
    assert all("param_newly_searched" in pq.read_schema(f).names for f in _own_files(results))
    after = {t: [{k: v for k, v in r.items() if k != "param_newly_searched"} for r in rows]
             for t, rows in _rows_by_trial(results).items()}
    assert after == before


def test_files_written_before_trial_number_mix_with_new_ones(tmp_path):
    """A study started by an incsweep that recorded no ``trial_number`` and resumed by this one holds
    files with and without the column: compaction, the study's reader and the loader take both (the
    old rows with a null number), and the convergence curve puts the old trials first."""
    from incsweep.analysis import summarize
    from incsweep.analysis.insight import proposal_order

    storage = tmp_path / "s"
    for tid, method, acc, mb in TRIALS[:3]:  # the earlier driver's trials: files without the column
        path = Path(write_trial(storage, tid, method, acc, mb))
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(["trial_number"]), path)
        assert "trial_number" not in pq.read_schema(path).names
    for number, (tid, method, acc, mb) in enumerate(TRIALS[3:], start=3):
        write_trial(storage, tid, method, acc, mb, number=number)
    compact_trial_files(str(storage), "s1", [(m, t) for t, m, _, _ in TRIALS])
    assert [p.name.startswith(COMPACTED_PREFIX) for p in storage.rglob("*.parquet")] == [True, True]  # a and b
    numbers = {tid: {r["trial_number"] for r in rows} for tid, rows in _rows_by_trial(storage).items()}
    assert numbers == {"t0": {None}, "t1": {None}, "t2": {None}, "t3": {3}, "t4": {4}, "t5": {5}}
    finals = summarize(load_results(str(storage))).table
    finals = finals.filter(finals["is_final"])
    ids = finals["trial_id"].to_pylist()
    assert [ids[i] for i in proposal_order(finals)] == ["t0", "t1", "t2", "t3", "t4", "t5"]
