"""incsweep: hyperparameter studies over incremental-learning methods under a memory budget.

One import package: ``incsweep.core`` (the shared vocabulary: errors, configs, metrics, memory
units, constraints, parameter types, results schema, storage layout; a leaf), ``incsweep.incremental``
(the engine: one incremental run, no Ray), ``incsweep.study`` (study specs, Ray Tune + Optuna, the
Parquet sink), ``incsweep.trainables``, ``incsweep.search_spaces`` and ``incsweep.analysis`` (Parquet ->
fronts, plots, exports; no torch, no Ray). The last five live in the repository's top-level folders
(incsweep/<name> links to them). Importing ``incsweep`` imports only ``incsweep.core.provenance``.

    from incsweep.analysis import load_results, pareto_front, hypervolume
"""

from __future__ import annotations

from incsweep.core.provenance import package_version

__all__ = ["__version__"]

__version__ = package_version()
