"""plan() derived from memory() (incremental/methods/planning.py): each method states its memory once.

The oracles here are the hand-written formulas the derived plans replaced (backbone + a head over
every class, EWC's two float32 copies of the parameters, MEMO's G + T*S + classifier), computed
independently of the methods' code.
"""

from __future__ import annotations

import pytest
import torch

from incsweep.core.errors import ConfigError
from incsweep.incremental import contract
from incsweep.incremental.backbones import count_params, meta_backbone
from incsweep.incremental.benchmarks import BenchmarkConfig
from incsweep.incremental.census import take_census
from incsweep.incremental.memory import module_bytes
from incsweep.incremental.methods import METHODS, get_method
from incsweep.incremental.methods._memo_net import split_sizes
from incsweep.incremental.methods._single import head_bytes
from incsweep.incremental.methods.planning import grown_for_plan

FM = BenchmarkConfig(name="seq-fashionmnist")  # 5 tasks x 2 classes, 1x28x28
C100 = BenchmarkConfig(name="seq-cifar100", init_classes=50, increment=10)  # 6 tasks, 3x32x32


def _backbone(name: str, channels: int, **kw):
    return meta_backbone(name, channels, kw)


@pytest.mark.parametrize("backbone", ["resnet32", "resnet18"])
@pytest.mark.parametrize("method", ["finetune", "lwf", "replay"])
def test_single_network_plans_are_backbone_plus_a_full_head(method, backbone):
    cls = METHODS[method]
    plan = cls.plan(cls.config_cls(backbone=backbone), C100)
    bb = _backbone(backbone, 3)
    assert plan.model_bytes == module_bytes(bb) + head_bytes(bb.out_dim, 100)
    assert plan.backbone_params == count_params(bb)
    if method == "lwf":  # the last task trains against the model before its head grew by 10 classes
        assert plan.train_state_bytes == module_bytes(bb) + head_bytes(bb.out_dim, 90)


def test_ewc_plans_a_fisher_and_an_anchor_per_parameter():
    plan = METHODS["ewc"].plan(METHODS["ewc"].config_cls(), FM)
    bb = _backbone("resnet32", 1)
    params = count_params(bb) * 4 + head_bytes(bb.out_dim, 10)
    assert (plan.model_bytes, plan.extra_bytes) == (module_bytes(bb) + head_bytes(bb.out_dim, 10), 2 * params)


def test_memo_plan_is_shared_plus_t_specialized_plus_classifier_and_the_aligned_count():
    cls = METHODS["memo"]
    plan = cls.plan(cls.config_cls(budget="aligned"), C100)
    bb = _backbone("resnet32", 3)
    sz = split_sizes(bb, 10)  # the paper's default split on ResNet-32: 10 shared blocks
    t = 6
    assert plan.model_bytes == sz["shared_bytes"] + t * sz["specialized_bytes"] + head_bytes(t * bb.out_dim, 100)
    spare = t * sz["backbone_params"] - (sz["shared_params"] + t * sz["specialized_params"])
    assert plan.exemplar_total == 2000 + spare * 4 // (3 * 32 * 32)


def test_separate_plan_is_one_network_per_task():
    cfg = METHODS["separate"].config_cls()  # BMKP's network: reduced ResNet-18, nf 20
    plan = METHODS["separate"].plan(cfg, FM)
    bb = _backbone(cfg.backbone, 1, nf=20)
    assert plan.model_bytes == 5 * module_bytes(bb) + 5 * head_bytes(bb.out_dim, 2)


def test_plan_builds_nothing_real_and_leaves_the_global_rngs():
    cls, cfg = METHODS["memo"], METHODS["memo"].config_cls(backbone="resnet18")
    torch.manual_seed(5)
    before = torch.get_rng_state()
    plan = cls.plan(cfg, C100)
    assert torch.equal(torch.get_rng_state(), before)
    assert plan.model_bytes > 6 * 4 * 2**20  # six ResNet-18 layer4 copies (tens of MB) planned ...
    grown = grown_for_plan(cls, cfg, C100)
    tensors = [*grown.net.parameters(), *grown.net.buffers()]
    assert len(grown.net.specialized) == 6 and tensors and all(t.is_meta for t in tensors)  # ... without storage


def test_a_method_without_plan_gets_its_memory_measured(tmp_path):
    """The example plugin writes no plan(): its plan is its own memory() grown + its prototypes."""
    cls = get_method("frozen_ncm")
    assert "plan" not in vars(cls)
    results = contract.check_method("frozen_ncm", workdir=tmp_path, checks=("memory_equals_plan",))
    assert [r.passed for r in results] == [True], results


def test_growth_outside_begin_task_without_a_plan_fails_the_contract(tmp_path):
    results = contract.check_method("contract_fixtures:UnplannedFinetune", workdir=tmp_path,
                                    checks=("memory_equals_plan",))
    assert not results[0].passed and "model_bytes" in results[0].detail and "!= plan" in results[0].detail


def test_begin_task_that_needs_values_gets_a_one_line_error():
    cls = get_method("contract_fixtures:DataHungryFinetune")
    with pytest.raises(ConfigError) as err:
        cls.plan(cls.config_cls(), FM)
    msg = str(err.value)
    assert "\n" not in msg and "DataHungryFinetune.plan()" in msg and "override plan()" in msg


def test_the_census_counts_shared_tensors_once():
    class Holder:
        def __init__(self):
            self.a = torch.nn.Linear(3, 2)
            self.b = [self.a, torch.nn.BatchNorm2d(4)]
    h = Holder()
    assert take_census(h).total == module_bytes(h.a) + module_bytes(h.b[1])


def test_planning_on_meta_skips_normal_fills_and_only_those():
    """on_meta answers ``normal_`` on a meta tensor with the tensor itself (torch's reference kernel
    for it imports torch._dynamo, 1.7 s of every study's start-up); a CPU tensor made inside the
    block is still filled, and so is every other initialiser."""
    from incsweep.incremental.backbones import on_meta

    with on_meta():
        weight = torch.empty(8, 4)
        assert torch.nn.init.kaiming_normal_(weight) is weight
        assert torch.nn.init.normal_(weight) is weight and weight.is_meta and weight.shape == (8, 4)
        cpu = torch.zeros(3, device="cpu")
        torch.nn.init.normal_(cpu, mean=5.0)
        uniform = torch.nn.init.uniform_(torch.empty(2, 2))
    assert cpu.abs().sum() > 0  # filled: the skip is for meta tensors only
    assert uniform.is_meta
    assert not torch.empty(1).is_meta  # the meta default ends with the block


def test_a_plan_of_the_built_in_methods_does_not_import_dynamo(fresh_python):
    """The driver plans every method before Ray starts (study/runner.py check_methods); none of the
    built-in methods' meta builds may pull in torch._dynamo, as normal_ on meta used to."""
    fresh_python("import sys\n"
                 "from incsweep.incremental.benchmarks import BenchmarkConfig\n"
                 "from incsweep.incremental.methods import METHODS\n"
                 "for name, cls in sorted(METHODS.items()):\n"
                 "    cls.plan(cls.config_cls(), BenchmarkConfig(name='seq-cifar100', init_classes=50, increment=10))\n"
                 "    assert 'torch._dynamo' not in sys.modules, name\n")
