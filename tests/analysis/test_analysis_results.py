"""analysis over result files written by the real sink (study/results.py): loading, mixed param
schemas, corrupt files, complete-only fronts, summaries, plots, report and CLI exit codes."""

from __future__ import annotations

import csv
import json
import logging
import struct
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from incsweep.analysis import complete_runs, load_results, pareto_front, summarize, to_pandas
from incsweep.cli import main
from incsweep.core.errors import ConfigError
from incsweep.study.results import final_row, task_row, write_trial_file

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
MIB = 2**20


def _task(task: int, n_tasks: int, acc: float, mb: float, wall_s: float = 0.5) -> dict:
    """A TaskResult.as_dict()-shaped record: acc is the seen accuracy after every task so far."""
    metrics = {"avg_acc": acc, "last_acc": acc - 0.01 * task, "forgetting": 0.0, "bwt": 0.0}
    test = {k: (v - 0.02 if "acc" in k else v) for k, v in metrics.items()}
    return {"task": task, "n_tasks": n_tasks, "scenario": "class_il",
            "acc_row": [acc] * (task + 1), "val_acc_row": [acc - 0.05] * (task + 1), "val": metrics, "test": test,
            "memory": {"model_bytes": int(mb * MIB), "exemplar_bytes": 0, "extra_bytes": 0, "n_exemplars": 0,
                       "train_state_bytes": 0}, "wall_s": wall_s}


def write_trial(storage, trial_id: str, method: str, acc: float, mb: float, *, study: str = "s1",
                status: str = "complete", n_tasks: int = 3, done: int | None = None, params: dict | None = None,
                wall_s: float = 0.5, config: dict | None = None, number: int | None = None,
                finished_at: datetime = T0) -> str:
    done = n_tasks if done is None else done
    seed = (config or {}).get("seed", 0)
    rows = [task_row(_task(t, n_tasks, acc, mb, wall_s), study=study, trial_id=trial_id, method=method,
                     benchmark="synthetic", seed=seed, config_json=json.dumps(config or {}), params=params or {},
                     started_at=T0,
                     finished_at=finished_at, version="test", trial_number=number)
            for t in range(done)]
    return write_trial_file(str(storage), rows + [final_row(rows, status=status, finished_at=finished_at)])


@pytest.fixture
def study_dir(tmp_path):
    s = tmp_path / "storage"
    # method a: front (0.5, 1 MB), (0.7, 2 MB), (0.8, 4 MB); (0.6, 3 MB) dominated
    for tid, acc, mb in [("a1", 0.5, 1.0), ("a2", 0.7, 2.0), ("a3", 0.6, 3.0), ("a4", 0.8, 4.0)]:
        write_trial(s, tid, "a", acc, mb, params={"lr": 0.1, "memory_size": 20})
    # method b: its params have other names and another type for lr (a string choice)
    for tid, acc, mb, wall in [("b1", 0.65, 1.5, 0.5), ("b2", 0.75, 5.0, 0.1)]:
        write_trial(s, tid, "b", acc, mb, params={"lr": "cosine", "gamma": 0.9}, wall_s=wall)
    # better than everything, but never on a front: pruned, error, diverged
    write_trial(s, "p1", "a", 0.99, 0.1, status="pruned", done=2)
    write_trial(s, "e1", "b", 0.99, 0.1, status="error", done=3)
    write_trial(s, "d1", "b", 0.99, 0.1, status="diverged", done=1)
    return s


def test_load_unifies_schemas_and_only_complete_runs_reach_the_front(study_dir):
    table = load_results(str(study_dir))
    assert table.num_rows == 4 * 4 + 2 * 4 + 3 + 4 + 2
    # lr is a float for method a and a string for method b: read as strings everywhere
    assert table.schema.field("param_lr").type == pa.string()
    assert table.schema.field("param_gamma").type == pa.float64()
    assert complete_runs(table).num_rows == 6
    front = pareto_front(table)
    assert sorted(front["trial_id"].to_pylist()) == ["a1", "a2", "a4", "b1"]  # b2 (.75, 5 MB) < a4 (.8, 4 MB)
    by = pareto_front(table, by=["method"])
    assert by["trial_id"].to_pylist() == ["a4", "a2", "a1", "b2", "b1"]  # per group, best accuracy first
    test_front = pareto_front(table, "avg_acc:max,total_mb:min", split="test")
    assert sorted(test_front["trial_id"].to_pylist()) == sorted(front["trial_id"].to_pylist())
    df = to_pandas(front)
    assert set(df["method"]) == {"a", "b"}


def test_inputs_globs_files_uris_and_hidden_temp_files(study_dir):
    one = study_dir / "results" / "study=s1" / "method=a" / "a1.parquet"
    (one.parent / ".a9.abc.tmp.parquet").write_bytes(b"partial")  # a sink temp file: never read
    assert load_results(str(one)).num_rows == 4
    assert load_results(str(study_dir / "results" / "*" / "method=b")).num_rows == 2 * 4 + 4 + 2
    assert load_results(f"file://{study_dir}").num_rows == load_results(str(study_dir)).num_rows
    both = load_results([str(study_dir / "results" / "study=s1"), str(one)])  # a file counted once
    assert both.num_rows == load_results(str(study_dir)).num_rows
    with pytest.raises(FileNotFoundError, match="nothere: no such file"):
        load_results(str(study_dir / "nothere"))
    with pytest.raises(FileNotFoundError, match="matches no file"):
        load_results(str(study_dir / "*.nothing"))


def test_corrupt_and_foreign_files_are_skipped_with_a_warning(study_dir, caplog):
    bad = study_dir / "results" / "study=s1" / "method=a" / "broken.parquet"
    bad.write_bytes(b"PAR1" + struct.pack("<i", 12345) + b"garbage" + b"PAR1")
    foreign = study_dir / "results" / "study=s1" / "method=a" / "foreign.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), foreign)
    with caplog.at_level(logging.WARNING, logger="incsweep.analysis.load"):
        table = load_results(str(study_dir))
    assert table.num_rows == 33  # everything else is used
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert f"skipping {bad}: not a readable Parquet file" in messages
    # study and method come from the hive path now; the rest of the identity is missing
    assert f"skipping {foreign}: missing column(s) ['trial_id'" in messages
    only_bad = study_dir / "only"
    only_bad.mkdir()
    (only_bad / "x.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ConfigError, match="none of the 1 result file"):
        load_results(str(only_bad))


def test_summary_groups_hypervolume_auc_and_picks(study_dir):
    s = summarize(load_results(str(study_dir)), reference="avg_acc=0.4,total_mb=6", under_mb=[2.0, 0.5])
    a, b = s.groups[("a",)], s.groups[("b",)]
    assert a.statuses == {"complete": 4, "pruned": 1} and b.statuses == {"complete": 2, "error": 1, "diverged": 1}
    trial = lambda i: None if i is None else s.row(i)["trial_id"]  # noqa: E731
    assert [trial(i) for i in a.front] == ["a1", "a2", "a4"]  # sorted by memory
    # hypervolume by hand (acc over 0.4, memory under 6): a: staircase 0.1*5 + 0.2*4 + 0.1*2 = 1.5
    assert a.hypervolume == pytest.approx(0.1 * 5 + 0.2 * 4 + 0.1 * 2)
    assert b.hypervolume == pytest.approx(0.25 * 4.5 + 0.1 * 1.0)
    # all: a1 (.5,1), b1 (.65,1.5), a2 (.7,2), a4 (.8,4), b2 (.75,5) dominated by a4
    assert s.overall.hypervolume == pytest.approx(0.1 * 0.5 + 0.25 * 0.5 + 0.3 * 2 + 0.4 * 2)
    assert s.overall.best_under == {2.0: s.overall.best_under[2.0], 0.5: None}
    assert trial(s.overall.best_under[2.0]) == "a2" and trial(b.best_under[2.0]) == "b1"
    assert trial(a.knee) == "a2"
    # AUC over the range both methods cover, [1.5, 4] MB: a's curve through (1,.5),(2,.7),(4,.8)
    assert (a.auc.lo_mb, a.auc.hi_mb) == (1.5, 4.0) == (s.overall.auc.lo_mb, s.overall.auc.hi_mb)
    assert a.auc.auc_a == pytest.approx(0.5 * (0.6 + 0.7) / 2 + 2 * (0.7 + 0.8) / 2)
    # last_acc = acc - 0.02 after the third task in these rows
    assert a.auc.auc_l == pytest.approx(a.auc.auc_a - 0.02 * 2.5)
    # b's curve (1.5, .65) -> (5, .75): interpolated at 4 MB
    assert b.auc.auc_a == pytest.approx(2.5 * (0.65 + (0.65 + 0.1 * 2.5 / 3.5)) / 2)
    derived = summarize(load_results(str(study_dir)))
    assert derived.reference_derived and derived.reference.tolist() == [0.5, 5.0]  # worst acc, worst MB


def test_three_objectives_and_errors(study_dir):
    table = load_results(str(study_dir))
    s = summarize(table, "avg_acc:max,total_mb:min,wall_s:min", by=(), reference="avg_acc=0.4,total_mb=6,wall_s=2")
    # b2 is the fastest run (0.3 s against 1.5 s), so the third objective puts it back on the front
    assert sorted(s.row(i)["trial_id"] for i in s.overall.front) == ["a1", "a2", "a4", "b1", "b2"]
    two = summarize(table, by=(), reference="avg_acc=0.4,total_mb=6").overall.hypervolume
    # every run but b2 has wall 1.5: its slab [1.5, 2] holds the 2-D volume, b2 adds its own box below
    assert s.overall.hypervolume == pytest.approx(two * 0.5 + (0.75 - 0.4) * (6 - 5) * (1.5 - 0.3))
    with pytest.raises(ConfigError, match=r"column\(s\) \['nope'\] are not in the results"):
        summarize(table, "nope:max")
    with pytest.raises(ConfigError, match="no complete run"):
        summarize(table.filter(pa.compute.invert(table["complete"])))
    with pytest.raises(ConfigError, match="not an objective"):
        summarize(table, reference="acc=1,total_mb=2")


def test_cli_analyze_writes_report_and_plots(study_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["analyze", str(study_dir), "--under-mb", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "complete 6" in text and "pruned 1" in text and "diverged 1" in text
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("group"))
    assert "hypervolume" in header and "AUC-A" in header and "best <= 2 MB" in header
    assert any(line.startswith("a ") and "a2 (0.7000 @ 2.000 MB)" in line for line in lines)
    for name in ("accuracy_vs_memory.png", "task_curves.png", "convergence.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3 and "http" not in html.split("<body>")[1].split("data:")[0]
    assert "a4" in html and "p1" not in (out / "front.csv").read_text()


def test_convergence_counts_every_trial_and_ends_at_the_summarys_hypervolume(study_dir):
    """The curve has a point per finished trial (pruned, failed and diverged ones too: they spent
    compute), compute grows by each trial's trained tasks, and the last value is the front's."""
    from incsweep.analysis.insight import convergence

    summary = summarize(load_results(str(study_dir)))
    c = convergence(summary)
    assert list(c.trials) == list(range(1, 10))  # 6 complete + pruned + error + diverged
    # every task row costs its cpu_s (the fixture: wall 0.5 s, cpu None -> wall): 4*4+2*4+3+4+2 task rows
    steps = np.diff(np.concatenate([[0.0], c.compute_s]))
    assert sorted(np.round(steps, 6)) == sorted([1.5] * 4 + [1.5, 0.3] + [1.0, 1.5, 0.5])
    assert c.hypervolume[-1] == pytest.approx(summary.overall.hypervolume)
    assert all(np.diff(c.hypervolume) >= 0)


def test_convergence_equals_the_volume_of_every_run_so_far_recomputed_from_scratch(tmp_path):
    """The curve keeps only the front and recomputes the volume only when a trial joins it; at every
    trial it must equal the hypervolume of all complete runs so far, ties and dominated ones included."""
    from incsweep.analysis.hypervolume import hypervolume
    from incsweep.analysis.insight import convergence
    from incsweep.analysis.pareto import objective_matrix

    rng = np.random.default_rng(3)
    # coarse values: many ties and dominated runs, as when an objective saturates
    points = [(round(float(rng.uniform(0.3, 0.9)), 1), float(rng.integers(1, 6))) for _ in range(40)]
    for i, (acc, mb) in enumerate(points):  # equal finish times: the curve follows the files' order
        write_trial(tmp_path / "s", f"t{i:03d}", "a", acc, mb)
    summary = summarize(load_results(str(tmp_path / "s")))
    c = convergence(summary)
    assert c is convergence(summary)  # analyze draws, tabulates and reports it: computed once
    values = objective_matrix(summary.runs, summary.objectives)
    row = {t: i for i, t in enumerate(summary.runs["trial_id"].to_pylist())}
    senses = [o.sense for o in summary.objectives]
    scratch = [hypervolume(values[[row[f"t{j:03d}"] for j in range(k + 1)]], summary.reference, senses)
               for k in range(len(points))]
    assert c.hypervolume.tolist() == pytest.approx(scratch, abs=1e-12)
    assert len(set(c.hypervolume.tolist())) > 3  # the front moved several times: the check is not vacuous


def test_convergence_follows_the_order_trials_were_proposed_not_the_order_they_finished(tmp_path):
    """Two trials at a time finish in an order that changes run to run; the curve must not: trials in
    Optuna's number order, rows without a number (older studies, runs outside a study) first by finish
    time. Each trial finishes in another order than it was proposed here, so finish order fails."""
    from datetime import timedelta

    from incsweep.analysis.hypervolume import hypervolume
    from incsweep.analysis.insight import convergence
    from incsweep.analysis.pareto import objective_matrix

    # (trial, number, seconds after T0 it finished, acc, MB): proposed z?, a, b, c, d; finished d, b, z, c, a
    trials = [("a", 0, 9, 0.5, 1.0), ("b", 1, 2, 0.7, 3.0), ("c", 2, 5, 0.8, 2.0), ("d", 3, 1, 0.9, 4.0),
              ("z", None, 3, 0.6, 5.0)]
    for tid, number, seconds, acc, mb in trials:
        write_trial(tmp_path / "s", tid, "a", acc, mb, number=number, finished_at=T0 + timedelta(seconds=seconds))
    summary = summarize(load_results(str(tmp_path / "s")))
    values = objective_matrix(summary.runs, summary.objectives)
    row = {t: i for i, t in enumerate(summary.runs["trial_id"].to_pylist())}
    senses = [o.sense for o in summary.objectives]

    def curve(order: str) -> list[float]:
        return [hypervolume(values[[row[t] for t in order[: k + 1]]], summary.reference, senses)
                for k in range(len(order))]

    got = convergence(summary).hypervolume.tolist()
    assert got == pytest.approx(curve("zabcd"), abs=1e-12)
    assert curve("zabcd") != pytest.approx(curve("dbzca"), abs=1e-6)  # finish order would give another curve


def test_export_warns_once_for_runs_recorded_with_other_code(study_dir, tmp_path, caplog):
    """A front of thousands of runs recorded with another checkout: one warning line, not one per file."""
    with caplog.at_level(logging.WARNING, logger="incsweep"):
        assert main(["export", str(study_dir), "--out", str(tmp_path / "x")]) == 0
    warned = [r.getMessage() for r in caplog.records if "recorded with other code" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("4 of the 4 exported run(s)") and "(test, e.g. trial" in warned[0]
    assert len(list((tmp_path / "x").glob("*.yaml"))) == 4


def test_importance_names_the_parameter_that_drives_each_objective(tmp_path):
    """Ten runs where memory_size sets the memory and lr the accuracy: PED-ANOVA ranks them so."""
    from incsweep.analysis.insight import importances

    rng = np.random.default_rng(0)
    for i in range(12):
        lr, memory_size = float(rng.uniform(0.01, 0.5)), int(rng.integers(10, 200))
        write_trial(tmp_path / "s", f"t{i}", "replay", acc=0.2 + lr, mb=0.5 + memory_size / 100,
                    params={"lr": lr, "memory_size": memory_size, "width": int(rng.integers(4, 32))})
    found = importances(summarize(load_results(str(tmp_path / "s"))))["replay"]
    assert found["avg_acc"][0][0] == "lr" and found["total_mb"][0][0] == "memory_size"
    few = tmp_path / "few"
    write_trial(few, "x", "a", 0.5, 1.0, params={"lr": 0.1})
    assert "importance needs at least" in importances(summarize(load_results(str(few))))["a"]


def test_analysis_takes_pandas_and_polars_frames_alike(study_dir):
    """A notebook filters with pandas or polars and hands the frame back: the same front and summary."""
    import polars as pl

    table = load_results(str(study_dir))
    fronts = [sorted(pareto_front(t)["trial_id"].to_pylist()) for t in (table, to_pandas(table), pl.from_arrow(table))]
    assert fronts == [["a1", "a2", "a4", "b1"]] * 3
    only_a = to_pandas(table).query("method == 'a'")
    assert sorted(pareto_front(only_a)["trial_id"].to_pylist()) == ["a1", "a2", "a4"]
    assert summarize(pl.from_arrow(table)).overall.hypervolume == summarize(table).overall.hypervolume
    assert complete_runs(to_pandas(table)).num_rows == 6
    with pytest.raises(TypeError, match="give a pyarrow Table .* or a pandas or polars DataFrame"):
        pareto_front([1, 2, 3])


def test_front_csv_is_data_every_reader_types(study_dir, tmp_path):
    """front.csv: missing values are empty (not '-'), numbers at full precision, test-split columns
    included, so pandas and polars read numeric columns as numbers equal to what Parquet holds."""
    import pandas as pd
    import polars as pl

    out = tmp_path / "out"
    assert main(["analyze", str(study_dir), "--out", str(out)]) == 0
    df = pd.read_csv(out / "front.csv")
    assert sorted(df["trial_id"]) == ["a1", "a2", "a4", "b1"]
    for column in ("avg_acc", "total_mb", "test_avg_acc", "test_last_acc", "memory_size", "gamma"):
        assert pd.api.types.is_numeric_dtype(df[column]), column
    assert df.set_index("trial_id")["gamma"].isna().to_dict() == {"a1": True, "a2": True, "a4": True, "b1": False}
    runs = to_pandas(complete_runs(load_results(str(study_dir)))).set_index("trial_id")
    for _, row in df.iterrows():
        assert row["total_mb"] == runs.loc[row["trial_id"], "total_mb"]  # every digit, not 4-6 of them
        assert row["test_avg_acc"] == runs.loc[row["trial_id"], "test_avg_acc"]
    assert pl.read_csv(out / "front.csv").schema["test_avg_acc"] == pl.Float64
    with open(out / "front.csv", newline="") as fh:
        assert all(field != "-" for row in csv.reader(fh) for field in row)


def test_cli_errors_are_one_line_exit_2(study_dir, tmp_path, capsys):
    assert main(["analyze", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing: no such file or directory")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["analyze", str(empty)]) == 2
    assert "no .parquet result files" in capsys.readouterr().err
    assert main(["analyze", str(study_dir), "--objectives", "avg_acc:best"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "direction 'best' is not allowed; use max or min" in err
    assert main(["export", str(study_dir), "--out", str(tmp_path / "x"), "--select", "median"]) == 2
    assert "--select 'median' is not allowed" in capsys.readouterr().err
    assert main(["export", str(study_dir), "--out", str(tmp_path / "x"), "--select", "best-under-mb=0.01"]) == 2
    assert "no complete run qualifies" in capsys.readouterr().err


def test_accuracy_memory_legend_hides_no_point(study_dir):
    """The legend sits outside the axes: a fixed corner inside hid dominated runs in the demo."""
    from incsweep.analysis.plots import accuracy_vs_memory_figure

    fig = accuracy_vs_memory_figure(summarize(load_results(str(study_dir))))
    fig.canvas.draw()
    (ax,) = fig.axes
    legend = ax.get_legend().get_window_extent()
    assert not legend.overlaps(ax.get_window_extent())


def test_analyze_and_export_json_match_the_tables(study_dir, tmp_path, capsys):
    """--json prints one object with what the tables show."""
    import json as _json

    assert main(["analyze", str(study_dir), "--json"]) == 0
    data = _json.loads(capsys.readouterr().out)
    s = summarize(load_results(str(study_dir)))
    assert data["objectives"] == ["avg_acc:max", "total_mb:min"] and data["overall"]["key"] is None
    assert [r["trial_id"] for r in data["overall"]["front"]] == [s.row(int(i))["trial_id"] for i in s.overall.front]
    assert {g["label"] for g in data["groups"]} == {"a", "b"}
    assert data["overall"]["hypervolume"] == pytest.approx(s.overall.hypervolume)
    out = tmp_path / "ex"
    assert main(["export", str(study_dir), "--out", str(out), "--json"]) == 0
    exported = _json.loads(capsys.readouterr().out)["exported"]
    assert sorted(e["path"] for e in exported) == sorted(str(p) for p in out.glob("*.yaml"))
    assert all("avg_acc" in e["metrics"] for e in exported)


def test_figures_in_pdf_svg_and_at_a_chosen_dpi(study_dir, tmp_path, capsys):
    """--format and --dpi: vector files for papers, PNGs at print resolution."""
    from matplotlib.image import imread

    low, high = tmp_path / "low", tmp_path / "high"
    assert main(["analyze", str(study_dir), "--out", str(low)]) == 0
    assert main(["analyze", str(study_dir), "--out", str(high), "--format", "png,pdf,svg", "--dpi", "220"]) == 0
    capsys.readouterr()
    for stem in ("accuracy_vs_memory", "task_curves"):
        assert (high / f"{stem}.pdf").read_bytes().startswith(b"%PDF")
        assert b"<svg" in (high / f"{stem}.svg").read_bytes()[:2000]
        assert imread(high / f"{stem}.png").shape[1] > 1.8 * imread(low / f"{stem}.png").shape[1]  # 220 vs 110 dpi
        assert not (low / f"{stem}.pdf").exists()
    assert main(["analyze", str(study_dir), "--out", str(tmp_path / "x"), "--format", "jpg"]) == 2
    assert "--format 'jpg': allowed png, pdf, svg" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_plots_take_an_ax_return_the_figure_and_label_for_people(tmp_path):
    """plot functions draw into a caller's axes; axis labels are words with units; methods
    are named as their papers write them."""
    from matplotlib.figure import Figure

    from incsweep.analysis.plots import accuracy_vs_memory_figure, task_curves_figure

    s = tmp_path / "st"
    for tid, acc, mb in [("i1", 0.5, 1.0), ("i2", 0.7, 2.0)]:
        write_trial(s, tid, "icarl", acc, mb)
    write_trial(s, "l1", "lwf", 0.4, 0.5)
    summary = summarize(load_results(str(s)), by=["method"])
    fig = Figure()
    left, mid, right = fig.subplots(1, 3)
    assert accuracy_vs_memory_figure(summary, ax=left) is fig
    assert task_curves_figure(summary, axes=(mid, right)) is fig
    assert left.get_xlabel() == "memory (MB)" and left.get_ylabel() == "accuracy, %"  # a caller's axes: short
    legend = [t.get_text() for t in left.get_legend().get_texts()]
    assert legend == ["iCaRL", "LwF"]  # methods as papers write them, not "icarl"
    assert mid.get_ylabel().startswith("accuracy on all seen classes (validation split)")
    own = accuracy_vs_memory_figure(summary)  # the library's own figure: full labels and counts
    (ax,) = own.axes
    assert ax.get_xlabel() == "total memory (MB, 2^20 bytes)"
    assert ax.get_ylabel() == "average incremental accuracy (validation split), %"
    assert any(t.get_text().startswith("iCaRL: front 2 of 2") for t in ax.get_legend().get_texts())


def test_in_a_small_axes_of_the_users_nothing_overlaps(study_dir):
    """A notebook's 4x3 in subplot: the legend stays off the x label, the y label off the title, and
    the title inside the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from incsweep.analysis.plots import accuracy_vs_memory_figure

    fig = Figure(figsize=(4, 3), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    accuracy_vs_memory_figure(summarize(load_results(str(study_dir))), ax=ax)
    fig.tight_layout()
    renderer = fig.canvas.get_renderer()
    box = {name: part.get_window_extent(renderer) for name, part in
           (("legend", ax.get_legend()), ("xlabel", ax.xaxis.label), ("ylabel", ax.yaxis.label), ("title", ax.title))}
    assert not box["legend"].overlaps(box["xlabel"]) and not box["ylabel"].overlaps(box["title"])
    assert 0 <= box["title"].x0 and box["title"].x1 <= fig.bbox.x1


def test_several_seeds_of_one_config_get_mean_and_std(tmp_path):
    from matplotlib.container import ErrorbarContainer

    from incsweep.analysis.plots import accuracy_vs_memory_figure, seed_groups

    s = tmp_path / "st"
    base = {"method": "replay", "benchmark": {"name": "synthetic"}, "method_config": {"lr": 0.1}}
    for k, acc in enumerate([0.60, 0.64, 0.68]):
        write_trial(s, f"r{k}", "replay", acc, 2.0, config={**base, "seed": k})
    write_trial(s, "other", "replay", 0.5, 1.0, config={**base, "method_config": {"lr": 0.2}, "seed": 0})
    summary = summarize(load_results(str(s)))
    groups = seed_groups(summary)
    assert len(groups) == 1 and sorted(groups[0][1].tolist()) == pytest.approx([0.60, 0.64, 0.68])
    ax = accuracy_vs_memory_figure(summary).axes[0]
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    x, y = bars.lines[0].get_data()
    assert y[0] == pytest.approx(0.64)  # the mean of the three seeds
    assert any("mean +- std over seeds" in t.get_text() for t in ax.get_legend().get_texts())


def test_report_states_the_study_and_its_front_on_the_test_split(study_dir, tmp_path, capsys):
    """benchmark, scenario, objectives, constraints, sampler, scheduler, seeds and code
    version, and the front's test-split metrics."""
    import yaml as _yaml

    (study_dir / "study.yaml").write_text(_yaml.safe_dump({
        "name": "s1", "objectives": ["avg_acc:max", "total_mb:min"], "constraints": ["total_mb <= 4"],
        # stored specs hold every option of every kind: the report shows only those that act
        "sampler": {"name": "tpe", "startup_trials": 5, "multivariate": False, "population_size": 50},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2.0, "rule": "dominated"},
        "trials": 12, "seed": 3}, sort_keys=False))
    out = tmp_path / "out"
    assert main(["analyze", str(study_dir), "--out", str(out)]) == 0
    capsys.readouterr()
    html = (out / "report.html").read_text()
    for words in ("<h2>Study s1</h2>", "<td>benchmark</td><td>synthetic</td>", "<td>scenario</td><td>class_il</td>",
                  "<td>constraints</td><td>total_mb &lt;= 4</td>",
                  "<td>sampler</td><td>name=tpe, startup_trials=5, multivariate=False</td>",
                  "<td>scheduler</td><td>name=asha, grace_period=1, reduction_factor=2.0, rule=dominated</td>",
                  "<td>run seeds</td><td>0</td>",
                  "<td>code version</td><td>test</td>", "The front on the test split",
                  "<th>average incremental accuracy (test split)</th>"):
        assert words in html, words
    assert "population_size" not in html  # NSGA-II's, not TPE's
    # the front's test metrics: the fixture's test accuracies are the validation ones minus 0.02
    assert "<td>a4</td><td>0.78</td>" in html
    (study_dir / "study.yaml").write_text(_yaml.safe_dump({
        "name": "s1", "objectives": ["avg_acc:max", "total_mb:min"], "sampler": {"name": "random", "startup_trials": 10},
        "scheduler": {"name": "fifo", "grace_period": 2, "reduction_factor": 2.0}, "trials": 12}, sort_keys=False))
    assert main(["analyze", str(study_dir), "--out", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "<td>sampler</td><td>name=random</td>" in html and "<td>scheduler</td><td>name=fifo</td>" in html
