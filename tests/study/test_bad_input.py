"""Bad input never reaches a trial, never corrupts a study, never runs code.

Every case goes through the CLI as a user types it: exit 2, one line on stderr naming what is
wrong, and nothing written (no storage directory appears, stored files are unchanged).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from incsweep.cli import main

SYNTH = {"name": "synthetic", "n_classes": 4, "increment": 2, "image_size": 8, "train_per_class": 8,
         "test_per_class": 4, "val_fraction": 0.25}
NET = {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 8}


def spec(**over) -> dict:
    d = {"name": "bad", "methods": ["finetune"], "benchmark": dict(SYNTH), "search": {"finetune": dict(NET)},
         "objectives": ["avg_acc:max", "total_mb:min"], "trials": 1}
    d.update(over)
    return d


def write_spec(path: Path, data: dict | bytes) -> Path:
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(yaml.safe_dump(data))
    return path


def one_line_error(capsys, *words: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("data, words", [
    (spec(search={"finetune": {**NET, "lr": {"low": "abc", "high": 0.1}}}), ["lr.low='abc' is not a number"]),
    (spec(search=["finetune"]), ["search: ['finetune'] is not allowed", "mapping of method"]),
    (spec(search={"finetune": ["lr"]}), ["search.finetune: ['lr'] is not allowed"]),
    (spec(benchmark=3), ["benchmark: 3 is not allowed"]),
    (spec(benchmark="seq-nope"), ["name='seq-nope'"]),
    # a method or benchmark that no process could resolve fails at launch, not in every trial
    (spec(methods=["mypkg_absent.methods:Mine"], search={}),
     ["method 'mypkg_absent.methods:Mine'", "module 'mypkg_absent' is not installed"]),
    (spec(methods=["nosuchmethod"], search={}), ["unknown method 'nosuchmethod'; registered: ['finetune'"]),
    (spec(benchmark={"name": "npz", "data_root": "/nonexistent/data.npz", "val_fraction": 0.2}),
     ["/nonexistent/data.npz: no such .npz file"]),
    (spec(concurrency="two"), ["concurrency='two' must be a whole number"]),
    (spec(objectives=["avg_acc", "total_mb"]), ["objective 'avg_acc' has no mode"]),
    (spec(benchmark={"name": "seq-cifar100", "data_root": "/nonexistent/cifar"}),
     ["CIFAR-100 not found", "/nonexistent/cifar"]),  # checked in the driver, before Ray (was: every trial erred)
    (spec(benchmark={"name": "seq-cifar10"}, name="nodata"), ["CIFAR-10", "data root"]),
    # bounds that are not finite numbers, a log flag that is not a bool, trackers, the
    # Optuna storage and enqueued values: each one line before Ray starts or anything is written
    (spec(search={"finetune": {**NET, "lr": {"low": float("inf"), "high": 0.1}}}), ["lr.low=inf is not a finite"]),
    (spec(search={"finetune": {**NET, "lr": {"low": float("nan"), "high": 0.1}}}), ["lr.low=nan is not a finite"]),
    (spec(search={"finetune": {**NET, "lr": {"low": [1], "high": 0.1}}}), ["lr.low=[1] is not a number"]),
    (spec(search={"finetune": {**NET, "lr": {"low": True, "high": 0.1}}}), ["lr.low=True is not a number"]),
    (spec(search={"finetune": {**NET, "lr": {"low": 0.01, "high": 0.1, "log": "no"}}}),
     ["log='no'; allowed: true or false"]),
    (spec(callbacks=3), ["callbacks: 3 is not allowed"]),
    (spec(optuna_storage="foo://x"), ["optuna_storage 'foo://x' cannot be opened", "NoSuchModuleError"]),
    (spec(optuna_storage="sqlite:////nonexistent/dir/x.db"), ["cannot be opened", "unable to open database"]),
    (spec(search={"finetune": {**NET, "lr": {"low": 0.01, "high": 0.1}}},
          enqueue=[{"method": "finetune", "params": {"lr": "abc"}}]), ["enqueue[0]: lr='abc' is outside the search's"]),
    (spec(search={"finetune": {**NET, "lr": {"low": 0.01, "high": 0.1}}},
          enqueue=[{"method": "finetune", "params": {"lr": 50.0}}]), ["enqueue[0]: lr=50.0 is outside the search's"]),
    # every benchmark the protocol uses: two_phase's evaluation data was checked only after the search
    (spec(protocol="two_phase", evaluate_on={"name": "seq-cifar10", "data_root": "/nonexistent/eval"}),
     ["CIFAR-10 not found", "/nonexistent/eval"]),
    (b"name: x\nmethods: [finetune]\n# \xff\xfe\n", ["not UTF-8 text"]),
    # a trial trains on one device: a second GPU would be reserved and sit idle
    (spec(resources={"cpu": 1, "gpu": 2}), ["resources.gpu=2: a trial trains on one GPU, so at most 1"]),
    (b"name: x\nmethods: [finetune]\ntrials: 2\ntrials: 3\n", ["key 'trials' appears twice (lines 3 and 4)"]),
    (b"name: x\nmethods: [finetune\n", ["is not valid YAML at line"]),
])
def test_study_run_rejects_a_bad_spec_before_anything_is_written(tmp_path, capsys, monkeypatch, data, words):
    monkeypatch.delenv("INCSWEEP_DATA", raising=False)
    path = write_spec(tmp_path / "s.yaml", data)
    storage = tmp_path / "st"
    assert main(["study", "run", str(path), "--storage", str(storage)]) == 2
    one_line_error(capsys, *words)
    assert not storage.exists()


@pytest.mark.parametrize("storage, words", [
    ("afile", ["is a file; give a directory"]),
    ("afile/sub", ["is a file, so the directory cannot be created"]),
    ("foo://bucket/x", ["scheme 'foo' is not usable here", "s3://"]),
])
def test_study_run_rejects_an_unusable_storage(tmp_path, capsys, storage, words):
    (tmp_path / "afile").write_text("keep me")
    path = write_spec(tmp_path / "s.yaml", spec())
    target = storage if "://" in storage else str(tmp_path / storage)
    assert main(["study", "run", str(path), "--storage", target]) == 2
    one_line_error(capsys, *words)
    assert (tmp_path / "afile").read_text() == "keep me"


@pytest.mark.parametrize("content, words", [
    (b"method: finetune\nbenchmark: [1, 2\n", ["config file", "is not valid YAML at line 3"]),
    (bytes(range(256)) * 2, ["is not UTF-8 text"]),
    (b"- 1\n- 2\n", ["must hold a mapping"]),
])
def test_run_config_files_that_are_not_yaml_mappings(tmp_path, capsys, content, words):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    assert main(["run", "--config", str(path)]) == 2
    one_line_error(capsys, *words)


def _finished_study(root: Path) -> Path:
    """A small finished study, written through the results sink's own writer (no Ray)."""
    from incsweep.incremental.run import RunConfig, run
    from incsweep.study.results import rows_from_run, write_trial_file

    storage = root / "study"
    cfg = RunConfig.from_dict({"method": "finetune", "benchmark": SYNTH, "method_config": NET})
    result = run(cfg)
    write_trial_file(str(storage), rows_from_run(result, study="bad", trial_id="t0"))
    (storage / "study.yaml").write_text(yaml.safe_dump({**spec(), "storage": str(storage)}))
    return storage


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    return _finished_study(tmp_path_factory.mktemp("finished"))


@pytest.mark.parametrize("command", ["analyze", "export"])
def test_analyze_and_export_out_naming_a_file(finished, tmp_path, capsys, command):
    out = tmp_path / "afile"
    out.write_text("keep me")
    assert main([command, str(finished), "--out", str(out)]) == 2
    one_line_error(capsys, "is a file; give a directory")
    assert main([command, str(finished), "--out", str(out / "sub")]) == 2
    one_line_error(capsys, "cannot be created")
    assert out.read_text() == "keep me"


@pytest.fixture
def read_only(tmp_path):
    """``tmp_path/ro``: a read-only bind mount of ``tmp_path/src`` (a real read-only filesystem,
    which root cannot write either); skipped where mounting is not permitted."""
    import shutil
    import subprocess

    src, ro = tmp_path / "src", tmp_path / "ro"
    src.mkdir()
    ro.mkdir()
    mounted = shutil.which("mount") and subprocess.run(["mount", "--bind", str(src), str(ro)],
                                                        capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("bind mounts are not permitted here (needs root)")
    try:
        if subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode != 0:
            pytest.skip("read-only remount is not permitted here")
        yield src, ro
    finally:
        subprocess.run(["umount", str(ro)], capture_output=True)


def test_read_only_storage_and_out_are_one_line_before_ray_starts(finished, read_only, tmp_path, capsys):
    """read-only storage or output directory was an OSError traceback (run, resume,
    analyze --out, export --out); now one line, exit 2, before Ray starts, nothing changed."""
    import shutil

    src, ro = read_only
    # the mount shows src's content: put the study there first (remount keeps it read-only)
    subprocess.run(["umount", str(ro)], check=True)
    shutil.copytree(finished, src / "study")
    subprocess.run(["mount", "--bind", str(src), str(ro)], check=True)
    subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
    before = sorted((p.relative_to(src), p.stat().st_mtime_ns) for p in src.rglob("*"))
    assert main(["study", "resume", str(ro / "study")]) == 2
    one_line_error(capsys, "is not writable")
    path = write_spec(tmp_path / "s.yaml", spec())
    assert main(["study", "run", str(path), "--storage", str(ro / "new")]) == 2
    one_line_error(capsys, "is not writable")
    for command in ("analyze", "export"):
        assert main([command, str(finished), "--out", str(ro / "out")]) == 2
        one_line_error(capsys, "cannot be created", "is not writable")
    assert main(["analyze", str(finished), "--out", str(ro / "study")]) == 2
    one_line_error(capsys, "is not writable")
    assert sorted((p.relative_to(src), p.stat().st_mtime_ns) for p in src.rglob("*")) == before


@pytest.mark.ray
@pytest.mark.slow
def test_a_full_storage_is_one_line_and_the_copied_study_resumes(tmp_path):
    """a full disk ended in a traceback with no resume hint. Now exit 3 and one line; the
    study, copied to a disk with room (a study directory is relocatable), resumes and finishes."""
    import shutil

    full = tmp_path / "full"
    full.mkdir()
    # 120 KB: the disk must fill in the first trial, whatever the timing. A disk the study nearly
    # fits fails a trial by ENOSPC, Tune retries it once other files went (a finished trial's
    # checkpoints, heartbeats, Tune's temporaries) and the study ends complete, exit 0: correct,
    # but not what this test is about. Seen at 600 KB (the study then needed ~740 KB on tmpfs) and,
    # once finished trials' checkpoints were removed, at 300 KB (the whole study fits: 3 of 3 runs).
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(full)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs is not permitted here (needs root)")
    try:
        path = write_spec(tmp_path / "s.yaml", spec(trials=4, concurrency=2))
        exe = Path(sys.executable).with_name("incsweep")
        out = subprocess.run([str(exe), "study", "run", str(path), "--storage", str(full / "st")],
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 3, (out.stdout[-2000:], out.stderr[-2000:])
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("incsweep study: storage full") and f"incsweep study resume {full / 'st'}" in last
        shutil.copytree(full / "st", tmp_path / "roomy")  # as cp -a: the dead driver's lock is taken over
    finally:
        subprocess.run(["umount", str(full)], capture_output=True)
    again = subprocess.run([str(exe), "study", "resume", str(tmp_path / "roomy")], capture_output=True, text=True,
                           timeout=600)
    # The study finishes. A trial whose own write (its checkpoint) hit the full disk failed there
    # (Tune's error, Optuna FAIL) and stays failed: exit 1 names it; when the driver's write hit the
    # disk first, every trial completes: exit 0. Which write comes first depends on timing.
    assert again.returncode in (0, 1), again.stderr[-3000:]
    assert "4/4 trials finished" in again.stdout, again.stdout[-3000:]
    assert again.returncode == 0 or "failed" in again.stderr, again.stderr[-3000:]


def test_a_corrupt_trial_file_is_skipped_with_a_warning_by_status_and_resume(finished, tmp_path, capsys, caplog):
    """As analyze does: counted as 'unreadable', named, never rewritten; resume is not held back."""
    import shutil

    storage = tmp_path / "copy"
    shutil.copytree(finished, storage)
    (victim,) = storage.rglob("*.parquet")
    victim.write_bytes(os.urandom(100))
    before = victim.read_bytes()
    assert main(["study", "status", str(storage)]) == 1  # its one trial's answer is unreadable: none completed
    out = capsys.readouterr().out
    assert "unreadable" in out and victim.name in out and "1/1 trials finished" in out, out
    assert any("is not readable Parquet" in r.getMessage() for r in caplog.records)
    assert main(["study", "resume", str(storage)]) == 1  # finished, but one trial's answer is missing: said
    err = capsys.readouterr().err
    assert victim.name in err and "is not readable Parquet" in err
    assert victim.read_bytes() == before  # nothing rewritten


@pytest.mark.parametrize("seeds", ["0", "101", "100000000"])
def test_confirm_seeds_are_range_checked(finished, capsys, seeds):
    assert main(["confirm", str(finished), "--seeds", seeds]) == 2
    one_line_error(capsys, f"--seeds {seeds}: allowed 1 to 100")


def test_a_study_whose_every_trial_failed_exits_non_zero(capsys):
    from collections import Counter

    from incsweep.study.commands import _finish
    from incsweep.study.runner import StudySummary

    failed = StudySummary(storage="s", study="x", trials=2, statuses=Counter(error=2))
    assert _finish(failed, 1.0) == 1
    assert "no trial completed" in capsys.readouterr().err
    fine = StudySummary(storage="s", study="x", trials=2, statuses=Counter(error=1, complete=1))
    assert _finish(fine, 1.0) == 0


def test_sigterm_then_planted_and_damaged_tune_state_then_resume(tmp_path, capsys):
    """kill (SIGTERM) of the driver exits 143 with the resume command (Ray's handler used to abort it:
    exit 134, no message); a planted pickle and a truncated searcher state in Tune's state change
    nothing: resume never reads them (study/resume.py), nothing runs, and the study finishes."""
    path = write_spec(tmp_path / "s.yaml", spec(trials=200, concurrency=1))
    storage = tmp_path / "st"
    exe = Path(sys.executable).with_name("incsweep")
    proc = subprocess.Popen([str(exe), "study", "run", str(path), "--storage", str(storage)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(storage.glob("results/**/*.parquet")):
        time.sleep(0.5)  # wait until trials run: Ray is up and its handlers installed
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out[-2000:]
    assert f"continue with: incsweep study resume {storage}" in out

    tune_dir = storage / "tune"
    marker = tmp_path / "ran"

    class Planted:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

    (tune_dir / "tuner.pkl").write_bytes(pickle.dumps(Planted()))
    for searcher in tune_dir.glob("search*-state-*"):
        searcher.write_bytes(searcher.read_bytes()[:50])
    stored = yaml.safe_load((storage / "study.yaml").read_text())
    from incsweep.study.runner import summarize
    from incsweep.study.spec import StudySpec

    before = summarize(str(storage), StudySpec.from_dict(stored))
    trials = before.finished + len(before.unfinished) + 1
    (storage / "study.yaml").write_text(yaml.safe_dump({**stored, "trials": trials}))
    assert main(["study", "resume", str(storage)]) == 0
    assert not marker.exists()
    assert summarize(str(storage), StudySpec.from_dict({**stored, "trials": trials})).done


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("when", [0.5, 4.0, "first results"])
def test_ctrl_c_at_any_moment_says_one_thing(tmp_path, when):
    """a Ctrl-C in the first seconds printed one of three messages depending on the moment
    (Tune's own handler ended fit() normally and pointed at Tuner.restore). Now: exit 130, no
    traceback, and one line naming the next command (resume once the study is stored)."""
    path = write_spec(tmp_path / "s.yaml", spec(trials=40, concurrency=1))
    storage = tmp_path / "st"
    exe = Path(sys.executable).with_name("incsweep")
    # As from a terminal: SIGINT at its default. A suite started as a background job of a script (`cmd &`
    # without job control) inherits SIGINT ignored (POSIX), and Python installs no handler of its own
    # then, so a Ctrl-C 0.5 s in (before the study's handler exists) was dropped and the study ran to its
    # end (two clean-clone runs of .ci/run started that way). The product is not at fault there: a
    # background job gets no Ctrl-C. exec keeps the default disposition set here.
    start = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
             "os.execv(sys.argv[1], sys.argv[1:])")
    proc = subprocess.Popen([sys.executable, "-c", start, str(exe), "study", "run", str(path), "--storage", str(storage)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if when == "first results":
        deadline = time.time() + 120
        while time.time() < deadline and not list(storage.glob("results/**/*.parquet")):
            time.sleep(0.2)
    else:
        time.sleep(float(when))  # importing, then Ray's start-up
    assert proc.poll() is None, "the study ended before the Ctrl-C"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out[-2000:], err[-2000:])
    assert "Traceback" not in err and "Tuner.restore" not in out + err, err[-3000:]
    stored = (storage / "study.yaml").exists()
    expected = (f"interrupted; continue with: incsweep study resume {storage}" if stored else
                f"interrupted; nothing was changed; run it again with: incsweep study run {path} --storage {storage}")
    assert out.strip().splitlines()[-1] == expected, out[-2000:]


def test_a_study_given_twice_counts_each_trial_once(finished, tmp_path, caplog):
    import shutil

    from incsweep.analysis import load_results

    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    once = load_results(str(finished))
    twice = load_results([str(finished), str(copy)])
    assert twice.num_rows == once.num_rows
    assert "repeat trials already read" in caplog.text


def test_a_failed_launch_does_not_lock_its_storage(finished, tmp_path):
    """study.yaml written, then Ray failed to start: `study run` may start over; a study with trials
    is never overwritten."""
    from incsweep.study.runner import _launch_left_nothing

    empty = tmp_path / "empty"
    empty.mkdir()
    stored = {**spec(), "storage": str(empty)}
    (empty / "study.yaml").write_text(yaml.safe_dump(stored))
    assert _launch_left_nothing(str(empty), stored)
    assert not _launch_left_nothing(str(finished), yaml.safe_load((finished / "study.yaml").read_text()))


def test_status_of_a_study_whose_every_trial_failed_exits_1(finished, tmp_path, capsys):
    import shutil

    from incsweep.study.results import read_trial_file, write_trial_file

    storage = tmp_path / "failed"
    shutil.copytree(finished, storage)
    rows = read_trial_file(str(storage), "bad", "finetune", "t0")
    rows = [{**r, "status": "error", "complete": False, "error": "RuntimeError: x"} if r["is_final"] else r for r in rows]
    write_trial_file(str(storage), rows)
    assert main(["study", "status", str(storage)]) == 1
    assert "no trial completed" in capsys.readouterr().out
    assert main(["study", "status", str(storage), "--json"]) == 1  # the same answer for scripts
    assert json.loads(capsys.readouterr().out)["statuses"] == {"error": 1}
    assert main(["analyze", str(storage)]) == 2  # the hint names the cause, not the validation split
    err = capsys.readouterr().err
    assert "no trial completed" in err and "--split test" not in err
    assert main(["study", "status", str(finished)]) == 0
    assert main(["study", "status", str(finished), "--json"]) == 0


def test_status_shows_the_front_and_for_an_unfinished_study_elapsed_and_eta(finished, tmp_path, capsys):
    """`incsweep study status` ends in what the driver's progress lines end in."""
    import shutil

    import yaml

    assert main(["study", "status", str(finished)]) == 0
    out = capsys.readouterr().out
    assert "front: 1 configuration(s) on avg_acc:max, total_mb:min" in out and "elapsed" not in out
    more = tmp_path / "more"
    shutil.copytree(finished, more)
    spec_file = more / "study.yaml"
    spec_file.write_text(yaml.safe_dump({**yaml.safe_load(spec_file.read_text()), "trials": 3}))  # 1 of 3 done
    assert main(["study", "status", str(more)]) == 0
    out = capsys.readouterr().out
    assert "1/3 trials finished" in out and "elapsed: " in out and "; ETA " in out


@pytest.mark.parametrize("argv, command", [(["study", "run", "x.yaml", "--bogus"], "incsweep study run"),
                                           (["analyze", "dir", "--bogus"], "incsweep analyze"),
                                           (["cache", "ls", "--bogus"], "incsweep cache ls")])
def test_an_argument_a_sub_command_does_not_take_is_reported_with_its_usage(argv, command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(f"usage: {command} ")
    assert err.strip().splitlines()[-1] == f"{command}: error: unrecognized arguments: --bogus"


def test_a_command_run_in_process_leaves_logging_as_it_found_it(tmp_path, capsys):
    """`main` also runs in-process (scripts, notebooks, these tests): the console handlers a study
    command adds must not outlive it (a later study's progress went to a closed stream: CI, 3e3846e)."""
    import logging

    from incsweep.cli import _COMMAND_LOGGERS, _logging_for_the_command
    from incsweep.study.commands import _console_logging

    loggers = [logging.getLogger(n) for n in _COMMAND_LOGGERS]
    before = [(lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    with _logging_for_the_command():
        logging.basicConfig(level=logging.INFO)
        _console_logging()
        assert logging.getLogger("incsweep.study").handlers  # what `study run` sets up
    assert [(lg.level, lg.propagate, list(lg.handlers)) for lg in loggers] == before
    assert main(["study", "status", str(tmp_path / "none")]) == 2  # and through main itself
    assert [(lg.level, lg.propagate, list(lg.handlers)) for lg in loggers] == before
