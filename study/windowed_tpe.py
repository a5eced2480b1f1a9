"""TPE that models a window of the study: the latest finished trials and every trial on the front.

Optuna's TPE reads every finished trial at each proposal, in Python loops (the conditional search
space, the good/bad split, the trials' parameters): its cost grows with the study, ~19 ms a proposal at
1,000 trials, ~190 ms at 10,000 (benchmarks/results/tpe_window.txt), which then bounds how fast a
large study can start trials. ``sampler.window: W`` gives TPE, at each proposal, the latest W finished
trials plus the study's feasible non-dominated trials older than those (the front, kept as trials
finish, so nothing TPE's "good" side would pick is forgotten), so a proposal costs what it costs at W
trials. What the window forgets are old trials off the front, which TPE already weights least (Optuna
ramps the weights of its "bad" side from the oldest up). Its cost and its effect on what a study finds
are measured in benchmarks/results/tpe_window.txt; a 10,000-trial study with it in study_scale.txt.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Container, Sequence

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from incsweep.analysis.dominance import nondominated_mask

__all__ = ["WindowedTPESampler"]

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class _StudyWindow:
    """The study as TPE reads it, its trials cut to the window; everything else is the study's own."""

    def __init__(self, study: optuna.Study, trials: list[FrozenTrial]):
        self._study, self._trials = study, trials

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = [t for t in self._trials if states is None or t.state in states]
        return copy.deepcopy(trials) if deepcopy else trials

    def get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)


class WindowedTPESampler(optuna.samplers.TPESampler):
    """``TPESampler`` that sees the latest ``window`` finished trials and the front (module docstring)."""

    def __init__(self, *, window: int, **tpe: Any):
        super().__init__(**tpe)
        self._window = window
        self._seen: set[int] = set()  # numbers of the complete trials the front has been updated with
        self._front: dict[int, tuple[FrozenTrial, tuple[float, ...]]] = {}  # number -> trial, minimized values
        self._views: tuple[int, Any] | None = None  # (trial number, its view): TPE asks several times a trial

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_views": None}  # a view holds the study (Tune pickles the searcher)

    def _update_front(self, trials: list[FrozenTrial], directions: Sequence[StudyDirection]) -> None:
        signs = [-1.0 if d == StudyDirection.MAXIMIZE else 1.0 for d in directions]
        for t in trials:
            if t.state != TrialState.COMPLETE or t.number in self._seen:
                continue
            self._seen.add(t.number)
            if t.values is None or not all(math.isfinite(v) for v in t.values):
                continue
            if any(c > 0 for c in (t.system_attrs.get("constraints") or ())):
                continue  # infeasible: never on the front TPE's good side is drawn from
            point = tuple(s * v for s, v in zip(signs, t.values))
            if any(q == point for _, q in self._front.values()):
                continue  # a tie: the first trial there stands for it
            members = [*self._front.items(), (t.number, (t, point))]
            keep = nondominated_mask(np.array([q for _, (_, q) in members]))
            self._front = {n: member for (n, member), k in zip(members, keep) if k}

    def _view(self, study: optuna.Study, trial: FrozenTrial) -> Any:
        if self._views is not None and self._views[0] == trial.number:
            return self._views[1]
        view = self._cut(study)
        self._views = (trial.number, view)
        return view

    def _cut(self, study: optuna.Study) -> Any:
        trials = study._get_trials(deepcopy=False, use_cache=True)  # noqa: SLF001 - what TPE itself reads
        finished = [t for t in trials if t.state in _FINISHED]
        if len(finished) <= self._window:
            return study
        self._update_front(finished, study.directions)
        recent = finished[-self._window:]
        cut = recent[0].number
        older_front = [ft for n, (ft, _) in sorted(self._front.items()) if n < cut]
        live = [t for t in trials if t.state not in _FINISHED]  # running trials, as TPE would see them
        return _StudyWindow(study, older_front + recent + live)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return super().infer_relative_search_space(self._view(study, trial), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return super().sample_relative(self._view(study, trial), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return super().sample_independent(self._view(study, trial), trial, param_name, param_distribution)
