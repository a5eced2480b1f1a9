"""``incsweep run`` and ``incsweep budget`` through incsweep.cli.main (plus one smoke test of the installed script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from incsweep.cli import main
from incsweep.incremental.cli import _seconds
from incsweep.incremental.memory import MB
from incsweep.incremental.methods import METHODS
from incsweep.incremental.run import RunConfig

TINY = ["--benchmark", "synthetic", "--set", "benchmark.n_classes=6", "--set", "benchmark.train_per_class=24",
        "--set", "benchmark.test_per_class=8", "--set", "backbone=tiny", "--set", "width=4",
        "--set", "batch_size=16"]


def test_run_prints_a_table_and_writes_the_result(tmp_path, capsys):
    out = tmp_path / "result.json"
    rc = main(["run", "--method", "replay", *TINY, "--set", "memory_size=12", "--seed", "3", "--out", str(out)])
    assert rc == 0
    lines = capsys.readouterr().out.splitlines()
    assert "class-IL" in lines[0] and "replay on synthetic (3 tasks" in lines[0]
    head = lines[1].split()
    assert head[:4] == ["task", "acc", "avg", "acc"] and "seconds" in head
    rows = [line.split() for line in lines[2:5]]
    assert [r[0] for r in rows] == ["1", "2", "3"]
    data = json.loads(out.read_text())
    assert data["complete"] and len(data["tasks"]) == 3
    cfg = RunConfig.from_dict(data["config"])
    assert (cfg.method, cfg.seed, cfg.method_config.memory_size) == ("replay", 3, 12)
    final = data["tasks"][-1]
    # the table shows the same numbers the JSON holds
    assert float(rows[2][1]) == pytest.approx(final["seen_acc"], abs=5e-5)
    mem = final["memory"]
    total = mem["model_bytes"] + mem["exemplar_bytes"] + mem["extra_bytes"]
    assert float(rows[2][6]) == pytest.approx(total / MB, abs=5e-4)
    assert final["memory"]["n_exemplars"] == 6 * 2  # 12 // 6 per class
    assert f"last accuracy {final['test']['last_acc']:.4f}" in lines[5]
    # no validation split here: its metrics are NaN, written as null so the file is strict JSON
    assert final["val_seen_acc"] is None and final["val"]["avg_acc"] is None
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    # every task's time by phase (the per-phase split), within its wall time; CPU time measured
    for t in data["tasks"]:
        assert set(t["phase_s"]) == {"train", "consolidate", "evaluate", "census"} and min(t["phase_s"].values()) > 0
        assert sum(t["phase_s"].values()) <= t["wall_s"] and t["cpu_s"] > 0
    split = {name: sum(t["phase_s"][name] for t in data["tasks"]) for name in ("train", "consolidate", "evaluate", "census")}
    assert lines[6] == (f"time by phase: training {_seconds(split['train'])}, consolidation (exemplar selection, "
                        f"aligning) {_seconds(split['consolidate'])}, evaluation {_seconds(split['evaluate'])}, "
                        f"memory census (what the method holds, checked) {_seconds(split['census'])}")


def test_run_task_il_and_resume_from_checkpoint(tmp_path, capsys):
    args = ["run", "--method", "finetune", *TINY, "--set", "scenario=task_il", "--checkpoint-dir", str(tmp_path)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "task-IL" in first and (tmp_path / "state.pt").exists()
    assert main(args) == 0  # everything is done: the checkpoint is resumed, nothing retrains
    again = capsys.readouterr().out.splitlines()
    assert again[2] == f"resuming from {tmp_path}: 3 task(s) done"
    assert again[3:6] == first.splitlines()[2:5]  # the rows come from the checkpoint, unchanged


def test_budget_text_and_json(capsys):
    assert main(["budget", "--method", "replay", "--benchmark", "seq-cifar100", "--memory-mb", "10"]) == 0
    text = capsys.readouterr().out
    assert "1,889,104 bytes" in text and "3,072" in text and "exemplars (count)" in text
    assert main(["budget", "--method", "replay", "--benchmark", "seq-cifar100", "--memory-mb", "10", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert (r["model_bytes"], r["bytes_per_exemplar"], r["n_exemplars"]) == (1_889_104, 3072, 2000)
    fits = (10 * MB - 1_889_104) // 3072
    assert r["at_memory_mb"]["exemplar_total"] == fits
    assert r["at_memory_mb"]["n_exemplars"] == fits // 100 * 100  # whole classes' worth: M // 100 each
    assert f"{r['at_memory_mb']['n_exemplars']:,} exemplars fit" in text


def test_budget_aligned_and_exemplar_free(capsys):
    assert main(["budget", "--method", "replay", "--benchmark", "seq-cifar100", "--set", "budget=aligned", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["exemplar_total"] == 2000 + 9 * 463_504 * 4 // 3072
    assert main(["budget", "--method", "finetune", "--benchmark", "seq-cifar10", "--memory-mb", "5"]) == 0
    assert "keeps no exemplars" in capsys.readouterr().out
    if "memo" in METHODS:  # MEMO's plan details (shared/specialised params) are printed when it is there
        assert main(["budget", "--method", "memo", "--benchmark", "seq-cifar100", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["details"]


@pytest.mark.parametrize("argv, words", [
    (["budget", "--method", "nope"], ["unknown method 'nope'", "replay"]),
    (["budget", "--benchmark", "mnist"], ["name='mnist'", "seq-cifar10"]),
    (["budget", "--method", "replay", "--set", "lr=99"], ["lr=99.0", "out of range", "[1e-06, 10.0]"]),
    (["budget", "--method", "replay", "--set", "lr"], ["--set 'lr' is malformed", "KEY=VALUE"]),
    (["budget", "--method", "replay", "--set", "nosuch=1"], ["unknown field(s) ['nosuch']"]),
    (["budget", "--method", "finetune", "--memory-mb", "0.5"], ["needs 1.778 MB for its model alone"]),
    (["run", "--config", "/nonexistent/run.yaml"], ["/nonexistent/run.yaml does not exist"]),
    (["run", "--method", "finetune", "--device", "tpu"], ["device='tpu'", "cpu, cuda or cuda:N"]),
    (["run", *TINY, "--out", "/nonexistent/dir/r.json"], ["--out", "does not exist"]),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"incsweep {argv[0]}: error: ")
    for w in words:
        assert w in err


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["budget", "--help"]])
def test_help_everywhere(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: incsweep")
    if argv[0] != "--help":
        assert "--set KEY=VALUE" in out and "--method" in out


def test_installed_console_script():
    script = shutil.which("incsweep") or str(Path(sys.executable).parent / "incsweep")
    if not Path(script).exists():
        pytest.fail("the incsweep console script is not installed (pip install -e .)")
    proc = subprocess.run([script, "budget", "--method", "icarl", "--benchmark", "seq-fashionmnist", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["bytes_per_exemplar"] == 784
    bad = subprocess.run([script, "budget", "--method", "nope"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown method" in bad.stderr


def test_data_root_flag_reaches_the_loader(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["run", "--benchmark", "seq-cifar10", "--data-root", str(missing), "--set", "backbone=tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing / "cifar-10-batches-py") in err and "download" in err and "\n" not in err
