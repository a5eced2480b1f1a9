"""A method's default search space: what its class declares (``Method.search_space``).

That class attribute, in the method's own file, is the one source of truth for built-in and plugin
methods alike; the shared ranges of the built-in ones are in ``incremental/methods/_space.py``.
"""

from __future__ import annotations

from incsweep.core.params import Param

__all__ = ["default_space"]


def default_space(method: str) -> dict[str, Param]:
    """A copy of ``method``'s default space ({} for a method that declares none, e.g. joint)."""
    from incsweep.incremental.methods import get_method  # not at import: the registry imports torch (~1 s)

    return dict(get_method(method).search_space or {})
