"""docs/notebook.md runs as written: its Python blocks, in order, in one namespace, from a folder
holding the tiny study spec, through the public API alone (incsweep.study, incsweep.analysis)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.ray
@pytest.mark.slow
def test_the_notebook_example_runs_and_shows_a_front(tmp_path, monkeypatch, capsys):
    (tmp_path / "configs" / "studies").mkdir(parents=True)
    shutil.copy(ROOT / "configs" / "studies" / "tiny.yaml", tmp_path / "configs" / "studies" / "tiny.yaml")
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "notebook.md").read_text(), re.S)
    assert len(blocks) == 4
    names: dict = {}
    for block in blocks:
        exec(compile(block, "docs/notebook.md", "exec"), names)  # noqa: S102 - the doc is the test
    assert names["study"].status().statuses == {"complete": 4}
    front = names["front"]
    assert len(front) >= 1 and {"avg_acc", "total_mb", "trial_id"} <= set(front.columns)
    assert set(names["by_method"].index) == {"finetune", "replay"}
    assert set(names["replay_front"]) <= set(front["trial_id"]) | set(names["rows"]["trial_id"])
    assert names["report"] == Path("runs/tiny/analysis/report.html") and names["report"].stat().st_size > 10_000
    assert names["status"].done
    # progress reached stderr without any logging set-up: the first line, each task, each trial's end
    err = capsys.readouterr().err
    assert "study tiny: running 4 trial(s)" in err and err.count(" complete  avg_acc ") == 4


def test_progress_goes_to_stderr_only_where_the_programs_logging_would_not_show_it(capsys):
    import logging

    from incsweep.study.api import _PROGRESS_LOGGERS, _progress_to_stderr

    progress = logging.getLogger("incsweep.study.progress")
    loggers = [logging.getLogger(n) for n in _PROGRESS_LOGGERS]
    before = [(lg.level, lg.propagate, list(lg.handlers)) for lg in loggers]
    with _progress_to_stderr(True):
        progress.info("first line")
    assert "first line" in capsys.readouterr().err
    assert [(lg.level, lg.propagate, list(lg.handlers)) for lg in loggers] == before  # restored

    class Kept(logging.Handler):
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())

    ours, top = Kept(), logging.getLogger("incsweep")
    level = top.level
    top.addHandler(ours)
    top.setLevel(logging.INFO)  # the program shows INFO lines itself: they go there, once
    try:
        with _progress_to_stderr(True):
            progress.info("second line")
    finally:
        top.removeHandler(ours)
        top.setLevel(level)
    assert ours.lines == ["second line"] and "second line" not in capsys.readouterr().err
