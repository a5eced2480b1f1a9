"""Methods and benchmarks from outside incsweep: module:Class references and entry points of an
installed distribution (a real dist-info on sys.path, as pip leaves it), and the one-line errors
for names that cannot be resolved."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from incsweep.core.errors import ConfigError
from incsweep.incremental.benchmarks import BenchmarkConfig, benchmark_names
from incsweep.incremental.methods import get_method, method_names
from incsweep.incremental.run import RunConfig, run
from incsweep.search_spaces import build_space, default_space

PLUGIN = '''
from dataclasses import dataclass
from incsweep.incremental.api import Float, MethodConfig, MemoryReport, spec, npz_benchmark
from incsweep.incremental.methods.finetune import Finetune

@dataclass(frozen=True)
class HalfLRConfig(MethodConfig):
    shrink: float = spec(0.5, range=(0.0, 1.0))

class HalfLR(Finetune):
    config_cls = HalfLRConfig
    search_space = {"shrink": Float(0.1, 0.9)}

class NotAMethod:
    pass

def shapes():
    import numpy as np, pathlib
    rng = np.random.default_rng(0)
    path = pathlib.Path(__file__).with_name("plug.npz")
    y = np.repeat(np.arange(4), 10)
    np.savez(path, x_train=rng.integers(0, 255, (40, 8, 8), dtype=np.uint8), y_train=y,
             x_test=rng.integers(0, 255, (40, 8, 8), dtype=np.uint8), y_test=y)
    return npz_benchmark(path)
'''


def install_plugin(tmp_path: Path, monkeypatch, name: str = "plugdist", module: str = "myplug",
                   methods: dict[str, str] | None = None, benchmarks: dict[str, str] | None = None) -> None:
    """A module plus a dist-info with entry_points.txt on sys.path: what `pip install` leaves behind."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / f"{module}.py").write_text(PLUGIN)
    info = tmp_path / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    groups = {"incsweep.methods": methods or {}, "incsweep.benchmarks": benchmarks or {}}
    text = "".join(f"[{g}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) for g, eps in groups.items() if eps)
    (info / "entry_points.txt").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))


TINY = {"backbone": "tiny", "width": 4, "epochs": 1, "batch_size": 16}
BENCH = {"name": "synthetic", "n_classes": 4, "image_size": 16, "train_per_class": 12, "test_per_class": 4}


def test_a_module_class_reference_runs(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch)
    cls = get_method("myplug:HalfLR")
    assert cls.__name__ == "HalfLR" and default_space("myplug:HalfLR") == {"shrink": cls.search_space["shrink"]}
    cfg = RunConfig.from_dict({"method": "myplug:HalfLR", "benchmark": BENCH, "method_config": {**TINY, "shrink": 0.3}})
    assert type(cfg.method_config).__name__ == "HalfLRConfig"
    assert run(cfg).complete
    assert RunConfig.from_dict(cfg.to_dict()) == cfg  # the reference travels in the config
    space = build_space(["myplug:HalfLR"], {"myplug:HalfLR": {"lr": {"low": 0.01, "high": 0.1}}})
    assert space.searched("myplug:HalfLR") == ["shrink", "lr"]


def test_entry_points_register_methods_and_benchmarks(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch, methods={"halflr": "myplug:HalfLR"}, benchmarks={"plug-shapes": "myplug:shapes"})
    assert "halflr" in method_names() and "plug-shapes" in benchmark_names()
    assert get_method("halflr").__name__ == "HalfLR"
    bench = BenchmarkConfig(name="plug-shapes")
    assert bench.spec.n_classes == 4 and bench.spec.image_shape == (1, 8, 8) and bench.task_sizes == (2, 2)
    cfg = RunConfig.from_dict({"method": "halflr", "benchmark": {"name": "plug-shapes"}, "method_config": TINY})
    assert run(cfg).complete


@pytest.mark.parametrize("name, message", [
    ("nosuch", "unknown method 'nosuch'; registered: ['finetune'"),
    ("no_such_module_xyz:Cls", "module 'no_such_module_xyz' is not installed in this environment"),
    ("myplug:Missing", "module 'myplug' has no attribute 'Missing'"),
    ("myplug:NotAMethod", "not a subclass of incsweep.incremental.methods.Method"),
    ("myplug:", "is not a module:attr reference"),
])
def test_unresolvable_methods_are_one_line(tmp_path, monkeypatch, name, message):
    install_plugin(tmp_path, monkeypatch)
    with pytest.raises(ConfigError) as err:
        get_method(name)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_method_must_declare_its_search_space(tmp_path, monkeypatch):
    (tmp_path / "nospace.py").write_text(textwrap.dedent('''
        from incsweep.incremental.api import Method, MethodConfig, BudgetPlan
        class Bare(Method):
            config_cls = MethodConfig
            def train_task(self, task): ...
            def predict(self, x, task_id): ...
            def memory(self): ...
            def state_dict(self): ...
            def load_state_dict(self, state): ...
            @classmethod
            def plan(cls, config, benchmark): ...
        class Half(Method):
            config_cls = MethodConfig
            search_space = None
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="declares no search_space; set it to a mapping"):
        get_method("nospace:Bare")
    with pytest.raises(ConfigError, match=r"does not implement \['load_state_dict', 'memory'"):
        get_method("nospace:Half")


def test_two_packages_claiming_one_name_is_an_error(tmp_path, monkeypatch):
    install_plugin(tmp_path / "a", monkeypatch, name="dista", module="plug_a", methods={"same": "plug_a:HalfLR"})
    install_plugin(tmp_path / "b", monkeypatch, name="distb", module="plug_b", methods={"same": "plug_b:HalfLR"})
    with pytest.raises(ConfigError, match="declared by more than one installed package"):
        get_method("same")


def test_unknown_benchmark_lists_what_is_registered():
    with pytest.raises(ConfigError, match=r"benchmark.name='nope' is unknown; registered: \['seq-fashionmnist'.*'npz'"):
        BenchmarkConfig(name="nope")


@pytest.mark.parametrize("argv", [["run", "--method", "nosuch:Thing"], ["budget", "--method", "nosuch"],
                                  ["check-method", "nosuch"], ["run", "--benchmark", "nope"]])
def test_cli_refuses_unresolvable_names_with_exit_2(argv):
    out = subprocess.run([sys.executable, "-m", "incsweep.cli", *argv], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().count("\n") == 0
    assert ("nosuch" in out.stderr) or ("nope" in out.stderr)


def test_check_method_passes_a_correct_plugin_and_fails_a_broken_one(tmp_path, monkeypatch):
    install_plugin(tmp_path, monkeypatch)
    env_path = f"{tmp_path}:{Path(__file__).parents[1]}"  # tests/: contract_fixtures.py
    ok = subprocess.run([sys.executable, "-m", "incsweep.cli", "check-method", "myplug:HalfLR"],
                        capture_output=True, text=True, timeout=300, env={"PYTHONPATH": env_path, "PATH": "/usr/bin"})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "7/7 checks passed" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "incsweep.cli", "check-method", "contract_fixtures:LeakyFinetune"],
                         capture_output=True, text=True, timeout=300, env={"PYTHONPATH": env_path, "PATH": "/usr/bin"})
    assert bad.returncode == 1 and "FAIL  memory_equals_plan" in bad.stdout
