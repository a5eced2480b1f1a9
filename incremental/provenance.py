"""Provenance of results: which code produced them. Torch-free, so analysis can import it."""

from __future__ import annotations

from pathlib import Path

from incsweep import __version__

__all__ = ["code_version"]


def code_version() -> str:
    """The package version plus the git commit when running from a checkout (provenance)."""
    head = Path(__file__).resolve().parent.parent / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref = (head.parent / ref[5:]).read_text().strip()
        return f"{__version__}+g{ref[:10]}"
    except OSError:
        return __version__
