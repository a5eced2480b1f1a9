"""What ``incsweep analyze --out DIR`` writes, as one library call: the three plots (PNG, plus any other
formats asked for), ``front.csv`` (data: full precision, empty fields for missing values) and the
self-contained ``report.html``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence

from incsweep.analysis.summary import Summary

__all__ = ["write_analysis", "write_csv"]


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    """Empty fields for missing values; floats as Python writes them (repr: every digit kept)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])


def write_analysis(summary: Summary, out: str | Path, *, inputs: Sequence[str], dpi: int | None = None,
                   formats: Sequence[str] = ("png",)) -> dict[str, Path]:
    """Write the plots, ``front.csv`` and ``report.html`` of ``summary`` into ``out`` (created);
    ``inputs``: the study directories or files analysed (the report states them). Returns each
    written file by name."""
    from incsweep.analysis.plots import plot_accuracy_vs_memory, plot_convergence, plot_task_curves
    from incsweep.analysis.report import write_report
    from incsweep.analysis.tables import front_records

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plots = ((plot_accuracy_vs_memory, "accuracy_vs_memory"), (plot_task_curves, "task_curves"),
             (plot_convergence, "convergence"))
    images = [plot(summary, out / f"{stem}.png", dpi=dpi) for plot, stem in plots]
    extra = [plot(summary, out / f"{stem}.{fmt}", dpi=dpi) for fmt in formats if fmt != "png" for plot, stem in plots]
    write_csv(out / "front.csv", *front_records(summary))
    report = write_report(summary, out / "report.html", images=images, inputs=list(inputs))
    return {p.name: Path(p) for p in (report, *images, *extra, out / "front.csv")}
