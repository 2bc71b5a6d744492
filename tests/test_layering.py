"""Imports run one way: the command line (`cli/`) starts flows; nothing below it imports it."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

BELOW_CLI = ("archiver", "flows", "tasks")
# The one exception: `python -m flows` is a shim that hands over to the command line.
ENTRY_SHIMS = {Path("flows/__main__.py")}


def imported_packages(source: str) -> set[str]:
    """The top-level packages every import statement of `source` names (absolute imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_imports_found_anywhere_in_a_module():
    """The scan sees imports inside functions and `from cli.x import y` alike."""
    source = "import os\ndef f():\n    from cli.console import x\n    import cli.runs\n"
    assert imported_packages(source) == {"os", "cli"}


def test_nothing_below_the_cli_imports_it():
    """No module under archiver/, flows/ or tasks/ imports `cli` (the entry shim aside)."""
    offenders = [
        str(path.relative_to(ROOT))
        for package in BELOW_CLI
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.relative_to(ROOT) not in ENTRY_SHIMS
        and "cli" in imported_packages(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
