"""incsweep: hyperparameter studies over incremental-learning methods under a memory budget.

One import package; its parts live in the repository's top-level folders and install as
``incsweep.incremental`` (the engine: one incremental run, no Ray), ``incsweep.study`` (study specs,
Ray Tune + Optuna, the Parquet sink), ``incsweep.trainables``, ``incsweep.search_spaces`` and
``incsweep.analysis`` (Parquet -> fronts, plots, exports; no torch, no Ray). Importing ``incsweep``
imports none of them.

    from incsweep.analysis import load_results, pareto_front, hypervolume
"""

from __future__ import annotations

from incsweep.core.provenance import package_version

__all__ = ["__version__"]

__version__ = package_version()
