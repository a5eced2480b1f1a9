"""``incsweep confirm``: re-run a study's selected configurations on fresh run seeds (and, where the
study's class order is a seeded permutation, fresh class orders), each seed a study of its own.

A front picked on one seed of a noisy validation split is a claim; confirmation measures how much
of it holds. For seed k the selected configurations are enqueued into a study named
``<study>.confirm`` in ``<storage>/confirm/seed-<k>``, with the study's methods, search section,
benchmark, objectives, constraints and resources, a FIFO scheduler (nothing is stopped early) and
one trial per configuration, so each runs exactly as it was searched but for the seed and class
order. These are ordinary studies: Ray runs them with the same resources, Ctrl-C or kill -9 leaves
them resumable (``incsweep confirm`` again resumes what is unfinished), and their rows sit beside
the study's, where ``incsweep analyze <storage>`` reads them as confirmation runs
(analysis/confirmation.py): never on a front, shown as mean +- std per configuration.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from incsweep.analysis.confirmation import CONFIRM_SUFFIX, EVALUATE_SUFFIX
from incsweep.core.errors import ConfigError
from incsweep.core.layout import EVALUATE_DIR, StudyLayout
from incsweep.study.spec import StudySpec, stored_spec

__all__ = ["Confirmation", "plan_confirmation", "plan_evaluation", "run_confirmation", "CONFIRM_DIR", "EVALUATE_DIR"]

log = logging.getLogger(__name__)

CONFIRM_DIR = "confirm"


@dataclass(frozen=True)
class Confirmation:
    seed: int
    spec: StudySpec  # its storage is set

    @property
    def storage(self) -> str:
        assert self.spec.storage is not None
        return self.spec.storage


def _selected(storage: str, spec: StudySpec, select: str) -> list[dict[str, Any]]:
    """The configurations ``select`` picks on the study's own results, as enqueue entries."""
    from incsweep.analysis.export import parse_select, select_runs
    from incsweep.analysis.load import load_results
    from incsweep.analysis.summary import summarize

    parse_select(select)
    summary = summarize(load_results(f"{storage.rstrip('/')}/results"), [str(o) for o in spec.objectives], by=(),
                        study_constraints={spec.name: spec.constraints})
    picked = select_runs(summary, select)
    if not picked:
        raise ConfigError(f"--select {select}: no complete run of study {spec.name} qualifies")
    space = spec.space()
    entries = []
    for i in picked:
        row = summary.row(i)
        method = str(row["method"])
        params = {name: row[f"param_{name}"] for name in space.searched(method)}
        missing = sorted(k for k, v in params.items() if v is None)
        if missing:
            raise ConfigError(f"trial {row['trial_id']} has no recorded value for {missing}; it cannot be re-run")
        entries.append({"method": method, "params": params})
    return entries


def _stored(storage: str) -> tuple[dict[str, Any], StudySpec]:
    stored, spec = stored_spec(storage)
    if spec.name.endswith((CONFIRM_SUFFIX, EVALUATE_SUFFIX)):
        raise ConfigError(f"{storage} holds a re-run of another study; name the study it re-runs")
    return stored, spec


def _rerun(stored: dict[str, Any], *, name: str, seed: int, benchmark: dict[str, Any], entries: list[dict[str, Any]],
           storage: str, protocol: str = "end_of_training") -> StudySpec:
    """The study that runs ``entries`` as searched but for seed and benchmark: FIFO, one trial each.
    ``protocol``: first_task keeps a confirmation on the search's horizon (task 0), so that the two compare."""
    return StudySpec.from_dict({**stored, "name": name, "seed": seed, "benchmark": benchmark,
                                "sampler": {"name": "random"}, "scheduler": {"name": "fifo"}, "trials": len(entries),
                                "enqueue": entries, "storage": storage, "optuna_storage": None,
                                "protocol": protocol, "evaluate_on": None})


# Each seed is a study of its own (the selection re-run in full); a mean +- std over a handful
# confirms a front, and more than this is a typo rather than a plan (10^8 ran until killed).
MAX_SEEDS = 100


def plan_confirmation(storage: str, *, seeds: int, select: str = "front",
                      fresh_class_orders: bool = True) -> list[Confirmation]:
    """One confirmation study per fresh seed (the study's seed + 1 .. + ``seeds``)."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise ConfigError(f"--seeds {seeds}: allowed 1 to {MAX_SEEDS} (each seed re-runs the whole selection)")
    stored, spec = _stored(storage)
    entries = _selected(storage, spec, select)
    order = spec.benchmark.class_order
    out = []
    for k in range(1, seeds + 1):
        seed = spec.seed + k
        bench = dict(stored["benchmark"])
        if fresh_class_orders and order.startswith("seed"):
            bench["class_order"] = f"seed{int(order.removeprefix('seed')) + k}"
        protocol = "first_task" if spec.protocol == "first_task" else "end_of_training"
        out.append(Confirmation(seed, _rerun(stored, name=spec.name + CONFIRM_SUFFIX, seed=seed, benchmark=bench,
                                             entries=entries, protocol=protocol,
                                             storage=f"{storage.rstrip('/')}/{CONFIRM_DIR}/seed-{seed}")))
    return out


def missing_configurations(confirmation: Confirmation) -> list[dict[str, Any]]:
    """The selected configurations that no finished trial of ``confirmation``'s study ran (after an
    interruption a sampler could have filled an enqueued trial's place): [] when every one ran."""
    from incsweep.study.results import read_study_rows

    def key(method: str, params: Mapping[str, Any]) -> tuple:
        return method, tuple(sorted((k, repr(v)) for k, v in params.items()))

    spec = confirmation.spec
    ran: Counter[tuple] = Counter()
    for (method, _), rows in sorted(read_study_rows(confirmation.storage, spec.name).by_trial().items()):
        finals = [r for r in rows if r["is_final"]]
        if not finals or (finals[0].get("error") or "").startswith("orphaned"):
            continue
        entry = next((e for e in spec.enqueue if e["method"] == method), None)
        names = list((entry or {}).get("params") or {})
        ran[key(method, {n: finals[0].get(f"param_{n}") for n in names})] += 1
    missing = []
    for entry in spec.enqueue:
        k = key(entry["method"], entry.get("params") or {})
        if ran[k]:
            ran[k] -= 1
        else:
            missing.append(dict(entry))
    return missing


def plan_evaluation(storage: str) -> Confirmation:
    """The evaluation phase of protocols two_phase and first_task: the study's front, with the study's
    seed, as ``<name>.evaluate`` in ``<storage>/evaluate``, on the ``evaluate_on`` benchmark (two_phase)
    or on the whole stream of the study's own (first_task, whose trials ran task 0 only)."""
    stored, spec = _stored(storage)
    if not spec.evaluates_front:
        raise ConfigError(f"study {spec.name} uses protocol {spec.protocol}, which has no evaluation phase "
                          "(two_phase and first_task have one)")
    entries = _selected(storage, spec, "front")
    bench = {**stored["benchmark"], **dict(spec.evaluate_on or {})}
    return Confirmation(spec.seed, _rerun(stored, name=spec.name + EVALUATE_SUFFIX, seed=spec.seed, benchmark=bench,
                                          entries=entries, storage=f"{storage.rstrip('/')}/{EVALUATE_DIR}"))


def run_confirmation(plan: list[Confirmation], *, address: str | None = None) -> list[Any]:
    """Run (or resume) each confirmation study, on one Ray for all of them; their summaries."""
    from incsweep.study.runner import _init_ray, run_study

    owns_ray = _init_ray(address, None)
    try:
        summaries = []
        for c in plan:
            resume = StudyLayout(c.storage).read_spec() is not None
            log.info("confirmation seed %d: %s %d configuration(s) in %s", c.seed, "resuming" if resume else "running",
                     c.spec.trials, c.storage)
            summaries.append(run_study(c.spec, resume=resume))
        return summaries
    finally:
        if owns_ray:
            import ray

            ray.shutdown()


def search_then_evaluate(spec: StudySpec, storage: str, address: str | None, search: Callable[[], Any],
                         announce: Callable[[str], None]) -> Any:
    """Run ``search`` (the study), then, for protocols two_phase and first_task, the evaluation phase
    (the front on ``evaluate_on``, or on the whole stream) once the search is done; resuming the study
    resumes whichever phase is unfinished. ``announce`` says what happens (print, or a log line)."""
    summary = search()
    if spec.evaluates_front and summary.done and summary.statuses.get("complete"):
        plan = plan_evaluation(storage)
        bench = plan.spec.benchmark
        where = (f"the whole stream ({len(bench.task_sizes)} tasks)" if spec.protocol == "first_task"
                 else f"{bench.name} (class order {bench.class_order})")
        announce(f"{spec.protocol}: evaluating the front ({plan.spec.trials} configuration(s)) on {where} "
                 f"in {plan.storage}")
        (evaluated,) = run_confirmation([plan], address=address)
        announce(f"{spec.protocol} evaluation: {evaluated.finished}/{evaluated.trials} finished; "
                 f"see both with: incsweep analyze {storage}")
    return summary
