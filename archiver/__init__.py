"""Replicate archiver: the Prefect-free domain (API layer, download, archive, manifest, emulator)."""

__version__ = "0.1.0"
