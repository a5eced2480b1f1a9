"""incsweep from Python (a notebook, a script): start, resume and look at studies.

    from incsweep.study import load_spec, run_study
    study = run_study(load_spec("configs/studies/tiny.yaml"), storage="runs/tiny")
    study.front()                    # the Pareto-optimal configurations, a pandas DataFrame
    study.results()                  # every Parquet row (format="arrow" or "polars" for those)
    study.report()                   # plots, front.csv and report.html in runs/tiny/analysis

Progress lines (the study's start, each task of each trial, each trial's end, the study's counts) go
to stderr while a study runs, unless the program's own logging shows INFO lines: then they go to its
handlers, as any library's do.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

if TYPE_CHECKING:
    from incsweep.analysis.summary import Summary
    from incsweep.study.runner import StudySummary
    from incsweep.study.spec import StudySpec

__all__ = ["Study", "run_study", "resume_study", "open_study"]

log = logging.getLogger(__name__)
_PROGRESS_LOGGERS = ("incsweep.study", "incsweep.trainables")
_FORMATS = ("pandas", "arrow", "polars")


@dataclass(frozen=True)
class Study:
    """A study in its storage directory (or URI): what it holds is read when asked, so a handle on a
    running study sees its trials arrive."""

    storage: str
    name: str

    def status(self) -> StudySummary:
        """Trials requested, finished by status, running or interrupted, task rows, Optuna's states."""
        from incsweep.study.summary import stored_view, summarize

        return summarize(self.storage, stored_view(self.storage))

    def results(self, format: str = "pandas") -> Any:
        """Every row the study stored (one per finished task, one final row per trial)."""
        from incsweep.analysis import load_results

        return _as_format(load_results(self.storage), format)

    def summary(self, objectives: str | Sequence[str] | None = None, *, split: str = "val",
                by: Sequence[str] = ("method",), under_mb: Sequence[float] = ()) -> Summary:
        """Fronts, hypervolume, AUC and the knee, overall and per group (``incsweep analyze``'s figures),
        on the study's own objectives and constraints unless ``objectives`` names others."""
        from incsweep.analysis import load_results, summarize
        from incsweep.analysis.study_facts import study_specs

        stored = study_specs([self.storage])
        spec = stored.get(self.name) or {}
        objs = objectives if objectives is not None else (spec.get("objectives") or "avg_acc:max,total_mb:min")
        constraints = {self.name: spec.get("constraints") or []}
        return summarize(load_results(self.storage), objs, split=split, by=by, under_mb=under_mb,
                         study_constraints=constraints)

    def front(self, objectives: str | Sequence[str] | None = None, *, split: str = "val",
              format: str = "pandas") -> Any:
        """The Pareto-optimal complete runs that meet the study's constraints, best first."""
        summary = self.summary(objectives, split=split, by=())
        runs = summary.runs.take(list(map(int, summary.overall.front)))
        return _as_format(runs, format)

    def report(self, out: str | Path | None = None, *, dpi: int | None = None) -> Path:
        """Write the plots, ``front.csv`` and ``report.html`` (``incsweep analyze --out``) into ``out``
        (default ``<storage>/analysis``); returns the report's path."""
        from incsweep.analysis.outputs import write_analysis

        target = Path(out) if out is not None else Path(self.storage) / "analysis"
        return write_analysis(self.summary(), target, inputs=[self.storage], dpi=dpi)["report.html"]

    def _repr_html_(self) -> str:  # a notebook shows the study's state as the cell's output
        import html

        s = self.status()
        counts = ", ".join(f"{k} {v}" for k, v in sorted(s.statuses.items())) or "none yet"
        state = "finished" if s.done else f"not finished: resume_study({self.storage!r})"
        return (f"<b>study {html.escape(self.name)}</b> in <code>{html.escape(self.storage)}</code>: "
                f"{s.finished}/{s.trials} trials finished ({html.escape(counts)}); {html.escape(state)}")


def run_study(spec: StudySpec | str | Path | Mapping[str, Any], *, storage: str | None = None,
              trials: int | None = None, address: str | None = None, progress: bool = True) -> Study:
    """Run a study to its end and return it: ``spec`` a StudySpec, a spec file or a spec mapping;
    ``storage`` where it keeps everything (default the spec's, else ``runs/<name>``); ``trials``
    overrides the spec's count; ``address`` an existing Ray cluster (default: an embedded local Ray).
    Bad input raises ConfigError before anything starts; an interrupt (Ctrl-C) raises
    KeyboardInterrupt with what was stored kept, and ``resume_study`` continues it."""
    from incsweep.study.spec import StudySpec, load_spec

    if isinstance(spec, (str, Path)):
        spec = load_spec(spec)
    elif not isinstance(spec, StudySpec):
        spec = StudySpec.from_dict(spec)
    spec = spec.with_storage(storage)
    if trials is not None:
        spec = StudySpec.from_dict({**spec.to_dict(), "trials": trials})
    where = spec.storage or f"runs/{spec.name}"
    _drive(spec, where, address, resume=False, progress=progress)
    return Study(storage=where, name=spec.name)


def resume_study(storage: str, *, address: str | None = None, progress: bool = True) -> Study:
    """Finish an interrupted study from its storage (a finished one is returned as it is)."""
    from incsweep.study.spec import stored_spec

    _, spec = stored_spec(storage)
    _drive(spec, storage, address, resume=True, progress=progress)
    return Study(storage=storage, name=spec.name)


def open_study(storage: str) -> Study:
    """A study already in ``storage`` (finished, interrupted or running elsewhere), to look at."""
    from incsweep.study.summary import stored_view

    return Study(storage=storage, name=stored_view(storage).name)


def _drive(spec: StudySpec, storage: str, address: str | None, *, resume: bool, progress: bool) -> None:
    from incsweep.study.confirm import search_then_evaluate
    from incsweep.study.runner import run_study as run

    with _progress_to_stderr(progress):
        search_then_evaluate(spec, storage, address, lambda: run(spec, address=address, resume=resume),
                             logging.getLogger("incsweep.study.progress").info)


@contextlib.contextmanager
def _progress_to_stderr(enabled: bool) -> Iterator[None]:
    """While a study runs, its progress lines (INFO) go to stderr unless the program's logging already
    shows them (a handler, at INFO or finer). A notebook's kernel may have a root handler at WARNING,
    which shows none of them: there the lines go to stderr and not also to that handler. The loggers'
    levels, handlers and propagation are restored after."""
    loggers = [logging.getLogger(name) for name in _PROGRESS_LOGGERS]
    if not enabled or all(lg.isEnabledFor(logging.INFO) and lg.hasHandlers() for lg in loggers):
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    saved = [(lg, lg.level, lg.propagate) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
        lg.propagate = False
    try:
        yield
    finally:
        for lg, level, propagate in saved:
            lg.removeHandler(handler)
            lg.setLevel(level)
            lg.propagate = propagate


def _as_format(table: Any, format: str) -> Any:
    if format == "arrow":
        return table
    if format == "pandas":
        from incsweep.analysis import to_pandas

        return to_pandas(table)
    if format == "polars":
        try:
            import polars
        except ImportError as err:
            raise ImportError("format='polars' needs polars: pip install polars") from err
        return polars.from_arrow(table)
    from incsweep.core.errors import ConfigError

    raise ConfigError(f"format={format!r} is not allowed; choose one of {list(_FORMATS)}")
