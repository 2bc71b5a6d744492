"""The domain package runs without an orchestrator."""

import subprocess
import sys


def test_archiver_does_not_import_prefect():
    """Importing every archiver module (emulator included) leaves prefect unimported."""
    code = (
        "import sys, pkgutil, importlib, archiver\n"
        "for m in pkgutil.walk_packages(archiver.__path__, 'archiver.'):\n"
        "    if not m.name.endswith('__main__'): importlib.import_module(m.name)\n"
        "assert 'prefect' not in sys.modules, 'prefect was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
