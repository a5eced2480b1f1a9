"""``sampler.window``: TPE over the latest finished trials and the front (study/windowed_tpe.py)."""

from __future__ import annotations

import pickle

import optuna
import pytest

from incsweep.core.errors import ConfigError
from incsweep.study.searcher import make_sampler
from incsweep.study.spec import SamplerSpec, StudySpec
from incsweep.study.windowed_tpe import WindowedTPESampler

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # group=True, as the spec builds it


def space(trial: optuna.Trial) -> tuple[float, float]:
    m = trial.suggest_categorical("method", ["a", "b"])
    x = trial.suggest_float(f"{m}.x", 0.0, 1.0)
    return (x, 1.0 - x * x) if m == "a" else (x / 2, 0.5)


def told(study: optuna.Study, values: list[tuple[float, float] | None]) -> list[int]:
    """Trials told ``values`` (None: left running), their numbers."""
    numbers = []
    for v in values:
        t = study.ask()
        space(t)
        if v is not None:
            study.tell(t, list(v))
        numbers.append(t.number)
    return numbers


def test_the_view_is_the_latest_window_the_older_front_and_the_running_trials():
    sampler = WindowedTPESampler(window=10, seed=0, multivariate=True, group=True)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    # maximize the first value, minimize the second: 0 and 1 are on the front, 2 is dominated by 0
    told(study, [(1.0, 5.0), (0.2, 1.0), (0.5, 6.0)])
    infeasible = study.ask()
    space(infeasible)
    infeasible.storage.set_trial_system_attr(infeasible._trial_id, "constraints", [3.0])  # noqa: SLF001
    study.tell(infeasible, [2.0, 0.5])  # would dominate everything, but violates a constraint
    later = told(study, [(0.1, 9.0)] * 12)  # the window: none of these on the front
    running = told(study, [None])

    view = sampler._cut(study)  # noqa: SLF001
    seen = [t.number for t in view.get_trials(deepcopy=False)]
    assert seen == [0, 1] + later[-10:] + running
    assert [t.number for t in view.get_trials(states=(optuna.trial.TrialState.RUNNING,))] == running
    assert view.directions == study.directions and view._study_id == study._study_id  # noqa: SLF001

    # a new trial that dominates the old front replaces it; the old front leaves the view
    (best,) = told(study, [(2.0, 0.1)])
    seen = [t.number for t in sampler._cut(study).get_trials(deepcopy=False)]  # noqa: SLF001
    assert seen == later[-9:] + [best] + running


def test_below_the_window_it_proposes_what_tpe_proposes():
    def proposals(sampler: optuna.samplers.BaseSampler) -> list[dict]:
        study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
        study.optimize(space, n_trials=40)
        return [t.params for t in study.trials]

    kw = {"seed": 3, "multivariate": True, "group": True, "n_startup_trials": 5}
    assert proposals(WindowedTPESampler(window=50, **kw)) == proposals(optuna.samplers.TPESampler(**kw))
    # past it the window changes what TPE sees, and so what it proposes
    assert proposals(WindowedTPESampler(window=10, **kw)) != proposals(optuna.samplers.TPESampler(**kw))


def test_it_pickles_without_the_study_and_keeps_proposing():
    sampler = WindowedTPESampler(window=10, seed=0, multivariate=True, group=True)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(space, n_trials=25)
    assert sampler._views is not None  # noqa: SLF001 - holds the study
    copy = pickle.loads(pickle.dumps(sampler))
    assert copy._views is None and copy._window == 10  # noqa: SLF001
    study.sampler = copy
    study.optimize(space, n_trials=3)
    assert len(study.trials) == 28


def test_the_spec_option():
    assert isinstance(make_sampler(SamplerSpec(name="tpe", window=500), 0), WindowedTPESampler)
    assert type(make_sampler(SamplerSpec(name="tpe"), 0)) is optuna.samplers.TPESampler
    with pytest.raises(ConfigError, match=r"SamplerSpec.window=20 is out of range; allowed \[50, None\]"):
        SamplerSpec(name="tpe", window=20)
    with pytest.raises(ConfigError, match="sampler.window applies to tpe, not nsga2"):
        SamplerSpec(name="nsga2", window=500)
    with pytest.raises(ConfigError, match="sampler.window=60 is smaller than sampler.startup_trials=100"):
        SamplerSpec(name="tpe", window=60, startup_trials=100)
    spec = StudySpec.from_dict({"name": "w", "methods": ["finetune"], "trials": 2,
                                "sampler": {"name": "tpe", "multivariate": True, "window": 2000},
                                "benchmark": {"name": "synthetic"}})
    assert spec.sampler.window == 2000
