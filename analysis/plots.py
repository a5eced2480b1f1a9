"""PNG plots of a Summary (matplotlib, Agg backend: no display is needed or opened)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from incsweep.analysis.auc import memory_curve
from incsweep.analysis.confirmation import config_key
from incsweep.analysis.objectives import split_column
from incsweep.analysis.summary import Summary
from incsweep.core.builtin_methods import display_name
from incsweep.core.constraints import parse_constraints
from incsweep.core.vocabulary import LAST_ACC, label

__all__ = ["plot_accuracy_vs_memory", "accuracy_vs_memory_figure", "plot_task_curves", "task_curves_figure",
           "front_trials", "seed_groups", "group_label"]

# At most this many configurations get their own line in the per-task plot: beyond about a dozen
# lines a legend stops being readable; the ones shown are spread evenly along memory.
MAX_CURVES = 12


def _figure(**kwargs):
    # A bare Figure on the Agg canvas: no pyplot, so no global backend switch and no display,
    # whatever backend a notebook using this library has chosen.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


def _colors(n: int) -> list:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _groups(summary: Summary):
    return list(summary.groups.values()) or [summary.overall]


def group_label(summary: Summary, g) -> str:
    """A group's legend label, with method names as papers write them (``icarl`` -> iCaRL)."""
    parts = [display_name(str(v)) if k == "method" else str(v) for k, v in zip(summary.by, g.key)]
    return "/".join(parts) or g.label


def seed_groups(summary: Summary) -> list[tuple[np.ndarray, np.ndarray]]:
    """(memory, accuracy) of the complete runs of each configuration that ran with two or more seeds:
    runs whose configuration differs only in run seed and class order (confirmation runs, or studies
    run with other seeds), the study's own and its confirmation runs together."""
    tables = [t for t in (summary.runs, summary.confirmed) if t is not None and "config_json" in t.column_names]
    by_config: dict[str, list[tuple[float, float]]] = {}
    for t in tables:
        mem = pc.cast(t[summary.memory], pa.float64()).to_pylist()
        acc = pc.cast(t[summary.accuracy], pa.float64()).to_pylist()
        for text, m, a in zip(t["config_json"].to_pylist(), mem, acc):
            key = config_key(text)
            if key is not None:
                by_config.setdefault(key, []).append((m, a))
    return [(np.array([m for m, _ in v]), np.array([a for _, a in v])) for v in by_config.values() if len(v) > 1]


def _percent(ax, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(PercentFormatter(1.0))


def plot_accuracy_vs_memory(summary: Summary, path: str | Path, *, dpi: float | None = None) -> Path:
    """Accuracy against total memory: every complete run as a faint point, each group's best-accuracy-
    for-memory front as a step line (a front point's accuracy holds until the next one), knees starred,
    mean +- std where a configuration ran with several seeds.
    The format follows the suffix of ``path`` (png, pdf, svg); ``dpi``: raster resolution (default 110)."""
    fig = accuracy_vs_memory_figure(summary)
    out = Path(path)
    fig.savefig(out, bbox_inches="tight", dpi=dpi or "figure")
    return out


def accuracy_vs_memory_figure(summary: Summary, ax=None):
    """The figure of ``plot_accuracy_vs_memory``, not yet saved: drawn into ``ax`` when given (a
    matplotlib Axes of your own figure, e.g. a paper's subplot), else into a new Figure; returns the
    Figure."""
    acc_col, mem_col = summary.accuracy, summary.memory
    runs = summary.runs
    mem = pc.cast(runs[mem_col], pa.float64()).to_numpy(zero_copy_only=False)
    acc = pc.cast(runs[acc_col], pa.float64()).to_numpy(zero_copy_only=False)
    own = ax is None
    if own:
        fig = _figure(figsize=(8, 5), dpi=110)
        ax = fig.subplots()
    fig = ax.figure
    groups = _groups(summary)
    for color, g in zip(_colors(len(groups)), groups):
        if not len(g.rows):
            continue
        m, a = mem[g.rows], acc[g.rows]
        ax.scatter(m, a, s=14, color=color, alpha=0.35, linewidths=0)
        # the best accuracy for each memory: front points, held flat up to the group's largest run
        xs, ys = memory_curve(m, a)
        n_all = sum(g.statuses.values()) or len(g.rows)
        ax.step(xs, ys, where="post", color=color, lw=1.8,
                label=group_label(summary, g) if not own else
                f"{group_label(summary, g)}: front {len(g.front)} of {len(g.rows)} complete ({n_all} runs)")
        ax.plot(mem[g.front], acc[g.front], "o", color=color, ms=4)
        if g.knee is not None:
            ax.plot(mem[g.knee], acc[g.knee], "*", color=color, ms=14, mec="black", mew=0.6)
    _draw_constraints(summary, ax)
    seeded = seed_groups(summary)
    for k, (m_seeds, a_seeds) in enumerate(seeded):
        ax.errorbar(m_seeds.mean(), a_seeds.mean(), yerr=a_seeds.std(ddof=1), xerr=m_seeds.std(ddof=1),
                    fmt="D", ms=5, color="black", mfc="white", capsize=3, lw=1, zorder=3,
                    label=f"mean +- std over seeds ({len(seeded)} configurations)" if k == 0 else None)
    if len(mem) and np.nanmin(mem) > 0 and np.nanmax(mem) / np.nanmin(mem) > 20:
        ax.set_xscale("log")  # budgets of a study often span decades (a tiny net to many backbones)
    _percent(ax)
    ax.grid(alpha=0.3)
    if not own:
        # A caller's axes (a paper's subplot, a notebook's 4x3 in): short labels and title, and the
        # legend inside where it covers the fewest points; outside it ran over the x label.
        ax.set_xlabel("memory (MB)", fontsize=8)
        ax.set_ylabel("accuracy, %", fontsize=8)
        ax.set_title(f"{acc_col} against memory", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best", frameon=False)
        return fig
    ax.set_xlabel(label(mem_col))
    ax.set_ylabel(f"{label(acc_col)}, %")
    ax.set_title("Accuracy against memory: Pareto fronts (lines), all complete runs (points), knees (stars)"
                 + (", constraints (dashed)" if summary.constrained else ""),
                 fontsize=9)
    # Below the axes, outside them: inside, a fixed corner hid dominated runs (4 of 5 BMKP runs in a demo).
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def _draw_constraints(summary: Summary, ax) -> None:
    """Runs that break the constraints as grey crosses, and every bound on a plotted axis as a dashed line."""
    broken = summary.infeasible
    if broken is not None and broken.num_rows:
        m = pc.cast(broken[summary.memory], pa.float64()).to_numpy(zero_copy_only=False)
        a = pc.cast(broken[summary.accuracy], pa.float64()).to_numpy(zero_copy_only=False)
        ax.scatter(m, a, s=22, marker="x", color="0.45", linewidths=1, zorder=2,
                   label=f"breaks the constraints ({broken.num_rows} runs, on no front)")
    drawn: set[tuple[str, float]] = set()
    for text in summary.constraints.values():
        for c in parse_constraints(text):
            if (c.metric, c.bound) in drawn or c.metric not in (summary.memory, summary.accuracy):
                continue
            drawn.add((c.metric, c.bound))
            line = ax.axvline if c.metric == summary.memory else ax.axhline
            line(c.bound, color="firebrick", ls="--", lw=1.2, zorder=1, label=f"constraint {c}")


def front_trials(summary: Summary) -> list[int]:
    """Indices into ``summary.runs`` of the front configurations to draw (each group's front,
    or the overall one without groups), at most MAX_CURVES spread evenly along memory."""
    idx = np.concatenate([g.front for g in _groups(summary)]) if summary.groups else summary.overall.front
    idx = np.unique(idx)
    if len(idx) > MAX_CURVES:
        mem = pc.cast(summary.runs[summary.memory], pa.float64()).to_numpy(zero_copy_only=False)[idx]
        idx = idx[np.argsort(mem, kind="stable")]
        idx = idx[np.unique(np.linspace(0, len(idx) - 1, MAX_CURVES).round().astype(int))]
    return [int(i) for i in idx]


def _task_rows(table: pa.Table, study: str, trial_id: str) -> pa.Table:
    mask = pc.and_(pc.and_(pc.equal(table["trial_id"], trial_id), pc.equal(table["study"], study)),
                   pc.invert(table["is_final"]))
    rows = table.filter(mask)
    return rows.take(pc.sort_indices(rows, [("task", "ascending")]))


def plot_task_curves(summary: Summary, path: str | Path, *, dpi: float | None = None) -> Path:
    """Per-task curves of the front configurations: left, accuracy on all classes seen so far after
    each task; right, accuracy on each task's own test data after the last task (forgetting). The
    format follows the suffix of ``path``; ``dpi``: raster resolution (default 110)."""
    fig = task_curves_figure(summary)
    out = Path(path)
    fig.savefig(out, dpi=dpi or "figure")
    return out


def task_curves_figure(summary: Summary, axes=None):
    """The figure of ``plot_task_curves``: drawn into ``axes`` (two matplotlib Axes) when given,
    else into a new Figure; returns the Figure."""
    seen_col = split_column(LAST_ACC, summary.split)  # acc_i: accuracy on all seen classes after task i
    row_col = "acc_row" if summary.split == "test" else "val_acc_row"
    chosen = front_trials(summary)
    groups = _groups(summary)
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D"]
    look = {}  # run index -> colour of its group, line style and marker by its rank within the group
    for color, g in zip(_colors(len(groups)), groups):
        mine = [int(i) for i in g.front if int(i) in chosen]
        for rank, i in enumerate(mine):
            look[i] = (color, styles[rank % len(styles)], markers[(rank // len(styles)) % len(markers)])
    chosen = [i for i in look] + [i for i in chosen if i not in look]  # legend: by group, then memory
    legend_rows = (len(chosen) + 2) // 3
    own = axes is None
    if own:
        fig = _figure(figsize=(11, 4.2 + 0.17 * legend_rows), dpi=110)
        left, right = fig.subplots(1, 2)
    else:
        left, right = axes
        fig = left.figure
    for i in chosen:
        run = summary.row(i)
        tasks = _task_rows(summary.table, run["study"], run["trial_id"])
        name = f"{display_name(run['method'])} {run['trial_id']} ({run[summary.memory]:.3g} MB)"
        color, style, marker = look.get(i, ("black", "-", "o"))
        if tasks.num_rows and seen_col in tasks.column_names:
            x = np.asarray(tasks["task"].to_pylist()) + 1
            y = np.asarray(tasks[seen_col].to_pylist(), dtype=float)
            left.plot(x, y, style, marker=marker, ms=3, color=color, label=name)
        final_row = run.get(row_col) or []
        if final_row and not all(v is None or np.isnan(v) for v in final_row):
            right.plot(np.arange(1, len(final_row) + 1), final_row, style, marker=marker, ms=3, color=color)
    title = f"front configurations ({len(chosen)} shown)"
    left.set_title(f"Accuracy on all seen classes after each task\n{title}", fontsize=9)
    left.set_xlabel("after task")
    left.set_ylabel(f"accuracy on all seen classes ({'test' if summary.split == 'test' else 'validation'} split), %")
    right.set_title("Accuracy on each task after the last task", fontsize=9)
    right.set_xlabel("task")
    right.set_ylabel(f"accuracy ({'test' if summary.split == 'test' else 'validation'} split), %")
    for ax in (left, right):
        _percent(ax)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    handles, labels = left.get_legend_handles_labels()
    if handles and own:
        fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(3, len(handles)), frameon=False)
        fig.tight_layout(rect=(0, 0.02 + 0.035 * legend_rows, 1, 1))
    elif handles:
        left.legend(handles, labels, fontsize=7, frameon=False)
    elif own:
        fig.tight_layout()
    return fig


def plot_convergence(summary: Summary, path: str | Path, *, dpi: float | None = None) -> Path:
    """The front's hypervolume after each trial, in the order the study proposed them (insight.py):
    left against trials, right against the compute spent (CPU seconds of every trained task, stopped
    and failed trials included; cached tasks cost nothing). A curve still rising at its end says
    more trials would pay."""
    from incsweep.analysis.insight import convergence

    c = convergence(summary)
    fig = _figure(figsize=(9, 3.6), dpi=110)
    left, right = fig.subplots(1, 2)
    for ax, x, xlabel in ((left, c.trials, "trials, in the order proposed"), (right, c.compute_s, "compute spent (CPU s)")):
        ax.step(x, c.hypervolume, where="post", color="#1f77b4")
        ax.plot(x, c.hypervolume, "o", markersize=3, color="#1f77b4")
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    left.set_ylabel("hypervolume of the front")
    fig.suptitle("Convergence: the front's hypervolume as the study went on")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=dpi or "figure")
    return out
