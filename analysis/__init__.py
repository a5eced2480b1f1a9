"""Analysis of study results (Parquet) alone: Pareto fronts of accuracy against memory, hypervolume,
MEMO's AUC over memory, plots, an HTML report and export of re-runnable configurations.

Notebook use::

    from incsweep.analysis import load_results, to_pandas, pareto_front, hypervolume
    table = load_results("runs/my-study")            # pyarrow Table, every row
    front = pareto_front(table, "avg_acc:max,total_mb:min", by=["method"])
    pareto_front(to_pandas(table).query("method == 'memo'"))  # pandas and polars DataFrames too
"""

from incsweep.analysis.auc import auc_over_memory, memory_aucs
from incsweep.analysis.hypervolume import hypervolume, reference_point
from incsweep.analysis.load import as_table, complete_runs, load_results, to_pandas
from incsweep.analysis.objectives import Objective, parse_objectives
from incsweep.analysis.pareto import pareto_front, pareto_mask
from incsweep.analysis.select import best_under, knee_index
from incsweep.analysis.summary import Summary, summarize

__all__ = ["load_results", "to_pandas", "as_table", "complete_runs", "pareto_front", "pareto_mask", "hypervolume",
           "reference_point", "auc_over_memory", "memory_aucs", "best_under", "knee_index", "Objective",
           "parse_objectives", "summarize", "Summary"]
