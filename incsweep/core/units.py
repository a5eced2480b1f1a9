"""Units shared by the engine and the torch-free layers (CLI help, analysis)."""

__all__ = ["MB"]

MB = 2**20  # docs/protocols.md: MB = 2^20 bytes
