"""docs/configuration.md's settings table stays true to archiver/settings.py."""

from archiver.settings import settings_table
from tests.conftest import ROOT

START, END = "<!-- settings-table -->\n", "<!-- /settings-table -->"


def documented_table() -> str:
    """The table between the markers of docs/configuration.md."""
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    return page[page.index(START) + len(START) : page.index(END)].strip()


def test_configuration_table_matches_the_settings():
    """Every setting, default and description in the documented table comes from Settings."""
    assert documented_table() == settings_table().strip(), (
        "regenerate the table in docs/configuration.md with: python -m flows settings"
    )


def test_the_readme_keeps_no_copy_of_the_table():
    """The table lives in one place: a second copy in the README would drift unchecked."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert START.strip() not in readme
    assert "| `ARCHIVER_DEST` |" not in readme
