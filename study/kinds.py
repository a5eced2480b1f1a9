"""The study's pluggable kinds, one table each: Optuna samplers and Tune schedulers by the names a
spec uses. The spec's allowed choices, and which sampler options apply to which sampler, derive
from these tables; the runner builds from them. Optuna and Ray are imported only when a kind is
built (``incsweep --help`` and ``study status`` import neither).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

from incsweep.core.kinds import SAMPLER_OPTIONS, SCHEDULER_OPTIONS

__all__ = ["SamplerKind", "SchedulerKind", "SAMPLERS", "SCHEDULERS", "sampler_option_owners"]


@dataclass(frozen=True)
class SamplerKind:
    """An Optuna sampler: its name, the SamplerSpec options it takes, and how it is built from the
    spec (``build(sampler_spec, seed)``)."""

    name: str
    options: frozenset[str]
    build: Callable[[Any, int], Any]


def _tpe(s: Any, seed: int) -> Any:
    import optuna

    # group=True: a multi-method study's space is conditional; without it multivariate TPE falls
    # back to independent sampling for every field outside the common intersection
    with warnings.catch_warnings():  # group is "experimental" in Optuna 5; chosen knowingly
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        tpe = {"seed": seed, "n_startup_trials": s.startup_trials, "multivariate": s.multivariate,
               "group": s.multivariate}
        if s.window is None:
            return optuna.samplers.TPESampler(**tpe)
        from incsweep.study.windowed_tpe import WindowedTPESampler

        return WindowedTPESampler(window=s.window, **tpe)


def _nsga2(s: Any, seed: int) -> Any:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=seed, population_size=s.population_size)


def _random(s: Any, seed: int) -> Any:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _gp(s: Any, seed: int) -> Any:
    import optuna

    # fields outside the space every trial shares (a multi-method study) are sampled at random
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=s.startup_trials)


_SAMPLER_BUILDS = {"tpe": _tpe, "nsga2": _nsga2, "random": _random, "gp": _gp}
SAMPLERS: dict[str, SamplerKind] = {name: SamplerKind(name, options, _SAMPLER_BUILDS[name])
                                    for name, options in SAMPLER_OPTIONS.items()}


def sampler_option_owners(option: str) -> list[str]:
    """The samplers that take ``option`` (for the spec's one-line errors)."""
    return [name for name, kind in SAMPLERS.items() if option in kind.options]


@dataclass(frozen=True)
class SchedulerKind:
    """A Tune scheduler on the task axis: its name, whether it stops trials early (rungs), and how it
    is built (``build(study_spec, task_rows)``; task_rows: earlier drivers' rows, for the rungs)."""

    name: str
    stops_early: bool
    build: Callable[[Any, Any], Any]
    options: frozenset[str] = frozenset()  # the SchedulerSpec fields it reads


def _fifo(spec: Any, task_rows: Any) -> Any:
    from incsweep.study.fifo import StudyFIFOScheduler

    return StudyFIFOScheduler()


def _asha(spec: Any, task_rows: Any) -> Any:
    # ASHA on the task axis: rungs count finished tasks. One objective: Ray's ASHA rule. Several: stop
    # only trials dominated at their rung, so front trials are never cut short (study/scheduler.py).
    # Seeded with the rungs earlier drivers of the study recorded (study/resume.py).
    from incsweep.study.scheduler import ParetoASHA

    scheduler = ParetoASHA(metrics=[o.column for o in spec.objectives], modes=[o.sense for o in spec.objectives],
                           max_t=spec.n_tasks, grace_period=spec.scheduler.grace_period,
                           reduction_factor=spec.scheduler.reduction_factor, rule=spec.scheduler.rule)
    if task_rows:
        scheduler.seed(task_rows)
    return scheduler


SCHEDULERS: dict[str, SchedulerKind] = {k.name: k for k in (
    SchedulerKind("fifo", False, _fifo, SCHEDULER_OPTIONS["fifo"]),
    SchedulerKind("asha", True, _asha, SCHEDULER_OPTIONS["asha"]),
)}
