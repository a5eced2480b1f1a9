"""No code runs from a study's Tune state on resume (study/tune_state.py): each payload kind, planted in
each kind of file Tune writes, is refused in one line, and the payload is shown to be live first
(a plain ``pickle.loads`` of it runs the planted effect)."""

from __future__ import annotations

import io
import json
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from incsweep.incremental.errors import ConfigError
from incsweep.study.cli import main
from incsweep.study.tune_state import check_tune_state, pickle_use, refused


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
def test_each_payload_is_live_and_the_dry_run_refuses_it(kind, tmp_path):
    marker = tmp_path / "ran"
    data = PAYLOADS[kind](marker)
    # live: a plain unpickler runs it (in a child process)
    subprocess.run([sys.executable, "-c", "import pickle, sys; pickle.loads(sys.stdin.buffer.read())"], input=data,
                   capture_output=True, timeout=120)
    assert marker.exists(), f"the {kind} payload did not run under pickle.loads: not a real test"
    marker.unlink()
    assert refused(pickle_use(data))
    assert not marker.exists()


def test_what_incsweep_and_optuna_pickle_passes(tmp_path):
    """The states a study really holds pass, the GP sampler's nested tensors included."""
    import optuna

    from incsweep.study.searcher import make_sampler
    from incsweep.study.spec import SamplerSpec

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    for name in ("tpe", "gp", "random"):
        sampler = make_sampler(SamplerSpec(name=name), 0)
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), t.suggest_int("y", 1, 5)), n_trials=12)
        use = pickle_use(pickle.dumps(sampler))
        assert not refused(use), (name, refused(use))


# -- planted in every kind of file of a real study's Tune state, then `study resume` ------------------

SPEC = {"name": "ts", "methods": ["finetune"], "trials": 2, "concurrency": 1, "seed": 0,
        "benchmark": {"name": "synthetic", "n_classes": 4, "image_size": 16, "train_per_class": 8, "test_per_class": 4},
        "search": {"finetune": {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 16,
                                "lr": {"low": 0.01, "high": 0.1}}},
        "sampler": {"name": "tpe"}, "resources": {"cpu": 1}}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tunestate")
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    out = subprocess.run([sys.executable, "-m", "incsweep.study.cli", "study", "run", str(path), "--storage",
                          str(root / "study")], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert check_tune_state(str(root / "study" / "tune")) > 0  # the real state passes
    return root / "study"


def _targets(tune: Path) -> dict[str, Path]:
    found = {"tuner.pkl": tune / "tuner.pkl",
             "searcher-state": sorted(tune.glob("searcher-state-*.pkl"))[-1],
             "search_gen_state": sorted(tune.glob("search_gen_state-*"))[-1],
             "experiment_state": sorted(tune.glob("experiment_state-*.json"))[-1]}
    params = sorted(tune.glob("trial_*/params.pkl"))
    if params:
        found["params.pkl"] = params[0]
    return found


def _plant(target: Path, payload: bytes) -> None:
    if target.name.startswith("experiment_state-"):
        # Tune's JSON carries cloudpickled values as {"_type": "CLOUDPICKLE_FALLBACK", "value": hex}
        text = target.read_text()
        state = json.loads(text)
        state["planted"] = {"_type": "CLOUDPICKLE_FALLBACK", "value": payload.hex()}
        target.write_text(json.dumps(state))
    else:
        target.write_bytes(payload)


@pytest.mark.ray
@pytest.mark.slow
def test_no_planted_payload_runs_from_any_tune_file(finished, tmp_path):
    for kind, make in PAYLOADS.items():
        for where in _targets(finished / "tune"):
            copy = tmp_path / f"{kind}-{where}"
            shutil.copytree(finished / "tune", copy)
            marker = tmp_path / f"ran-{kind}-{where}"
            _plant(_targets(copy)[where], make(marker))
            with pytest.raises(ConfigError, match="not loading it|damaged"):
                check_tune_state(str(copy))
            assert not marker.exists(), (kind, where)
    # an error.pkl may hold exception types, and nothing else
    error = finished / "tune" / "trial_x" / "error.pkl"
    error.parent.mkdir()
    error.write_bytes(pickle.dumps(RuntimeError("a trial's error")))
    check_tune_state(str(finished / "tune"))
    for kind, make in PAYLOADS.items():
        marker = tmp_path / f"ran-error-{kind}"
        error.write_bytes(make(marker))
        with pytest.raises(ConfigError, match="not loading it"):
            check_tune_state(str(finished / "tune"))
        assert not marker.exists()
    shutil.rmtree(error.parent)


@pytest.mark.ray
@pytest.mark.slow
def test_resume_refuses_a_dotted_payload_in_one_line(finished, tmp_path, capsys):
    storage = tmp_path / "copy"
    shutil.copytree(finished, storage)
    # one more trial requested: resume has work to do, so it reads Tune's state
    spec = yaml.safe_load((storage / "study.yaml").read_text())
    (storage / "study.yaml").write_text(yaml.safe_dump({**spec, "trials": spec["trials"] + 1}))
    marker = tmp_path / "ran"
    (storage / "tune" / "tuner.pkl").write_bytes(dotted(marker))
    capsys.readouterr()
    assert main(["study", "resume", str(storage)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "incsweep.study.runner.os.system" in err and "aside" in err, err
    assert not marker.exists()
