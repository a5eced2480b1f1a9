"""No code runs from a study's Tune state on resume: a resume rebuilds the study from the Optuna
storage, the Parquet results and weights_only checkpoints (study/resume.py) and never reads Tune's
pickles. Each payload kind, shown live first (a plain ``pickle.loads`` of it runs the planted
effect), is planted in every kind of file Tune writes; ``incsweep study resume`` then finishes the
study and nothing runs. A copied and a moved study each resume into themselves."""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml


def _text(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b  # SHORT_BINUNICODE


def _global(module: str, name: str) -> bytes:
    return _text(module) + _text(name) + b"\x93"  # STACK_GLOBAL: a dotted name is resolved by attribute traversal


def plain(marker: Path) -> bytes:
    """os.system by its own name."""
    return b"\x80\x04" + _global("os", "system") + _text(f"touch {marker}") + b"\x85R."


def dotted(marker: Path) -> bytes:
    """os.system reached through a module every state names: ``incsweep.study.runner`` + ``os.system``."""
    return b"\x80\x04" + _global("incsweep.study.runner", "os.system") + _text(f"touch {marker}") + b"\x85R."


def allowed_callable(marker: Path) -> bytes:
    """A function Tune's state does name (Ray's ``_upload_to_fs_path``), called with planted arguments:
    it copies a file of the attacker's choosing to a path of the attacker's choosing."""
    source = marker.with_suffix(".src")
    source.write_text("planted")
    fs = _global("pyarrow._fs", "FileSystem._from_uri") + _text("file:///_") + b"\x85R"
    return (b"\x80\x04" + _global("ray.train._internal.storage", "_upload_to_fs_path") + _text(str(source)) + fs
            + _text(str(marker)) + b"\x87R.")


class _Touch:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def nested(marker: Path) -> bytes:
    """torch.storage._load_from_bytes (what the GP sampler's tensors pickle through) loads its argument
    with weights_only=False: a torch.save file that runs os.system."""
    buf = io.BytesIO()
    torch.save(_Touch(marker), buf)
    blob = buf.getvalue()
    return b"\x80\x04" + _global("torch.storage", "_load_from_bytes") + b"B" + struct.pack("<I", len(blob)) + blob + b"\x85R."


PAYLOADS = {"plain": plain, "dotted": dotted, "allowed_callable": allowed_callable, "nested": nested}


@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_each_payload_is_live(kind, tmp_path):
    marker = tmp_path / "ran"
    data = PAYLOADS[kind](marker)
    # live: a plain unpickler runs it (in a child process)
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"], input=data,
                   capture_output=True, timeout=120)
    assert marker.exists(), f"the {kind} payload did not run under pickle.loads: not a real test"


# -- planted in every kind of file of a real study's Tune state, then `study resume` ------------------

SPEC = {"name": "ts", "methods": ["finetune"], "trials": 2, "concurrency": 1, "seed": 0,
        "benchmark": {"name": "synthetic", "n_classes": 4, "image_size": 16, "train_per_class": 8, "test_per_class": 4},
        "search": {"finetune": {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 16,
                                "lr": {"low": 0.01, "high": 0.1}}},
        "sampler": {"name": "tpe"}, "resources": {"cpu": 1}}


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "incsweep.cli", *args], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tunestate")
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    out = _run("study", "run", str(path), "--storage", str(root / "study"))
    assert out.returncode == 0, out.stderr[-2000:]
    return root / "study"


def _targets(tune: Path) -> dict[str, Path]:
    found = {"tuner.pkl": tune / "tuner.pkl",
             "searcher-state": sorted(tune.glob("searcher-state-*.pkl"))[-1] if list(tune.glob("searcher-state-*.pkl"))
             else tune / "searcher-state-planted.pkl",
             "search_gen_state": sorted(tune.glob("search_gen_state-*"))[-1],
             "experiment_state": sorted(tune.glob("experiment_state-*.json"))[-1],
             "error.pkl": tune / "trial_planted" / "error.pkl"}
    params = sorted(tune.glob("trial_*/params.pkl"))
    if params:
        found["params.pkl"] = params[0]
    return found


def _plant(target: Path, payload: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.name.startswith("experiment_state-"):
        # Tune's JSON carries cloudpickled values as {"_type": "CLOUDPICKLE_FALLBACK", "value": hex}
        state = json.loads(target.read_text())
        state["planted"] = {"_type": "CLOUDPICKLE_FALLBACK", "value": payload.hex()}
        target.write_text(json.dumps(state))
    else:
        target.write_bytes(payload)


def _one_more_trial(storage: Path) -> None:
    spec = yaml.safe_load((storage / "study.yaml").read_text())
    (storage / "study.yaml").write_text(yaml.safe_dump({**spec, "trials": spec["trials"] + 1}))


def _finals(storage: Path) -> list[dict]:
    import pyarrow.parquet as pq

    rows = [r for f in storage.glob("results/**/*.parquet") for r in pq.read_table(f).to_pylist()]
    return [r for r in rows if r["is_final"]]


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.parametrize("kind", list(PAYLOADS))
def test_no_planted_payload_runs_on_resume(kind, finished, tmp_path):
    """Every file of Tune's state holds the payload at once; the resume finishes the study."""
    storage = tmp_path / "copy"
    shutil.copytree(finished, storage)
    _one_more_trial(storage)  # so the resume has work to do
    marker = tmp_path / "ran"
    for target in _targets(storage / "tune").values():
        _plant(target, PAYLOADS[kind](marker))
    out = _run("study", "resume", str(storage))
    assert out.returncode == 0, out.stderr[-3000:]
    assert not marker.exists()
    assert sorted(r["status"] for r in _finals(storage)) == ["complete"] * 3


@pytest.mark.ray
@pytest.mark.slow
def test_a_copied_and_a_moved_study_each_resume_into_themselves(finished, tmp_path):
    """Tune's state holds absolute paths, so a copy resumed into the original and a moved
    study hung. A resume reads no path from storage: each writes its own directory only."""
    original = tmp_path / "orig"
    shutil.copytree(finished, original)
    copy, moved = tmp_path / "copy", tmp_path / "moved"
    shutil.copytree(original, copy)
    snapshot = {p: p.stat().st_mtime_ns for p in original.rglob("*")}
    for study in (copy,):
        _one_more_trial(study)
        out = _run("study", "resume", str(study))
        assert out.returncode == 0, out.stderr[-3000:]
        assert len(_finals(study)) == 3
    assert {p: p.stat().st_mtime_ns for p in original.rglob("*")} == snapshot, "the copy wrote into the original"
    original.rename(moved)
    _one_more_trial(moved)
    out = _run("study", "resume", str(moved))
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(_finals(moved)) == 3 and not original.exists()
    status = _run("study", "status", str(moved), "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["finished"] == 3, status.stdout


@pytest.mark.ray
@pytest.mark.slow
def test_a_torn_journal_in_a_finished_study_is_settled_by_resume(finished, tmp_path):
    """a finished study whose journal lost its last lines (the driver died while telling
    Optuna) kept a RUNNING trial forever: resume returned at once. Now the Parquet rows decide."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = tmp_path / "torn"
    shutil.copytree(finished, storage)
    journal = storage / "optuna.journal"

    def states() -> list[str]:
        optuna.logging.set_verbosity(optuna.logging.ERROR)
        study = optuna.load_study(study_name="ts", storage=JournalStorage(JournalFileBackend(str(journal))))
        return sorted(t.state.name for t in study.get_trials())

    lines = journal.read_text().splitlines(keepends=True)
    while "RUNNING" not in states():  # drop the journal's last lines until a trial is left RUNNING
        lines.pop()
        journal.write_text("".join(lines))
    out = _run("study", "resume", str(storage))
    assert out.returncode == 0, out.stderr[-3000:]
    assert states() == ["COMPLETE", "COMPLETE"]
    assert len(_finals(storage)) == 2  # nothing re-ran
