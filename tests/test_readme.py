"""The README stays true to the code."""

from archiver.settings import settings_table
from tests.conftest import ROOT


def test_configuration_table_matches_the_settings():
    """Every setting, default and description in the README table comes from Settings."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- settings-table -->\n") + len("<!-- settings-table -->\n")
    end = readme.index("<!-- /settings-table -->")
    assert readme[start:end].strip() == settings_table().strip(), (
        "regenerate with: python -m flows settings"
    )
