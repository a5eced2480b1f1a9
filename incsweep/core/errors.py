"""Error types the engine raises; the CLI turns ConfigError into one line and exit code 2."""

from __future__ import annotations

__all__ = ["ConfigError", "DataNotFoundError", "DataFormatError", "DivergedError"]


class ConfigError(ValueError):
    """A configuration value is invalid: the message names the field, the value and what is allowed."""


class DataNotFoundError(FileNotFoundError):
    """A dataset is not on disk: the message says where it was looked for and how to get it."""


class DataFormatError(ConfigError):
    """A dataset file is not in the format its reader expects (or holds what it must not): the message
    names the file and what was expected. A ConfigError, so the CLI prints one line and exits 2."""


class DivergedError(RuntimeError):
    """Training produced a non-finite loss; the run cannot go on."""
