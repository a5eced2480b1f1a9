"""Study platform: spec validation, the searcher's Optuna bookkeeping, the Parquet sink, and
end-to-end studies on a real local Ray (temporary directories, shut down after)."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from collections import Counter
from pathlib import Path

import optuna
import pyarrow.parquet as pq
import pytest
from optuna.trial import TrialState

from incsweep.core.errors import ConfigError
from incsweep.study.results import list_trial_files, read_trial_file
from incsweep.study.searcher import (
    ASK_S_ATTR,
    ASKED_AHEAD_ATTR,
    TUNE_ID_ATTR,
    Continuation,
    StudySearcher,
    make_optuna_storage,
    make_sampler,
    open_study,
    reconcile_orphans,
    sampler_seed,
)
from incsweep.study.spec import Constraint, Objective, StudySpec

optuna.logging.set_verbosity(optuna.logging.WARNING)

SYNTH = {"name": "synthetic", "n_classes": 6, "image_size": 16, "train_per_class": 24, "test_per_class": 8,
         "val_fraction": 0.25}
NET = {"backbone": "tiny", "width": 8, "epochs": 1, "batch_size": 16}


def spec_dict(**over) -> dict:
    d = {"name": "t", "methods": ["finetune", "replay"], "benchmark": dict(SYNTH),
         "search": {"finetune": dict(NET), "replay": {**NET, "memory_size": {"low": 6, "high": 60}}},
         "trials": 4, "concurrency": 2}
    d.update(over)
    return d


# ---- spec ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("over, message", [
    ({"colour": 1}, "unknown key(s) ['colour']"),
    # tuning protocols and enqueued configurations
    ({"protocol": "two_phase"}, "protocol: two_phase needs evaluate_on"),
    ({"evaluate_on": {"class_order": "seed7"}}, "evaluate_on applies to protocol two_phase only"),
    ({"protocol": "two_phase", "evaluate_on": {"class_order": "seed1993"}}, "the evaluation benchmark equals the tuning one"),
    ({"protocol": "two_phase", "evaluate_on": {"class_order": "shuffled"}}, "class_order='shuffled' is not allowed"),
    ({"protocol": "warmup"}, "protocol='warmup' is not allowed; choose one of ['end_of_training', 'two_phase', 'first_task']"),
    ({"protocol": "first_task", "scheduler": {"name": "asha", "grace_period": 1}},
     "protocol first_task runs one task per trial; use scheduler: {name: fifo}"),
    ({"protocol": "first_task", "evaluate_on": {"class_order": "seed7"}}, "evaluate_on applies to protocol two_phase only"),
    ({"enqueue": [{"method": "joint", "params": {}}]}, "enqueue[0]: method 'joint' is not one of this study's"),
    ({"enqueue": [{"method": "finetune", "params": {"width": 4}}]}, "enqueue[0]: ['width'] are not searched for finetune"),
    ({"objectives": ["test_avg_acc:max"]}, "test metrics are recorded, never optimised"),
    ({"objectives": ["accuracy:max"]}, "objective 'accuracy' is unknown"),
    ({"objectives": ["avg_acc:up"]}, "direction 'up' is not allowed; use max or min"),
    # no silent coercion, every range checked before anything starts
    ({"trials": 2.7}, "trials=2.7 must be a whole number"),
    ({"concurrency": 1.5}, "concurrency=1.5 must be a whole number"),
    ({"seed": True}, "seed=True must be a whole number"),
    ({"seed": -1}, "seed=-1 is out of range; allowed [0, 2147483647]"),
    ({"seed": 3000000000}, "seed=3000000000 is out of range"),
    ({"concurrency": "two"}, "concurrency='two' must be a whole number"),
    ({"prefix_cache": "maybe"}, "prefix_cache='maybe' must be true or false"),
    # no silent direction (these became avg_acc:max, total_mb:max)
    ({"objectives": ["avg_acc", "total_mb"]}, "objective 'avg_acc' has no mode; write avg_acc:max or avg_acc:min"),
    ({"objectives": {"avg_acc": "max", "total_mb": "smallest"}}, "total_mb: 'smallest' is not a mode"),
    ({"objectives": 3}, "objectives: 3 is not allowed"),
    ({"constraints": ["total_mb < 8"]}, "write METRIC <= NUMBER"),
    ({"sampler": "cmaes"}, "SamplerSpec.name='cmaes' is not allowed"),
    ({"sampler": {"name": "random", "multivariate": True}}, "applies to tpe, not random"),
    ({"sampler": {"name": "gp", "multivariate": True}}, "multivariate applies to tpe, not gp"),
    ({"sampler": {"name": "nsga2", "startup_trials": 3}}, "startup_trials applies to tpe and gp, not nsga2"),
    ({"sampler": {"name": "tpe", "startup_trials": -1}}, "SamplerSpec.startup_trials=-1 is out of range"),
    ({"sampler": {"name": "tpe", "multivariate": "yes"}}, "sampler.multivariate"),
    ({"sampler": {"name": "tpe", "warm": 3}}, "sampler: unknown field"),
    ({"resources": {"gpu": 1.5}}, "a trial trains on one GPU, so at most 1 is allowed"),
    ({"scheduler": {"name": "asha", "grace_period": 3}}, "grace_period=3 must be below the benchmark's 3 tasks"),
    ({"scheduler": {"name": "asha", "rule": "rank"}}, "SchedulerSpec.rule='rank' is not allowed"),
    ({"benchmark": {**SYNTH, "val_fraction": 0.0}}, "val_fraction must be > 0"),
    ({"search": {"finetune": {"lrr": 0.1}}}, "unknown parameter 'lrr'"),
    ({"search": {"finetune": {"lr": {"low": 0.1, "high": 20.0}}}}, "lr=20.0"),
    ({"search": {"icarl": {}}}, "name no method of this study"),
    ({"methods": ["bmkp"], "scenario": "class_il"}, "not supported by bmkp"),
    ({"methods": ["nope"]}, "unknown method 'nope'"),
    ({"name": "a/b"}, "name='a/b'"),
])
def test_spec_rejects_bad_input_with_a_clear_message(over, message):
    with pytest.raises(ConfigError) as err:
        StudySpec.from_dict(spec_dict(**over))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_spec_defaults_and_round_trip():
    spec = StudySpec.from_dict(spec_dict(benchmark={k: v for k, v in SYNTH.items() if k != "val_fraction"}))
    assert spec.benchmark.val_fraction == 0.1  # objectives need a validation split
    assert spec.objectives == (Objective("avg_acc", "max"), Objective("total_mb", "min"))
    as_mapping = StudySpec.from_dict(spec_dict(objectives={"avg_acc": "max", "total_mb": "min"}))
    assert as_mapping.objectives == spec.objectives  # a mapping with explicit modes keeps its directions
    assert StudySpec.from_dict(spec.to_dict()) == spec
    held = StudySpec.from_dict(spec_dict(benchmark={**{k: v for k, v in SYNTH.items() if k != "val_fraction"},
                                                    "val_per_class": 15}))
    assert (held.benchmark.val_fraction, held.benchmark.val_per_class) == (0.0, 15)  # no 10% default on top
    assert StudySpec.from_dict(held.to_dict()) == held
    c = Constraint.parse("total_mb <= 8")
    assert c.violation(6.0) == -2.0 and c.violation(9.0) == 1.0
    assert Constraint.parse("avg_acc >= 0.5").violation(0.4) == pytest.approx(0.1)


def test_a_spec_with_every_field_set_survives_its_own_serialisation(tmp_path):
    """to_dict is built from the fields: a spec whose every field differs from the defaults comes back
    equal from from_dict(to_dict()), so no field can be left out of what study.yaml stores."""
    full = StudySpec.from_dict({
        "name": "full", "methods": ["replay", "finetune"], "benchmark": {"name": "synthetic", "n_classes": 4},
        "search": {"replay": {"memory_size": {"low": 10, "high": 40}}}, "scenario": "class_il",
        "objectives": ["avg_acc:max", "total_mb:min", "cpu_s:min"], "constraints": ["total_mb<=2"],
        "sampler": {"name": "nsga2", "population_size": 8},
        "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 3}, "trials": 5, "concurrency": 2,
        "resources": {"cpu": 2}, "seed": 3, "max_failures": 0, "storage": str(tmp_path / "s"),
        "optuna_storage": f"sqlite:///{tmp_path}/o.db", "prefix_cache": False, "prefix_cache_max_gb": 1.5,
        "eval_batch_size": 64, "device": "cpu", "callbacks": ["csv"],
        "enqueue": [{"method": "finetune", "params": {"lr": 0.1}}], "protocol": "two_phase",
        "evaluate_on": {"name": "synthetic", "n_classes": 6}})
    plain = StudySpec.from_dict({"name": "plain", "methods": ["finetune"]})
    fields = [f.name for f in dataclasses.fields(StudySpec)]
    assert [f for f in fields if getattr(full, f) == getattr(plain, f)] == []  # every field is exercised
    assert list(full.to_dict()) == fields
    assert StudySpec.from_dict(full.to_dict()) == full


# ---- searcher bookkeeping (real Optuna storage, no Ray needed) --------------------------------------
def _searcher(tmp_path, n_tasks=3, constraints=(), sampler="tpe", spec=None, continuations=(), **ahead):
    spec = spec or StudySpec.from_dict(spec_dict())
    study = open_study(make_optuna_storage(str(tmp_path / "j.journal")), "t", sampler=make_sampler(sampler, 0),
                       metrics=["avg_acc", "total_mb"], modes=["max", "min"])
    return StudySearcher(space=spec.space(), metrics=["avg_acc", "total_mb"], modes=["max", "min"], n_tasks=n_tasks,
                         constraints=constraints, study=study, continuations=continuations, **ahead)


def test_asking_ahead_hands_out_the_prepared_trial_and_never_asks_past_the_samples(tmp_path):
    """The searcher asks its next suggestion between Tune's events (AskAhead), so a freed slot does not
    wait for the sampler; it asks no trial that Tune will not take (one would stay RUNNING)."""
    s = _searcher(tmp_path, samples=3, ask_ahead=True)
    s.prepare_next()
    s.prepare_next()  # one at a time
    (held,) = s.study.get_trials()
    assert held.state == TrialState.RUNNING and TUNE_ID_ATTR not in held.user_attrs and ASK_S_ATTR in held.user_attrs
    first = s.suggest("a")
    assert len(s.study.trials) == 1  # served from the prepared trial: no ask at suggest
    (t,) = s.study.get_trials()
    assert t.user_attrs[TUNE_ID_ATTR] == "a" and first["method"] == t.params["method"]
    s.suggest("b")  # nothing prepared: asked at suggest, as without asking ahead
    s.prepare_next()  # the third and last suggestion
    s.suggest("c")
    s.prepare_next()  # Tune asks for no fourth
    assert [t.user_attrs.get(TUNE_ID_ATTR) for t in s.study.get_trials()] == ["a", "b", "c"]
    assert dict(s.numbers) == {"a": 0, "b": 1, "c": 2}  # what the sink stamps on each trial's rows
    assert s.release_held() is None
    # off: prepare_next asks nothing
    (tmp_path / "off").mkdir()
    off = _searcher(tmp_path / "off", samples=3, ask_ahead=False)
    off.prepare_next()
    assert off.study.trials == []


def test_a_study_asks_ahead_unless_it_runs_one_trial_at_a_time(tmp_path):
    """A sequential study's every proposal sees every earlier result; a parallel one's already lack the
    running trials' results, and one more (the trial whose slot it takes) is the price of not waiting."""
    from incsweep.study.runner import _build_searcher

    study = open_study(make_optuna_storage(str(tmp_path / "j.journal")), "t", sampler=make_sampler("random", 0),
                       metrics=["avg_acc", "total_mb"], modes=["max", "min"])
    asked = []
    for concurrency in (1, 2, None):  # None: as many at once as the resources allow
        searcher = _build_searcher(StudySpec.from_dict(spec_dict(concurrency=concurrency)), study, samples=5)
        searcher.prepare_next()
        asked.append(sum(bool(t.user_attrs.get(ASKED_AHEAD_ATTR)) for t in study.trials))
        searcher.release_held()
    assert asked == [0, 1, 2]


def test_asking_ahead_leaves_continuations_first_and_a_stopped_study_fails_the_prepared_trial(tmp_path):
    spec = StudySpec.from_dict(spec_dict())
    cont = Continuation(number=0, key="k", config={"method": "finetune", "params": {}})
    s = _searcher(tmp_path, spec=spec, continuations=[cont], samples=2, ask_ahead=True)
    s.study.ask()  # trial 0: the continuation's own trial, asked by an earlier driver
    s.study.enqueue_trial({"method": "finetune"})  # a configuration enqueued (enqueue:, confirm)
    s.prepare_next()  # 1 continuation + 1 ask = the 2 samples
    assert s.suggest("x")["key"] == "k"
    assert s.numbers["x"] == 0  # a continuation keeps the number of the trial it continues
    s.prepare_next()  # already prepared
    assert len(s.study.trials) == 2
    number = s.release_held()  # the study stopped before Tune asked for it
    released = s.study.trials[number]
    assert released.state == TrialState.FAIL and "asked ahead" in released.user_attrs["outcome"]
    assert released.params["method"] == "finetune"  # the prepared trial had taken the enqueued configuration
    again = s.study.ask()  # which is queued again, not lost to the sampler
    assert s.study.trials[again.number].system_attrs["fixed_params"] == {"method": "finetune"}


def test_searcher_tells_pruned_failed_and_complete_with_constraints(tmp_path):
    s = _searcher(tmp_path, constraints=(Constraint.parse("total_mb <= 0.5"),))
    for tid in ("a", "b", "c", "d", "e", "f"):
        config = s.suggest(tid)
        assert config["method"] in ("finetune", "replay")
    s.on_trial_complete("a", {"tasks_done": 3, "avg_acc": 0.7, "total_mb": 1.0})
    s.on_trial_complete("b", {"tasks_done": 1, "avg_acc": 0.9, "total_mb": 0.1})  # ASHA stop after 1 of 3
    s.on_trial_complete("c", {"tasks_done": 2, "diverged": True, "avg_acc": math.nan, "total_mb": math.nan})
    s.on_trial_complete("d", {"tasks_done": 3, "avg_acc": math.nan, "total_mb": 1.0})
    s.on_trial_complete("e", None, error=True)
    s.on_trial_complete("f", {"tasks_done": 3, "avg_acc": 0.6, "total_mb": 0.2})
    s.on_trial_complete("a", {"tasks_done": 3, "avg_acc": 0.1, "total_mb": 9.0})  # told once only
    trials = {t.user_attrs[TUNE_ID_ATTR]: t for t in s.study.get_trials()}
    assert trials["a"].state == TrialState.COMPLETE and trials["a"].values == [0.7, 1.0]
    # named (Optuna 5's format) and as the list optuna-dashboard shows ("0": study/searcher.py says why)
    assert trials["a"].constraints == {"total_mb <= 0.5": 0.5, "0": 0.5}
    assert trials["b"].state == TrialState.PRUNED and trials["b"].values is None
    assert [trials[t].state for t in "cde"] == [TrialState.FAIL] * 3
    # "a" violates total_mb <= 0.5 and "b" is pruned: only "f" is on the front, although "b" reported
    # better truncated values than both (docs/ray-optuna.md trap 3)
    assert [t.number for t in s.study.best_trials] == [trials["f"].number]


def test_resume_plan_continues_interrupted_trials_fails_unrun_ones_and_closes_told_ones(tmp_path):
    """What a resumed study rebuilds from its own data (study/resume.py), nothing from Tune's state:
    a RUNNING trial a Tune trial ran is continued with its configuration, identity and checkpoints;
    one no Tune trial ran is failed; a result file whose trial Optuna finished gets its final row."""
    from incsweep.core.layout import StudyLayout
    from incsweep.study.results import final_row, task_row, write_trial_file
    from incsweep.study.resume import plan_resume
    from tests.analysis.test_analysis_results import T0, _task

    storage = tmp_path / "s"
    spec = StudySpec.from_dict(spec_dict(storage=str(storage)))
    layout = StudyLayout(str(storage))
    storage.mkdir()
    s = _searcher(storage, spec=spec)
    configs = {tid: s.suggest(tid) for tid in ("live", "told", "done")}
    s.on_trial_complete("told", {"tasks_done": 3, "avg_acc": 0.5, "total_mb": 1.0})
    s.on_trial_complete("done", {"tasks_done": 3, "avg_acc": 0.6, "total_mb": 0.4})
    unrun = s.study.ask()  # asked, then the driver died before any Tune trial ran it
    # "told" has task rows but no final row (the driver died between telling Optuna and the sink);
    # "done" has its final row.
    for tid, final in (("told", False), ("done", True)):
        rows = [task_row(_task(k, 3, 0.5, 1.0), study="t", trial_id=tid, method=configs[tid]["method"],
                         benchmark="synthetic", seed=0, config_json="{}", params={}, started_at=T0) for k in range(3)]
        write_trial_file(str(storage), rows + [final_row(rows, status="complete")] if final else rows)
    ckpt = storage / "tune" / "trial_live" / "checkpoint_000001"
    ckpt.mkdir(parents=True)
    (storage / "tune" / "trial_live_abc" / "checkpoint_000000").mkdir(parents=True)
    (storage / "tune" / "trial_lively" / "checkpoint_000000").mkdir(parents=True)  # another trial's

    plan = plan_resume(spec, layout, s.study)
    (c,) = plan.continuations
    assert (c.key, c.number, dict(c.config)) == ("live", 0, configs["live"])
    assert c.checkpoints == (str(ckpt), str(storage / "tune" / "trial_live_abc" / "checkpoint_000000"))
    assert plan.failed_orphans == (unrun.number,) and plan.closed == ("told",)
    states = {t.number: t.state for t in s.study.get_trials()}
    assert states == {0: TrialState.RUNNING, 1: TrialState.COMPLETE, 2: TrialState.COMPLETE, 3: TrialState.FAIL}
    told = [r for r in read_trial_file(str(storage), "t", configs["told"]["method"], "told") if r["is_final"]]
    assert [(r["status"], r["tasks_done"]) for r in told] == [("complete", 3)]
    # a continuation is handed to the next Tune trial with its identity and checkpoints
    again = _searcher(storage, spec=spec, continuations=plan.continuations)
    again.study.sampler = make_sampler("tpe", sampler_seed(0, len(again.study.trials)))  # as open_optuna_study does
    config = again.suggest("new1")
    assert config["key"] == "live" and config["resume_from"] == list(c.checkpoints)
    assert config["params"] == configs["live"]["params"]
    again.on_trial_complete("new1", {"tasks_done": 3, "avg_acc": 0.7, "total_mb": 0.3})
    assert again.study.trials[0].state == TrialState.COMPLETE and again.study.trials[0].values == [0.7, 0.3]
    assert again.suggest("new2")["params"] != configs["live"]["params"]  # then the sampler's own


# ---- end to end on a real local Ray ---------------------------------------------------------------
def _rows(storage, study):
    out = []
    for method, tid in list_trial_files(storage, study):
        out.extend(read_trial_file(storage, study, method, tid))
    return out


def _optuna_states(storage, name):
    st = optuna.load_study(study_name=name, storage=make_optuna_storage(str(Path(storage) / "optuna.journal")))
    return Counter(t.state.name for t in st.get_trials())


def _check_exactly_once(rows, n_tasks):
    keys = [(r["trial_id"], r["task"], r["is_final"]) for r in rows]
    assert len(keys) == len(set(keys)), "duplicate rows"
    by_trial: dict[str, list] = {}
    for r in rows:
        by_trial.setdefault(r["trial_id"], []).append(r)
    for tid, trs in by_trial.items():
        tasks = sorted(r["task"] for r in trs if not r["is_final"])
        finals = [r for r in trs if r["is_final"]]
        assert len(finals) == 1, tid
        assert tasks == list(range(finals[0]["tasks_done"])), (tid, tasks)
        if finals[0]["status"] == "complete":
            assert tasks == list(range(n_tasks))
    return by_trial


def test_multi_objective_study_end_to_end(local_ray, tmp_path):
    from incsweep.study.runner import run_study

    spec = StudySpec.from_dict(spec_dict(storage=str(tmp_path / "s"), constraints=["total_mb <= 1"]))
    summary = run_study(spec)
    assert summary.done and summary.statuses == Counter(complete=4)
    rows = _rows(spec.storage, "t")
    by_trial = _check_exactly_once(rows, 3)
    assert len(by_trial) == 4 and len(rows) == 4 * 3 + 4
    assert _optuna_states(spec.storage, "t") == Counter(COMPLETE=4)  # none asked ahead and left over
    # two at a time: trials after the first two were asked ahead, between Tune's events (AskAhead)
    st = optuna.load_study(study_name="t", storage=make_optuna_storage(str(Path(spec.storage) / "optuna.journal")))
    assert any(t.user_attrs.get(ASKED_AHEAD_ATTR) for t in st.trials)
    # every row carries its trial's Optuna number: the order the study proposed it (analysis orders by it)
    numbers = {t.user_attrs[TUNE_ID_ATTR]: t.number for t in st.trials}
    assert sorted(numbers.values()) == [0, 1, 2, 3]
    assert all(r["trial_number"] == numbers[r["trial_id"]] for r in rows)
    final = [r for r in rows if r["is_final"]]
    for r in final:
        cfg = json.loads(r["config_json"])
        assert cfg["method"] == r["method"] and cfg["benchmark"]["name"] == "synthetic"
        assert r["total_bytes"] == r["model_bytes"] + r["exemplar_bytes"] + r["extra_bytes"]
        assert 0 <= r["avg_acc"] <= 1 and 0 <= r["test_avg_acc"] <= 1
        if r["method"] == "replay":
            assert r["param_memory_size"] == cfg["method_config"]["memory_size"]
    # hive layout: study=/method= directories; the keys live in the path only, and every
    # file has the study's one schema
    files = sorted(Path(spec.storage, "results").rglob("*.parquet"))
    assert {f.parent.name for f in files} <= {"method=finetune", "method=replay"}
    assert "study" not in pq.read_schema(files[0]).names and len({pq.read_schema(f) for f in files}) == 1
    assert pq.read_table(Path(spec.storage, "results")).column("study").to_pylist()[0] == "t"
    # a second run on the same storage must refuse, not overwrite
    with pytest.raises(ConfigError, match="already holds study 't'"):
        run_study(spec)


def test_asha_pruned_trials_are_pruned_in_optuna_and_parquet(local_ray, tmp_path):
    from incsweep.study.runner import run_study

    # 4 tasks; enough data and epochs that accuracy at a rung follows lr instead of tying at chance
    # (with 24 images a class and 1 epoch every trial tied and ASHA rightly stopped none)
    bench = {**SYNTH, "n_classes": 8, "init_classes": 2, "increment": 2, "train_per_class": 64}
    spec = StudySpec.from_dict(spec_dict(
        storage=str(tmp_path / "a"), methods=["finetune"], benchmark=bench, trials=8, concurrency=2,
        search={"finetune": {**NET, "epochs": 3, "lr": {"low": 1e-4, "high": 0.5, "log": True}}},
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2}, prefix_cache=False))
    summary = run_study(spec)
    assert summary.done
    rows = _rows(spec.storage, "t")
    by_trial = _check_exactly_once(rows, 4)
    final = {tid: [r for r in trs if r["is_final"]][0] for tid, trs in by_trial.items()}
    pruned = [f for f in final.values() if f["status"] == "pruned"]
    assert pruned, "ASHA stopped no trial"
    assert all(f["tasks_done"] < 4 and not f["complete"] for f in pruned)
    states = _optuna_states(spec.storage, "t")
    assert states["PRUNED"] == len(pruned) and states["COMPLETE"] == 8 - len(pruned)
    assert "RUNNING" not in states


def test_diverged_and_failing_trials_are_recorded_and_the_study_goes_on(local_ray, tmp_path):
    from incsweep.study.runner import run_study

    diverging = {**NET, "epochs": 3, "lr": 10.0, "momentum": 0.999, "weight_decay": 1.0}  # NaN loss in task 1
    spec = StudySpec.from_dict(spec_dict(storage=str(tmp_path / "d"), methods=["finetune"], trials=2,
                                         search={"finetune": diverging}, max_failures=0))
    summary = run_study(spec)
    assert summary.statuses == Counter(diverged=2)
    rows = _rows(spec.storage, "t")
    finals = [r for r in rows if r["is_final"]]
    assert all("loss became nan" in f["error"] and f["tasks_done"] == 1 for f in finals)
    assert _optuna_states(spec.storage, "t") == Counter(FAIL=2)

    corrupt = tmp_path / "corrupt"  # IDX files that are not IDX: every trial would raise while loading
    corrupt.mkdir()
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (corrupt / stem).write_bytes(b"not an idx file")
    missing = {**SYNTH, "name": "seq-fashionmnist", "data_root": str(corrupt)}
    missing.pop("n_classes"), missing.pop("image_size")
    spec = StudySpec.from_dict(spec_dict(storage=str(tmp_path / "e"), methods=["finetune"], trials=2,
                                         benchmark=missing, search={"finetune": NET}, max_failures=1))
    # the driver reads the data before Ray starts; it used to launch, and every trial erred
    with pytest.raises(ConfigError, match="not an unsigned-byte IDX file"):
        run_study(spec)
    assert not (tmp_path / "e").exists()


def test_a_trial_without_its_data_is_an_error_once_and_the_study_goes_on(local_ray, tmp_path, monkeypatch):
    """The driver's data check passes (a driver machine that has the data), the trials' machines
    lack it: each trial fails with DataNotFoundError, recorded once as error; a deterministic error
    is not retried (max_failures 2 would have run each three times)."""
    from incsweep.study import runner
    from incsweep.study.runner import run_study

    monkeypatch.setattr(runner, "check_data", lambda spec: None)
    bench = {"name": "seq-cifar10", "data_root": str(tmp_path / "not-on-the-workers"), "train_per_class": 24,
             "test_per_class": 8, "val_fraction": 0.25}
    spec = StudySpec.from_dict(spec_dict(storage=str(tmp_path / "v"), methods=["finetune"], trials=2,
                                         benchmark=bench, search={"finetune": NET}, max_failures=2))
    summary = run_study(spec)
    assert summary.statuses == Counter(error=2)
    finals = [r for r in _rows(spec.storage, "t") if r["is_final"]]
    assert all(f["error"].startswith("DataNotFoundError") and f["tasks_done"] == 0 for f in finals), finals
    assert _optuna_states(spec.storage, "t") == Counter(FAIL=2)
    assert not list(Path(spec.storage, "tune").rglob("error.txt"))  # Tune saw no raise, so it retried nothing


def test_gpu_request_on_a_gpu_less_cluster_fails_clearly_and_writes_nothing(local_ray, tmp_path):
    from incsweep.study.runner import run_study

    spec = StudySpec.from_dict(spec_dict(storage=str(tmp_path / "g"), resources={"cpu": 1, "gpu": 0.5}))
    with pytest.raises(ConfigError, match=r"resources.gpu=0.5 but the Ray cluster has no GPU"):
        run_study(spec)
    with pytest.raises(ConfigError, match="fit no node"):
        run_study(StudySpec.from_dict(spec_dict(storage=str(tmp_path / "c"), resources={"cpu": 64})))
    assert not (tmp_path / "g").exists() and not (tmp_path / "c").exists()


def test_kill_9_of_the_driver_then_resume_finishes_exactly(local_ray, tmp_path, kill_driver_when):
    """A driver (with its embedded Ray) is SIGKILLed mid-study; `study resume` finishes it: every
    trial's tasks once, no duplicates, no RUNNING Optuna trial, the requested trial count met."""
    import yaml

    from incsweep.study.runner import run_study
    from incsweep.study.spec import load_spec

    storage = tmp_path / "k"
    slow = {**NET, "epochs": 6}  # ~1 s per task: the kill lands mid-study
    spec_path = tmp_path / "k.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict(methods=["finetune"], trials=6, storage=str(storage),
                                                  search={"finetune": {**slow, "lr": {"low": 0.01, "high": 0.2}}},
                                                  benchmark={**SYNTH, "train_per_class": 48})))

    def ready() -> bool:  # 4 task rows written and the study not finished: the kill lands mid-study
        rows = _rows(str(storage), "t") if (storage / "results").exists() else []
        return sum(not r["is_final"] for r in rows) >= 4

    started = time.time()
    kill_driver_when(spec_path, ready)
    before = _rows(str(storage), "t")
    assert sum(r["is_final"] for r in before) < 6

    spec = StudySpec.from_dict({**load_spec(spec_path).to_dict(), "storage": str(storage)})
    summary = run_study(spec, resume=True)
    assert summary.done and summary.finished == 6
    rows = _rows(str(storage), "t")
    by_trial = _check_exactly_once(rows, 3)
    finals = [[r for r in trs if r["is_final"]][0] for trs in by_trial.values()]
    # interrupted trials were continued under their own ids (study/resume.py): no orphan, no replacement
    assert len(finals) == 6 and all(f["status"] == "complete" for f in finals)
    states = _optuna_states(str(storage), "t")
    assert "RUNNING" not in states and states["COMPLETE"] == 6
    # a continued trial keeps the number it was proposed under, in the rows of both drivers
    st = optuna.load_study(study_name="t", storage=make_optuna_storage(str(storage / "optuna.journal")))
    numbers = {t.user_attrs[TUNE_ID_ATTR]: t.number for t in st.trials if TUNE_ID_ATTR in t.user_attrs}
    assert all(r["trial_number"] == numbers[r["trial_id"]] for r in rows)
    # The killed trials' scratch checkpoints were swept by the resumed ones (trainables/workdir.py):
    # nothing this test made is left in the temporary directory but what live processes hold.
    assert _scratch_left_since(started) == []


def _scratch_left_since(started: float) -> list[str]:
    """Trial scratch directories made since ``started`` that no live process holds."""
    import tempfile

    from incsweep.trainables.workdir import WORKDIR_PREFIX, process_alive, workdir_pid

    left = []
    for path in Path(tempfile.gettempdir()).glob(f"{WORKDIR_PREFIX}*"):
        pid = workdir_pid(path)
        if path.stat().st_mtime >= started and (pid is None or not process_alive(pid)):
            left.append(path.name)
    return left


@pytest.mark.parametrize("prefix_cache", [False, True])
def test_trials_reproduce_plain_runs_with_reused_actors_and_prefix_reuse(local_ray, tmp_path, prefix_cache):
    """One trial at a time on reused actors: each trial's per-task metrics equal a plain in-process
    run of its resolved config, whatever ran on the actor before it, and also when it started from
    a cached task prefix (finetune's and replay's task 0 do not depend on the searched lr/wd...)."""
    import torch

    from incsweep.incremental.run import RunConfig, run
    from incsweep.study.runner import run_study

    search = {"finetune": {**NET, "init_lr": 0.1, "init_weight_decay": 5e-4},
              "replay": {**NET, "memory_size": 12, "init_lr": 0.1, "init_weight_decay": 5e-4}}
    spec = StudySpec.from_dict(spec_dict(storage=str(tmp_path / "r"), trials=4, concurrency=1,
                                         prefix_cache=prefix_cache, search=search))
    assert run_study(spec).statuses == Counter(complete=4)
    rows = _rows(spec.storage, "t")
    threads = torch.get_num_threads()
    # The trials ran on 1 thread (resources.cpu = 1); their resolved config records it, so a re-run
    # here under 2 threads still reduces in the same order and reproduces them bit for bit.
    torch.set_num_threads(2)
    for final in [r for r in rows if r["is_final"]]:
        cfg = json.loads(final["config_json"])
        assert cfg["threads"] == 1
        expected = [(t.val.avg_acc, t.test.avg_acc, t.memory.total_bytes) for t in run(RunConfig.from_dict(cfg)).tasks]
        got = sorted((r["task"], r["avg_acc"], r["test_avg_acc"], r["total_bytes"]) for r in rows
                     if r["trial_id"] == final["trial_id"] and not r["is_final"])
        assert [g[1:] for g in got] == expected
    torch.set_num_threads(threads)
    if prefix_cache:
        from incsweep.incremental.prefix_cache import PrefixCache

        entries = PrefixCache(Path(spec.storage) / "prefix_cache").entries()
        task0 = {e.method for e in entries if e.n_done == 1}
        # one task-0 entry per method: every later trial of that method started from it
        assert len([e for e in entries if e.n_done == 1]) == len(task0)
        # only prefixes other configs can share are stored (docs/efficiency.md), none a trial's own
        assert entries and all(e.meta["fields"] is not None for e in entries)


@pytest.mark.parametrize("sampler", ["tpe", "nsga2", "random",
                                     # 2 start-up trials: trials 3-6 come from the multivariate model
                                     {"name": "tpe", "startup_trials": 2, "multivariate": True},
                                     {"name": "tpe", "startup_trials": 2, "multivariate": True, "window": 50},
                                     {"name": "gp", "startup_trials": 2}])
def test_every_sampler_drives_the_define_by_run_space(tmp_path, sampler):
    spec = StudySpec.from_dict(spec_dict(sampler=sampler))
    s = _searcher(tmp_path, sampler=spec.sampler, spec=spec)
    name = spec.sampler.name
    configs = [s.suggest(f"t{i}") for i in range(6)]
    for i, c in enumerate(configs):
        assert c["method"] in ("finetune", "replay")
        if c["method"] == "replay":
            assert 6 <= c["params"]["memory_size"] <= 60
        s.on_trial_complete(f"t{i}", {"tasks_done": 3, "avg_acc": 0.1 * i, "total_mb": 1.0 + i})
    assert Counter(t.state.name for t in s.study.get_trials()) == Counter(COMPLETE=6)
    assert name[:3] in type(s.study.sampler).__name__.lower()  # TPESampler, WindowedTPESampler, NSGAIISampler, ...
    if spec.sampler.window is not None:
        assert type(s.study.sampler).__name__ == "WindowedTPESampler" and s.study.sampler._window == 50
    # Tune pickles the searcher into tuner.pkl at launch: NSGA-II's sampler holds a lock, and an
    # nsga2 study failed there before the searcher left its study out of the pickle
    from ray import cloudpickle

    assert cloudpickle.loads(cloudpickle.dumps(s)).study is None
    if spec.sampler.multivariate:
        assert s.study.sampler._multivariate and s.study.sampler._n_startup_trials == 2
    if name == "gp":
        assert s.study.sampler._n_startup_trials == 2


def test_the_spec_allows_exactly_the_kinds_of_the_tables():
    """One table per pluggable kind (study/kinds.py): the spec's choices and option rules derive
    from it, and every entry builds."""
    import dataclasses

    from incsweep.study.kinds import SAMPLERS, SCHEDULERS
    from incsweep.study.spec import SamplerSpec, SchedulerSpec

    for name in SAMPLERS:
        sampler = make_sampler(name, 0)
        assert isinstance(sampler, optuna.samplers.BaseSampler)
    options = {f.name for f in dataclasses.fields(SamplerSpec)} - {"name"}
    assert set().union(*(k.options for k in SAMPLERS.values())) == options  # every option has an owner
    with pytest.raises(ConfigError, match=r"name='cmaes' is not allowed; choose one of \['tpe', 'nsga2', 'random', 'gp'\]"):
        SamplerSpec(name="cmaes")
    with pytest.raises(ConfigError, match="sampler.population_size applies to nsga2, not tpe"):
        SamplerSpec(name="tpe", population_size=8)
    spec = StudySpec.from_dict(spec_dict(scheduler={"name": "asha", "grace_period": 1}))
    from incsweep.study.runner import _build_scheduler

    assert type(_build_scheduler(spec)).__name__ == "ParetoASHA"
    assert [SchedulerSpec(name=n).name for n in SCHEDULERS] == list(SCHEDULERS)
    with pytest.raises(ConfigError, match="not allowed"):
        SchedulerSpec(name="hyperband")


def test_pareto_asha_rungs_and_decisions():
    import numpy as np

    from incsweep.study.scheduler import keep_at_rung, rungs

    assert rungs(1, 2, 5) == [1, 2, 4] and rungs(2, 2, 5) == [2, 4] and rungs(1, 3, 10) == [1, 3, 9]
    rng = np.random.default_rng(0)
    for _ in range(200):
        recorded = rng.integers(0, 4, size=(int(rng.integers(1, 12)), 2)).astype(float)  # ties and duplicates
        point = rng.integers(0, 4, size=2).astype(float)
        dominators = sum(bool(np.all(r <= point) and np.any(r < point)) for r in recorded)
        keep = keep_at_rung(point, recorded, 2.0)
        if dominators == 0:
            assert keep  # a point on the rung's front always goes on: the front stays honest
        assert keep == (dominators < math.ceil(0.5 * (len(recorded) + 1)))
    assert not keep_at_rung([math.nan, 1.0], np.zeros((0, 2)), 2.0)
    assert keep_at_rung([1.0, 1.0], np.zeros((0, 2)), 2.0)  # the first trial at a rung goes on


def test_nondomination_layers_match_brute_force():
    import numpy as np

    from incsweep.analysis.dominance import nondomination_layers

    rng = np.random.default_rng(1)
    for _ in range(100):
        pts = rng.integers(0, 5, size=(int(rng.integers(1, 15)), int(rng.integers(2, 4)))).astype(float)
        layers = nondomination_layers(pts)
        dom = lambda a, b: bool(np.all(a <= b) and np.any(a < b))  # noqa: E731
        for i, p in enumerate(pts):
            # layer k: every dominator sits in a layer below k, and one of them in layer k - 1
            above = [layers[j] for j, q in enumerate(pts) if dom(q, p)]
            assert layers[i] == (max(above) + 1 if above else 0)


def test_layer_rule_keeps_the_front_and_the_top_share_only():
    import numpy as np

    from incsweep.analysis.dominance import nondomination_layers
    from incsweep.study.scheduler import RULES, keep_at_rung
    from incsweep.study.spec import SchedulerSpec

    assert set(RULES) == set(SchedulerSpec.__dataclass_fields__["rule"].metadata["choices"])
    rng = np.random.default_rng(2)
    stopped = {"dominated": 0, "layer": 0}
    for _ in range(300):
        recorded = rng.integers(0, 5, size=(int(rng.integers(1, 14)), 2)).astype(float)
        point = rng.integers(0, 5, size=2).astype(float)
        layers = nondomination_layers(np.vstack([recorded, point]))
        keep = keep_at_rung(point, recorded, 2.0, "layer")
        if layers[-1] == 0:
            assert keep  # on the rung's front: goes on whatever the share
        else:
            assert keep == (np.sum(layers[:-1] < layers[-1]) < math.ceil((len(recorded) + 1) / 2))
        for rule in stopped:
            stopped[rule] += not keep_at_rung(point, recorded, 2.0, rule)
        # whatever "dominated" stops, "layer" stops too: half the rung dominating it puts it below the top half
        assert keep_at_rung(point, recorded, 2.0, "dominated") or not keep
    assert stopped["layer"] > stopped["dominated"]
    # three on a front, the newcomer dominated by one of them: only the layer rule stops it
    front = np.array([[0.0, 3.0], [1.0, 1.0], [3.0, 0.0]])
    assert keep_at_rung([2.0, 2.0], front, 2.0, "dominated") and not keep_at_rung([2.0, 2.0], front, 2.0, "layer")


@pytest.mark.parametrize("rule, newcomer_goes_on", [("dominated", True), ("layer", False)])
def test_asha_rule_from_the_spec_decides_at_the_rung(rule, newcomer_goes_on):
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from incsweep.study.runner import _build_scheduler

    spec = StudySpec.from_dict(spec_dict(scheduler={"name": "asha", "grace_period": 2, "rule": rule}))
    sched = _build_scheduler(spec)
    decide = lambda tid, acc, mb: sched.on_trial_result(None, SimpleNamespace(trial_id=tid),  # noqa: E731
                                                        {"tasks_done": 2, "avg_acc": acc, "total_mb": mb})
    # three trials on the rung's front go on under either rule
    assert all(decide(t, acc, mb) == TrialScheduler.CONTINUE
               for t, acc, mb in [("a", 0.9, 3.0), ("b", 0.8, 1.0), ("c", 0.6, 0.5)])
    # dominated by one of the three only: below the top half in non-dominated order, not by half of them
    verdict = decide("d", 0.7, 2.0)
    assert verdict == (TrialScheduler.CONTINUE if newcomer_goes_on else TrialScheduler.STOP)
    assert ("d" in sched.stopped) is not newcomer_goes_on


def test_a_deterministic_trial_error_is_failed_once_not_retried(tmp_path):
    """run_trial reports ConfigError/FileNotFoundError as failed (no raise, so no Tune retry)."""
    s = _searcher(tmp_path)
    s.suggest("x")
    assert s.outcome({"tasks_done": 0, "failed": True, "error": "ConfigError: ..."}, False)[::2] == (
        TrialState.FAIL, "error")
    from incsweep.trainables.trial import _failed_report

    report = _failed_report(ConfigError("bad"), "finetune", "{}", 1, "2026-01-01T00:00:00+00:00")
    assert report["failed"] and report["error"] == "ConfigError: bad" and math.isnan(report["avg_acc"])


def test_a_torn_journal_line_is_reconciled_from_the_parquet_rows(tmp_path):
    """The driver died while appending a trial's last journal line: Optuna says RUNNING, Parquet
    has the trial's final row. The Parquet outcome is told, values and constraint included."""
    from incsweep.study.searcher import reconcile_with_results

    s = _searcher(tmp_path)
    for tid in ("done", "pruned", "live"):
        s.suggest(tid)
    finals = {"done": {"status": "complete", "avg_acc": 0.6, "total_mb": 0.4},
              "pruned": {"status": "pruned", "avg_acc": 0.9, "total_mb": 0.1}}
    told = reconcile_with_results(s.study, finals, StudySpec.from_dict(spec_dict()).objectives,
                                  (Constraint.parse("total_mb <= 0.5"),))
    assert told == [0, 1]
    trials = {t.user_attrs[TUNE_ID_ATTR]: t for t in s.study.get_trials()}
    assert trials["done"].state == TrialState.COMPLETE and trials["done"].values == [0.6, 0.4]
    # named, and as the list optuna-dashboard shows (study/searcher.py)
    assert trials["done"].constraints == {"total_mb <= 0.5": -0.09999999999999998, "0": -0.09999999999999998}
    assert trials["pruned"].state == TrialState.PRUNED and trials["live"].state == TrialState.RUNNING


def test_the_optuna_study_names_its_objectives(tmp_path):
    """optuna-dashboard and trials_dataframe() showed "Objective 0 / Objective 1"."""
    s = _searcher(tmp_path)
    assert s.study.metric_names == ["avg_acc", "total_mb"]
    again = optuna.load_study(study_name="t", storage=make_optuna_storage(str(tmp_path / "j.journal")))
    assert again.metric_names == ["avg_acc", "total_mb"]


def test_progress_lines_count_trials_front_and_eta():
    """Every per-task and per-trial line ends in the study's progress."""
    from types import SimpleNamespace

    from incsweep.study.sink import ProgressLog

    now = [100.0]
    p = ProgressLog(2, ["avg_acc", "total_mb"], trials=4, senses=["max", "min"], finished={"complete": 1},
                    clock=lambda: now[0])

    def report(tid, done, acc=0.5, mb=1.0):
        p.on_trial_result(0, [], SimpleNamespace(trial_id=tid), {"task_result_json": "{}", "method": "finetune",
                          "tasks_done": done, "avg_acc": acc, "total_mb": mb, "wall_s": 1.0})

    report("a", 1)
    now[0] += 10
    report("a", 2)  # one task per 10 s since the first report
    # 2 trials not started x 2 tasks + trial a's 0 left, at 10 s a task
    assert "trials 1/4 (1 complete); 1 running; front 0; 10s elapsed; ETA 40s" in p.progress()
    p.on_trial_complete(0, [], SimpleNamespace(trial_id="a", last_result={"tasks_done": 2, "avg_acc": 0.5,
                                                                           "total_mb": 1.0, "method": "finetune"}))
    p.on_trial_complete(0, [], SimpleNamespace(trial_id="b", last_result={"tasks_done": 1, "method": "finetune"}))
    assert p.progress().startswith("[trials 3/4 (2 complete, 1 pruned); 0 running; front 1;")


def test_progress_keeps_only_the_front_and_speaks_of_running_trials_only():
    """The progress line's front is kept as the nondominated points only (a 10,000-trial study's
    driver does not hold every point), ties included; the heartbeat walks the trials this driver
    started and that have not ended, never Tune's list of every trial."""
    from types import SimpleNamespace

    from incsweep.study.sink import ProgressLog

    now = [0.0]
    p = ProgressLog(2, ["avg_acc", "total_mb"], trials=9, senses=["max", "min"], clock=lambda: now[0], heartbeat_s=5)

    def complete(tid, acc, mb):
        p.on_trial_complete(0, [], SimpleNamespace(trial_id=tid, last_result={
            "tasks_done": 2, "avg_acc": acc, "total_mb": mb, "method": "finetune"}))
        return p.progress().split("front ")[1].split(";")[0]

    assert complete("a", 0.5, 1.0) == "1"
    assert complete("b", 0.4, 2.0) == "1"  # dominated by a
    assert complete("c", 0.6, 2.0) == "2"
    assert complete("d", 0.6, 2.0) == "3"  # a tie is on the front too
    assert complete("f", 0.6, 2.0) == "4" and len(p._front) == 2  # noqa: SLF001 - ties counted, kept once
    assert complete("e", 0.7, 0.5) == "1" and p._front == [[0.7, 0.5]]  # noqa: SLF001 - dominates all: one kept
    running = SimpleNamespace(trial_id="r", status="RUNNING", config={"method": "finetune"})
    p.on_trial_start(0, [], running)
    now[0] = 10.0
    seen = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("incsweep.study.sink.log.info", lambda *a: seen.append(a[1]))
        p.on_step_end(0, [SimpleNamespace(trial_id=f"x{i}", status="RUNNING") for i in range(3)])  # not ours
    assert seen == ["r"]


def test_a_resumed_drivers_progress_front_starts_from_the_stored_trials(tmp_path):
    """After a resume the line's front is the study's: the stored complete trials that meet the
    constraints, ties counted, then this driver's trials on top (it read "front 0" at trial 9,000 of a
    resumed 10,000-trial study whose front held 7,691)."""
    from types import SimpleNamespace

    from incsweep.analysis import load_results
    from incsweep.study.sink import ProgressLog, stored_front_points
    from tests.analysis.test_analysis_results import write_trial

    s = tmp_path / "s"
    for tid, acc, mb, status in [("a", 0.5, 1.0, "complete"), ("b", 0.7, 2.0, "complete"), ("c", 0.7, 2.0, "complete"),
                                 ("d", 0.6, 3.0, "complete"), ("e", 0.9, 0.1, "pruned"), ("f", 0.95, 5.0, "complete")]:
        write_trial(s, tid, "finetune", acc, mb, status=status)
    table = load_results(str(s))
    points = stored_front_points(table, ["avg_acc", "total_mb"], ["total_mb <= 4"])
    assert sorted(points) == [[0.5, 1.0], [0.6, 3.0], [0.7, 2.0], [0.7, 2.0]]  # f breaks the constraint, e is pruned
    p = ProgressLog(3, ["avg_acc", "total_mb"], trials=9, senses=["max", "min"], front=points, clock=lambda: 0.0)
    assert "; front 3;" in p.progress()  # a, and b and c tied; d dominated by b
    p.on_trial_complete(0, [], SimpleNamespace(trial_id="g", last_result={
        "tasks_done": 3, "avg_acc": 0.8, "total_mb": 1.5, "method": "finetune"}))
    assert "; front 2;" in p.progress()  # g dominates b and c
    assert stored_front_points(None, ["avg_acc"], []) == []


def test_optuna_dashboard_shows_names_directions_params_and_constraints(tmp_path):
    """What optuna-dashboard serves for the study's journal, through its own storage loader and its
    WSGI app's JSON API: objective names, directions, trial params and the constraints,
    which it did not show while only Optuna 5's named format was written."""
    from wsgiref.util import setup_testing_defaults

    dashboard = pytest.importorskip("optuna_dashboard")
    from optuna_dashboard._storage_url import get_storage

    s = _searcher(tmp_path, constraints=(Constraint.parse("total_mb <= 0.5"),))
    for tid, mb in (("a", 1.0), ("b", 0.2)):
        s.suggest(tid)
        s.on_trial_complete(tid, {"tasks_done": 3, "avg_acc": 0.7, "total_mb": mb})
    app = dashboard.wsgi(get_storage(str(tmp_path / "j.journal")))

    def get(path: str, query: str = "") -> dict:
        environ: dict = {"PATH_INFO": path, "QUERY_STRING": query}
        setup_testing_defaults(environ)
        status: list[str] = []
        body = b"".join(app(environ, lambda st, headers, exc=None: status.append(st)))
        assert status[0].startswith("200"), (path, status, body[:300])
        return json.loads(body)

    (study,) = get("/api/studies")["study_summaries"]
    detail = get(f"/api/studies/{study['study_id']}", "after=0")
    assert detail["name"] == "t" and detail["directions"] == ["maximize", "minimize"]
    assert detail["objective_names"] == ["avg_acc", "total_mb"]
    by_tid = {next(a["value"] for a in t["user_attrs"] if a["key"] == TUNE_ID_ATTR): t for t in detail["trials"]}
    assert set(by_tid) == {"a", "b"}
    assert by_tid["a"]["constraints"] == [0.5] and by_tid["b"]["constraints"] == [pytest.approx(-0.3)]
    assert {p["name"] for p in by_tid["a"]["params"]} >= {"method"}
    # Optuna itself still sees one named constraint's feasibility: only "b" is feasible
    again = optuna.load_study(study_name="t", storage=make_optuna_storage(str(tmp_path / "j.journal")))
    assert [t.user_attrs[TUNE_ID_ATTR] for t in again.best_trials] == ["b"]


def test_confirm_reruns_the_front_on_fresh_seeds_survives_kill_9_and_reports_mean_std(local_ray, tmp_path,
                                                                                      kill_driver_when, capsys):
    """`incsweep confirm`: the front re-run on 2 fresh seeds and class orders, one
    study per seed under <storage>/confirm; SIGKILLed mid-way and run again it finishes every
    configuration once; analyze shows each front configuration's mean +- std and export carries it."""
    import yaml

    from incsweep.analysis import load_results, summarize
    from incsweep.analysis.confirmation import CONFIRM_SUFFIX
    from incsweep.cli import main
    from incsweep.study.confirm import plan_confirmation, run_confirmation
    from incsweep.study.runner import run_study

    storage = tmp_path / "c"
    slow = {**NET, "epochs": 6}  # ~1 s per task: the kill lands mid-confirmation
    spec = StudySpec.from_dict(spec_dict(methods=["finetune"], trials=4, storage=str(storage),
                                         search={"finetune": {**slow, "lr": {"low": 0.01, "high": 0.2}}},
                                         benchmark={**SYNTH, "train_per_class": 48}))
    assert run_study(spec).done
    front = summarize(load_results(str(storage)), by=()).overall.front
    plan = plan_confirmation(str(storage), seeds=2)
    assert [c.seed for c in plan] == [1, 2] and [c.spec.benchmark.class_order for c in plan] == ["seed1994", "seed1995"]
    assert all(c.spec.trials == len(front) and c.spec.name == "t" + CONFIRM_SUFFIX for c in plan)

    def ready() -> bool:  # some confirmation rows written, the first seed's study not finished
        first = Path(plan[0].storage)
        rows = _rows(str(first), "t.confirm") if (first / "results").exists() else []
        return sum(not r["is_final"] for r in rows) >= 2 and sum(r["is_final"] for r in rows) < len(front)

    kill_driver_when(["confirm", storage, "--seeds", "2"], ready)
    summaries = run_confirmation(plan_confirmation(str(storage), seeds=2))  # what `incsweep confirm` again does
    for c, s in zip(plan, summaries):
        assert s.done and s.statuses == Counter(complete=len(front)), (c.seed, s.statuses)
        by_trial = _check_exactly_once(_rows(c.storage, "t.confirm"), 3)
        assert len(by_trial) == len(front)
        configs = [json.loads(r["config_json"]) for rs in by_trial.values() for r in rs if r["is_final"]]
        assert {cfg["seed"] for cfg in configs} == {c.seed}
        assert {cfg["benchmark"]["class_order"] for cfg in configs} == {c.spec.benchmark.class_order}
        assert "RUNNING" not in _optuna_states(c.storage, "t.confirm")

    # the study's own front is unchanged by the confirmation runs, and each member has 2 of them
    summary = summarize(load_results(str(storage)), by=())
    assert sorted(summary.overall.front) == sorted(front) and summary.confirmed.num_rows == 2 * len(front)
    assert main(["analyze", str(storage), "--out", str(tmp_path / "a")]) == 0
    text = capsys.readouterr().out
    assert f"Confirmed on fresh seeds ({len(front)} front configurations)" in text
    assert "Confirmed on fresh seeds" in (tmp_path / "a" / "report.html").read_text()
    assert main(["export", str(storage), "--out", str(tmp_path / "e"), "--by", "none"]) == 0
    capsys.readouterr()
    for f in (tmp_path / "e").glob("*.yaml"):
        confirmed = yaml.safe_load(f.read_text())["provenance"]["confirmed"]
        assert confirmed["runs"] == 2 and set(confirmed["avg_acc"]) == {"mean", "std"}


def test_two_phase_tunes_on_one_class_order_and_evaluates_the_front_on_another(local_ray, tmp_path, capsys):
    """protocol: two_phase (GTEP) from a spec through `incsweep study run`: the
    search on seed1993, then its front run unchanged on evaluate_on's class order; analyze shows
    both side by side with the gap."""
    import yaml

    from incsweep.analysis import load_results, summarize
    from incsweep.cli import main

    storage = tmp_path / "g"
    spec_path = tmp_path / "g.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict(protocol="two_phase", evaluate_on={"class_order": "seed7"},
                                                  storage=str(storage))))
    assert main(["study", "run", str(spec_path)]) == 0
    assert "two_phase evaluation: " in capsys.readouterr().out
    front = summarize(load_results(str(storage)), by=()).overall
    tuned = {r["trial_id"]: json.loads(r["config_json"]) for r in _rows(str(storage), "t") if r["is_final"]}
    evaluated = [json.loads(r["config_json"]) for r in _rows(str(storage / "evaluate"), "t.evaluate") if r["is_final"]]
    assert len(evaluated) == len(front.front)
    assert {e["benchmark"]["class_order"] for e in evaluated} == {"seed7"}
    assert {t["benchmark"]["class_order"] for t in tuned.values()} == {"seed1993"}
    same = [(e["method"], e["method_config"]) for e in evaluated]
    assert all((t["method"], t["method_config"]) in same for t in (tuned[tid] for tid in
               summarize(load_results(str(storage)), by=()).runs.take(front.front)["trial_id"].to_pylist()))
    assert main(["analyze", str(storage)]) == 0
    out = capsys.readouterr().out
    assert f"Tuned on vs evaluated on ({len(front.front)} front configurations)" in out
    assert "synthetic (seed7), 3 tasks" in out and "gap (test)" in out


def test_first_task_tunes_on_task_0_and_runs_the_front_on_the_whole_stream(local_ray, tmp_path, capsys):
    """protocol: first_task (Lee et al. 2024) from a spec through `incsweep study
    run`: every search trial runs task 0 only and counts as complete there (Optuna COMPLETE, its rows
    say 1 task of 1); the front then runs the whole stream with the same values, starting from the
    task-0 states the search stored; analyze shows task 0 beside the whole stream."""
    import yaml

    from incsweep.analysis import load_results, summarize
    from incsweep.cli import main
    from incsweep.study.confirm import plan_confirmation

    storage = tmp_path / "f"
    spec_path = tmp_path / "f.yaml"
    spec_path.write_text(yaml.safe_dump(spec_dict(protocol="first_task", storage=str(storage))))
    assert main(["study", "run", str(spec_path)]) == 0
    assert "first_task evaluation: " in capsys.readouterr().out

    search = _check_exactly_once(_rows(str(storage), "t"), 1)
    assert len(search) == 4
    for rows in search.values():
        final = next(r for r in rows if r["is_final"])
        assert [r["task"] for r in rows if not r["is_final"]] == [0]
        assert final["status"] == "complete" and final["complete"] and final["n_tasks"] == 1
    assert set(_optuna_states(str(storage), "t")) == {"COMPLETE"}

    front = summarize(load_results(str(storage)), by=()).overall
    evaluated = _check_exactly_once(_rows(str(storage / "evaluate"), "t.evaluate"), 3)
    assert len(evaluated) == len(front.front)
    task0_of_search = {(r["config_json"], r["wall_s"]) for rows in search.values() for r in rows if not r["is_final"]}
    for rows in evaluated.values():
        final = next(r for r in rows if r["is_final"])
        assert final["complete"] and final["n_tasks"] == 3
        # the whole-stream run resumed from the search's cached task-0 state: that task's row is the
        # search's own (same wall time to the last digit), not a re-training
        first = next(r for r in rows if r["task"] == 0 and not r["is_final"])
        assert (first["config_json"], first["wall_s"]) in task0_of_search
        # and its rows say so: compute spent by this run is that of tasks 1 and 2 only
        assert [r["from_cache"] for r in sorted(rows, key=lambda r: r["task"]) if not r["is_final"]] == [True, False, False]
        assert all(r["cpu_s"] > 0 for r in rows) and final["from_cache"] is None
    assert not any(r["from_cache"] for rows in search.values() for r in rows if not r["is_final"])

    assert main(["analyze", str(storage)]) == 0
    out = capsys.readouterr().out
    assert f"Tuned on vs evaluated on ({len(front.front)} front configurations)" in out
    assert "synthetic (seed1993), 1 task " in out and "synthetic (seed1993), 3 tasks" in out

    # a confirmation of a first_task front stays on the search's horizon, so the two compare
    (plan,) = plan_confirmation(str(storage), seeds=1)
    assert plan.spec.protocol == "first_task" and plan.spec.n_tasks == 1


def test_an_orphaned_enqueued_configuration_is_queued_again_not_replaced():
    """a driver killed after asking an enqueued trial (incsweep confirm's configurations) left
    it RUNNING; reconciling failed it and the sampler filled its place with a random configuration."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = open_study(optuna.storages.InMemoryStorage(), "orphan", sampler=optuna.samplers.RandomSampler(seed=0),
                       metrics=["x"], modes=["min"])
    study.enqueue_trial({"x": 0.123})
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    asked = study.ask(dist)
    asked.set_user_attr(TUNE_ID_ATTR, "lost")  # Tune never recorded it: the driver died
    assert reconcile_orphans(study, known_tune_ids=set()) == [asked.number]
    assert study.trials[asked.number].state == TrialState.FAIL
    again = study.ask(dist)
    assert again.params == {"x": 0.123}  # the configuration asked for, not the sampler's


def test_confirm_names_a_configuration_that_did_not_run(tmp_path):
    from incsweep.study.confirm import Confirmation, missing_configurations
    from incsweep.study.results import final_row, write_trial_file

    entries = [{"method": "finetune", "params": {"lr": 0.05}}, {"method": "finetune", "params": {"lr": 0.07}}]
    spec = StudySpec.from_dict({"name": "c.confirm", "methods": ["finetune"], "trials": 2, "seed": 1,
                                "benchmark": {"name": "synthetic", "n_classes": 4},
                                "search": {"finetune": {"lr": {"low": 0.01, "high": 0.1}}},
                                "enqueue": entries, "storage": str(tmp_path)})
    confirmation = Confirmation(seed=1, spec=spec)

    def ran(trial_id: str, lr: float, error: str | None = None) -> None:
        template = {"study": spec.name, "trial_id": trial_id, "method": "finetune", "benchmark": "synthetic",
                    "scenario": "class_il", "n_tasks": 2, "seed": 1, "config_json": "{}", "code_version": "",
                    "started_at": None, "param_lr": lr}
        write_trial_file(str(tmp_path), [final_row([], status="error" if error else "complete", error=error,
                                                   template=template)])

    ran("a", 0.05)
    ran("b", 0.0311)  # the sampler's stand-in after an interruption
    ran("c", 0.07, error="orphaned: the driver stopped before Tune recorded this trial")
    assert missing_configurations(confirmation) == [entries[1]]
    ran("d", 0.07)
    assert missing_configurations(confirmation) == []


def test_a_trial_file_takes_the_study_schema_and_appends_only_undeclared_columns(tmp_path, caplog):
    """The sink writes every task under the study's one schema; a column no method declared (a
    diagnostic missing from task_stat_names) is appended to that trial's file, with a warning."""
    from incsweep.study.results import final_row, task_row, write_trial_file
    from incsweep.study.runner import study_schema
    from tests.analysis.test_analysis_results import T0, _task

    schema = study_schema(StudySpec.from_dict(spec_dict()))
    rows = [task_row(_task(k, 2, 0.5, 1.0), study="t", trial_id="declared", method="replay", benchmark="synthetic",
                     seed=0, config_json="{}", params={"memory_size": 10}, started_at=T0) for k in range(2)]
    path = write_trial_file(str(tmp_path), rows + [final_row(rows, status="complete")], schema)
    assert pq.read_schema(path).names == schema.names and not caplog.records
    odd = [{**r, "trial_id": "odd", "probe_norm": 0.25} for r in rows]
    with caplog.at_level(logging.WARNING, logger="incsweep.study.results"):
        path = write_trial_file(str(tmp_path), odd, schema)
    assert pq.read_schema(path).names == [*schema.names, "probe_norm"]
    assert pq.read_table(path)["probe_norm"].to_pylist() == [0.25, 0.25]
    assert "['probe_norm'] are not in the study's schema" in caplog.text
