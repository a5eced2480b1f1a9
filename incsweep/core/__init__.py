"""The words every part of incsweep speaks: errors, config parsing, the metric and memory vocabulary,
units, shared ranges, constraints, search-space parameter types, the results schema and a study's
storage layout, provenance, plugin references and the built-in method names.

Torch-free and Ray-free (numpy, pyarrow and yaml at most), and a leaf: nothing here imports any other
part of incsweep (tests/test_import_graph.py), so the engine, analysis, search spaces, trainables and
study all build on it without cycles. Import the modules directly, e.g.
``from incsweep.core.errors import ConfigError``; this package imports none of them.
"""
