"""One import package: the wheel installs only ``incsweep`` at top level, works beside files
and packages named like its parts, and its torch-free layers stay torch-free."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import incsweep

ROOT = Path(__file__).resolve().parent.parent
CLASHES = ("analysis", "study", "incremental", "trainables", "search_spaces")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # --no-build-isolation: the venv's setuptools builds it, no download; the build dir goes to tmp.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, cwd=out, env={**os.environ, "PIP_NO_INPUT": "1"})
    (found,) = out.glob("incsweep-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True)
    return target


def test_wheel_holds_one_top_level_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"incsweep"}
    assert "incsweep/py.typed" in names  # PEP 561: users' type checkers read the annotations
    top = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top).decode().split() == ["incsweep"]
    for part in CLASHES:
        assert f"incsweep/{part}/__init__.py" in names
    assert "incsweep/incremental/methods/bmkp.py" in names
    assert {"incsweep/core/__init__.py", "incsweep/core/layout.py", "incsweep/cli.py"} <= set(names)


def _python(code: str, cwd: Path, path: list[Path]) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p) for p in path)}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_installed_wheel_works_beside_clashing_names(installed, tmp_path):
    """A notebook folder holding analysis.py, study.py, incremental.py (each fails on import), and another
    ``incremental`` package on the path (Twisted's versioning package has that import name)."""
    for part in ("analysis", "study", "incremental"):
        (tmp_path / f"{part}.py").write_text(f"raise ImportError('the local {part}.py was imported')\n")
    other = tmp_path / "other"
    (other / "incremental").mkdir(parents=True)
    (other / "incremental" / "__init__.py").write_text("__version__ = 'not incsweep'\n")
    code = ("import incsweep, incsweep.analysis, incsweep.study.spec, incsweep.incremental.run\n"
            "from incsweep.analysis import load_results, pareto_front, hypervolume\n"
            "import importlib.util\n"
            "print(incsweep.__file__); print(incsweep.incremental.run.__file__)\n"
            "print(importlib.util.find_spec('incremental').origin)")
    proc = _python(code, tmp_path, [other, installed])
    assert proc.returncode == 0, proc.stderr
    first, second, third = proc.stdout.split()
    assert first.startswith(str(installed)) and second.startswith(str(installed))
    assert third == str(tmp_path / "incremental.py")  # the name `incremental` stays the local file's


def test_the_shipped_configs_are_in_the_wheel_and_reachable_by_name(wheel, installed, tmp_path):
    """The README's demo and the papers' configs travel with the package: `incsweep study run demo`,
    `incsweep run --config memo/cifar100_b0_inc10` work from any folder of an installed wheel."""
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("*/*.yaml")}
    assert {f"incsweep/{p}" for p in shipped} <= names and len(shipped) >= 9
    code = ("from incsweep.study.spec import load_spec\n"
            "from incsweep.incremental.run import load_run_config\n"
            "print(load_spec('demo').name, load_spec('tiny.yaml').trials)\n"
            "print(load_run_config('memo/cifar100_b0_inc10', device='cpu').method)")
    proc = _python(code, tmp_path, [installed])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["demo", "4", "memo"]
    bad = _python("from incsweep.study.spec import load_spec\nload_spec('nosuch')", tmp_path, [installed])
    assert "no config shipped by that name; shipped: demo, tiny" in bad.stderr


def test_twisted_incremental_alongside(installed, tmp_path):
    """The real clash: Twisted's ``incremental`` from PyPI installed next to incsweep."""
    other = tmp_path / "twisted"
    got = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(other),
                          "incremental"], capture_output=True, text=True, timeout=300)
    if got.returncode != 0:
        pytest.skip(f"PyPI not reachable for Twisted's incremental: {got.stderr.strip().splitlines()[-1:]}")
    proc = _python("import incremental, incsweep.incremental.run as r, incsweep.analysis\n"
                   "assert not hasattr(incremental, 'run'), incremental.__file__\nprint(r.__file__)",
                   tmp_path, [other, installed])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(installed))


@pytest.mark.parametrize("code", ["import incsweep.analysis",
                                  "from incsweep.cli import build_parser; build_parser()"],
                         ids=["analysis", "cli-help"])
def test_torch_free_layers_import_neither_torch_nor_ray(code, tmp_path):
    proc = _python(f"import sys\n{code}\nprint(sorted(m for m in ('torch', 'ray', 'optuna') if m in sys.modules))",
                   tmp_path, [])
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_version_everywhere(capsys):
    from incsweep.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"incsweep {incsweep.__version__}"
    assert incsweep.__version__ != "0+unknown"  # installed: the distribution's metadata


@pytest.mark.parametrize("line, expected", [("incsweep study r", {"run", "resume"}),
                                            ("incsweep analyze runs/x --sp", {"--split"}),
                                            ("incsweep ca", {"cache"})])
def test_the_shell_completes_commands_and_options(line, expected, tmp_path):
    """argcomplete's protocol, as bash's completion hook drives it (README: shell completion)."""
    pytest.importorskip("argcomplete")
    out = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "COMP_LINE": line,
           "COMP_POINT": str(len(line)), "_ARGCOMPLETE_IFS": " "}
    script = Path(sys.executable).with_name("incsweep")
    proc = subprocess.run([str(script)], env=env, capture_output=True, text=True, timeout=120, pass_fds=())
    assert proc.returncode == 0, proc.stderr
    assert set(out.read_text().split()) == expected
