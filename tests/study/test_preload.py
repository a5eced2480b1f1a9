"""study/preload.py: Tune's imports at fit's start, made while Ray starts."""

from __future__ import annotations

import sys

from incsweep.study.preload import imported_aside


def test_imports_aside_are_loaded_when_the_block_ends_and_a_failed_one_is_left_to_its_importer():
    missing = "incsweep_no_such_module_for_preload"
    with imported_aside(["colorsys", missing]):
        pass
    assert "colorsys" in sys.modules
    assert missing not in sys.modules  # its error is not raised here: Tune's own import would raise it


def _imported_by_tunes_callback_telemetry(fresh_python, preload: bool) -> list[str]:
    return fresh_python("import sys\n"
                        "import ray.tune\n"
                        "from ray.air._internal.usage import _count_callbacks\n"
                        "from incsweep.study.preload import imported_aside\n"
                        f"if {preload}:\n"
                        "    with imported_aside():\n"
                        "        pass\n"
                        "before = set(sys.modules)\n"
                        "_count_callbacks([ray.tune.Callback()])\n"
                        "print(' '.join(sorted(set(sys.modules) - before)))\n").split()


def test_the_preload_covers_what_tune_imports_to_tag_a_runs_callbacks(fresh_python):
    """Ray's telemetry of a run's callbacks (tune.run, every study) imports Ray's tracker integrations
    and through them MLflow and W&B where installed: after the preload it imports nothing new. Fails
    when a Ray upgrade adds an import there, i.e. when TUNE_FIT_IMPORTS is out of date."""
    assert "ray.air.integrations.mlflow" in _imported_by_tunes_callback_telemetry(fresh_python, preload=False)
    assert _imported_by_tunes_callback_telemetry(fresh_python, preload=True) == []
