"""Provenance of results: which code produced them. Torch-free, so analysis can import it."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["code_version", "package_version"]

# incsweep/core/provenance.py -> the checkout's root, where .git sits when running from a checkout
_CHECKOUT = Path(__file__).resolve().parents[2]


def package_version() -> str:
    """The installed distribution's version (``0+unknown`` in a source tree that was never installed)."""
    try:
        return version("incsweep")
    except PackageNotFoundError:
        return "0+unknown"


def code_version() -> str:
    """The package version plus the git commit when running from a checkout (provenance)."""
    head = _CHECKOUT / ".git" / "HEAD"
    release = package_version()
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (head.parent / ref[5:]).read_text().strip()
        return f"{release}+g{ref[:10]}"
    except OSError:
        return release
