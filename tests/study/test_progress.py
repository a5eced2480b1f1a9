"""A study's progress lines: the first at launch, one per task and per trial, and during a long
task a heartbeat saying which epoch and batch each running trial is at (trainables/trial.py writes
it, study/sink.py ProgressLog reads it), through the product path."""

from __future__ import annotations

import re

import pytest

from incsweep.core.errors import ConfigError

SPEC = {"name": "hb", "methods": ["finetune"], "trials": 1, "concurrency": 1, "seed": 0,
        "benchmark": {"name": "synthetic", "n_classes": 4, "image_size": 16, "train_per_class": 200,
                      "test_per_class": 4, "val_fraction": 0.25},
        "search": {"finetune": {"backbone": "tiny", "width": 8, "epochs": 60, "batch_size": 16}},
        "resources": {"cpu": 1}}


@pytest.mark.ray
@pytest.mark.slow
def test_a_long_task_gets_heartbeat_lines_with_its_epoch_and_batch(tmp_path, monkeypatch, capsys):
    from incsweep.study import run_study

    monkeypatch.setenv("INCSWEEP_HEARTBEAT_S", "1")
    study = run_study(SPEC, storage=str(tmp_path / "s"))
    assert study.status().statuses == {"complete": 1}
    err = capsys.readouterr().err
    beats = re.findall(r"task (\d)/2 training: epoch (\d+)/60, batch (\d+)/(\d+)", err)
    assert beats, err[-3000:]
    assert {int(b[3]) for b in beats} == {19}  # 300 training images of a task - 25% validation, in 16s
    assert all(1 <= int(epoch) <= 60 for _, epoch, _, _ in beats)
    assert err.index("study hb: running 1 trial(s)") < err.index("training: epoch")
    assert list((tmp_path / "s" / "heartbeat").glob("*")) == []  # each trial's file goes when it ends


def test_a_bad_heartbeat_setting_fails_before_anything_starts(tmp_path, monkeypatch):
    from incsweep.study import run_study

    monkeypatch.setenv("INCSWEEP_HEARTBEAT_S", "soon")
    with pytest.raises(ConfigError, match="INCSWEEP_HEARTBEAT_S='soon': give a number of seconds > 0"):
        run_study(SPEC, storage=str(tmp_path / "s"))
    assert not (tmp_path / "s").exists()
