"""A Replicate-compatible HTTP emulator: the offline backend and the tests' double.

Prefect-free on purpose.  Start it with ``with Emulator(processing_seconds=0.05) as emu:``
and point the real ``replicate`` client at ``emu.base_url`` (``REPLICATE_BASE_URL``).
"""

from emulator.faults import COUNTERS, Faults
from emulator.files import large_file_chunks
from emulator.models import BUILTIN_MODELS, DEMO_MODEL, HOSTILE_NAMES, version_id
from emulator.server import Emulator
from emulator.stats import Stats

__all__ = [
    "BUILTIN_MODELS",
    "COUNTERS",
    "DEMO_MODEL",
    "HOSTILE_NAMES",
    "Emulator",
    "Faults",
    "Stats",
    "large_file_chunks",
    "version_id",
]
