"""An incsweep plugin package: ``frozen_ncm`` (method) and ``toy-shapes`` (benchmark)."""
