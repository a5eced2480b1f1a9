"""The contract every registered method keeps, checked for EVERY registered method by real tiny runs.

The checks themselves live in ``incsweep.incremental.contract`` (what ``incsweep check-method``
runs for a user's method); here each built-in method runs each of them, plus the budget kinds.
A method added to the registry is picked up automatically; one whose defaults cannot be made tiny
by ``contract.TINY_FIELDS`` gets an entry in FAST.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from incsweep.incremental import contract
from incsweep.incremental.benchmarks import load_benchmark
from incsweep.incremental.memory import MB
from incsweep.incremental.methods import METHODS, ExemplarConfig, method_names
from incsweep.incremental.run import run

N_TASKS = 3
# Methods whose defaults TINY_FIELDS cannot make tiny (none today; BMKP's one backbone is skipped by choice).
FAST: dict[str, dict[str, Any]] = {}


def tiny_config(name: str, **overrides: Any):
    return contract.tiny_config(name, {**FAST.get(name, {}), **overrides})


@pytest.fixture(scope="module")
def bench():
    return load_benchmark(tiny_config("finetune").benchmark)


@pytest.fixture(scope="module", params=sorted(METHODS))
def checks(request, bench, tmp_path_factory):
    """One Contract per method: its reference run is trained once and shared by the checks."""
    return contract.Contract(tiny_config(request.param), tmp_path_factory.mktemp(f"contract-{request.param}"), bench)


def test_registry_is_covered():
    assert {"finetune", "replay", "icarl", "joint", "lwf", "ewc"} <= set(METHODS)
    assert set(METHODS) <= set(method_names())
    for name, cls in METHODS.items():
        assert cls.scenarios, f"{name} declares no scenario"
        assert set(cls.scenarios) <= {"class_il", "task_il"}
        assert hasattr(cls, "search_space"), f"{name} declares no search_space"


@pytest.mark.parametrize("check", contract.CHECKS)
def test_contract(checks, check):
    getattr(checks, check)()


def test_reference_reports_every_task(checks):
    result, _ = checks.reference
    assert result.complete and len(result.tasks) == N_TASKS
    flat = result.final.flat()
    for key in ("avg_acc", "last_acc", "forgetting", "bwt", "test_avg_acc", "model_bytes", "total_mb", "wall_s"):
        assert key in flat and math.isfinite(flat[key]), key


EXEMPLAR_METHODS = sorted(n for n, c in METHODS.items() if issubclass(c.config_cls, ExemplarConfig))


@pytest.mark.parametrize("budget", ["per_class", "total_mb", "aligned"])
@pytest.mark.parametrize("name", EXEMPLAR_METHODS)
def test_every_budget_kind_ends_at_its_plan(name, budget, bench):
    """``count`` is covered by the contract; the other budget kinds end exactly at plan() as well."""
    if budget == "total_mb":  # room for the final model and extras plus 10 images
        base = tiny_config(name)
        plan = METHODS[name].plan(base.method_config, base.benchmark)
        fields = {"memory_mb": (plan.model_bytes + plan.extra_bytes + 10 * plan.image_bytes) / MB}
    else:
        fields = {"memory_per_class": 3} if budget == "per_class" else {"aligned_base": 6}
    cfg = tiny_config(name, budget=budget, **fields)
    plan = METHODS[name].plan(cfg.method_config, cfg.benchmark)
    assert plan.n_exemplars > 0
    if budget == "total_mb":
        assert plan.total_bytes <= fields["memory_mb"] * MB
    mem = run(cfg, benchmark=bench).final.memory
    if METHODS[name].plan_is_exact:
        assert (mem.n_exemplars, mem.total_bytes) == (plan.n_exemplars, plan.total_bytes)
    else:
        assert mem.n_exemplars <= plan.n_exemplars and mem.total_bytes <= plan.total_bytes


def test_untiny_or_invalid_settings_fail_loudly():
    with pytest.raises(contract.ContractViolation, match="not tiny"):
        tiny_config("finetune", backbone="resnet32", width=64)
    with pytest.raises(contract.ContractViolation, match="no workable tiny settings"):
        tiny_config("finetune", no_such_field=1)


def test_a_broken_method_fails_the_checks_it_breaks(tmp_path):
    """The checks can fail: a method whose memory() lies and whose state forgets a tensor is caught."""
    results = {r.name: r for r in contract.check_method("contract_fixtures:LeakyFinetune", workdir=tmp_path,
                                                          checks=("memory_equals_plan", "state_round_trip", "reports"))}
    assert results["reports"].passed
    assert not results["memory_equals_plan"].passed and "model_bytes" in results["memory_equals_plan"].detail
    assert not results["state_round_trip"].passed
