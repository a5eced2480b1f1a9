"""A self-contained HTML report of a Summary (tables plus the PNG plots embedded as base64)."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

from incsweep.analysis.study_facts import study_facts
from incsweep.analysis.summary import Summary
from incsweep.analysis.tables import (
    confirmation_table,
    convergence_lines,
    evaluation_table,
    front_table,
    groups_table,
    headline,
    importance_table,
    test_front_table,
)

__all__ = ["write_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #eee; }
.muted { color: #666; font-size: 0.9em; }
"""


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}"></p>'


def write_report(summary: Summary, path: str | Path, *, images: Sequence[Path] = (), inputs: Sequence[str] = ()) -> Path:
    """Write ``path`` (HTML, no external files: images are embedded). The study facts (benchmark,
    scenario, objectives, constraints, sampler, scheduler, seeds, code version) come from the rows
    and from each input's study.yaml; the front is shown with its test-split metrics, what a paper
    reports."""
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>incsweep analysis</title>",
             f"<style>{_STYLE}</style></head><body><h1>incsweep analysis</h1>",
             f"<p class='muted'>inputs: {html.escape(', '.join(map(str, inputs)) or '-')}; generated "
             f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}</p>"]
    for study, facts in study_facts(summary.table, [str(i) for i in inputs]):
        parts += [f"<h2>Study {html.escape(study)}</h2>", _table(["fact", "value"], [[k, v] for k, v in facts])]
    parts += ["<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in headline(summary)) + "</ul>",
              "<h2>Groups</h2>", _table(*groups_table(summary)),
              "<h2>Pareto front over all complete runs that meet the constraints</h2>", _table(*front_table(summary)),
              "<h3>The front on the test split</h3>",
              "<p class='muted'>The front is chosen on the objectives' split; these are the same "
              "configurations' test-split metrics (never optimised), as a paper reports them.</p>",
              _table(*test_front_table(summary))]
    confirmed = confirmation_table(summary)
    if confirmed[1]:
        parts += ["<h3>Confirmed on fresh seeds</h3>",
                  "<p class='muted'>Each front configuration re-run on fresh seeds and class orders "
                  "(<code>incsweep confirm</code>): the mean and sample standard deviation; flagged where the "
                  "search's value is more than 2 standard deviations from the confirmed mean.</p>",
                  _table(*confirmed)]
    evaluated = evaluation_table(summary)
    if evaluated[1]:
        parts += ["<h3>Tuned on vs evaluated on</h3>",
                  "<p class='muted'>The front chosen by the search, run unchanged in the evaluation phase: on "
                  "the evaluation benchmark (protocol two_phase, GTEP: Cha &amp; Cho 2024) or on the whole "
                  "stream after tuning on task 0 (protocol first_task: Lee et al. 2024). The gap is what the "
                  "search's own figure would have overstated.</p>", _table(*evaluated)]
    for g in summary.groups.values():
        if len(g.front):
            parts += [f"<h3>Front of {html.escape(g.label)}</h3>", _table(*front_table(summary, g))]
    parts += ["<h2>Has the study converged?</h2>",
              "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in convergence_lines(summary)) + "</ul>",
              "<p class='muted'>The hypervolume of the front of the first trials the study proposed, in the order "
              "it proposed them (Optuna's trial number; plot <code>convergence</code>); compute counts every "
              "trained task, stopped and failed "
              "trials included, and nothing for tasks taken from the prefix cache.</p>",
              "<h2>Which parameters mattered</h2>",
              "<p class='muted'>PED-ANOVA (Watanabe et al. 2023, Optuna's <code>PedAnovaImportanceEvaluator</code>) "
              "per method and objective over its complete runs that meet the constraints: how much of the "
              "objective's variation among the best runs each parameter explains. Few runs give a rough "
              "figure.</p>", _table(*importance_table(summary))]
    if images:
        parts.append("<h2>Plots</h2>")
        parts += [_image(p, Path(p).stem) for p in images]
    parts.append("<p class='muted'>Only final rows of runs with status complete that meet their study's "
                 "constraints (and any given with --constraint) are analysed; infeasible, pruned, error and "
                 "diverged runs are counted but never on a front.</p></body></html>")
    out = Path(path)
    out.write_text("\n".join(parts))
    return out
