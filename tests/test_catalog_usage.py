"""`usage` per model, day or month from the manifests, with costs from a price table."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from archiver.catalog import Catalog, Filters, catalog_file, sync
from archiver.catalog.usage import Prices, usage
from archiver.errors import ConfigurationError
from archiver.storage import open_destination
from tests.archives import prediction, write_local
from tests.conftest import ROOT

PRICES = """
[models."black-forest-labs/flux-schnell"]
per_output = 0.003

[models."stability-ai/sdxl"]
per_second = 0.001
per_prediction = 0.01
"""


@pytest.fixture
def archive(tmp_path):
    root = tmp_path / "archive"
    write_local(root, prediction("p1", "a", created="2026-11-30T10:00:00Z", predict_time=1.5))
    write_local(root, prediction("p2", "b", created="2026-12-01T10:00:00Z", outputs=4))
    write_local(
        root,
        prediction(
            "p3",
            "c",
            model="stability-ai/sdxl",
            created="2026-12-01T11:00:00Z",
            outputs=1,
            predict_time=10,
        ),
    )
    write_local(
        root,
        prediction("p4", "d", model="owner/unpriced", created="2026-12-02T11:00:00Z", outputs=1),
    )
    return root


def _usage(root, by, prices=None, **filters):
    dest = open_destination(str(root))
    with Catalog(catalog_file(dest)) as store:
        sync(dest, store)
        return usage(store, Filters.parse(**filters), by=by, prices=prices, dest=dest.url)


def test_per_model_with_costs(archive, tmp_path):
    table = tmp_path / "prices.toml"
    table.write_text(PRICES)
    report = _usage(archive, "model", Prices.load(str(table)))
    rows = {r.group: r for r in report.rows}
    flux = rows["black-forest-labs/flux-schnell"]
    assert (flux.predictions, flux.files, flux.predict_time) == (2, 6, 3.5)
    assert flux.bytes == sum(
        len(f"p{i} output {n}".encode() * 10) for i, k in ((1, 2), (2, 4)) for n in range(k)
    )
    assert flux.cost == pytest.approx(6 * 0.003)
    assert rows["stability-ai/sdxl"].cost == pytest.approx(10 * 0.001 + 0.01)
    assert rows["owner/unpriced"].cost == 0 and rows["owner/unpriced"].unpriced == [
        "owner/unpriced"
    ]
    assert report.total.predictions == 4 and report.total.cost == pytest.approx(0.018 + 0.02)
    assert report.total.unpriced == ["owner/unpriced"]


def test_per_day_and_month_within_a_window(archive):
    days = _usage(archive, "day", since="2026-12-01")
    assert [(r.group, r.predictions, r.files) for r in days.rows] == [
        ("2026-12-02", 1, 1),
        ("2026-12-01", 2, 5),
    ]
    months = _usage(archive, "month")
    assert [(r.group, r.predictions) for r in months.rows] == [("2026-12", 3), ("2026-11", 1)]
    assert months.total.cost is None


def test_a_bad_price_table_names_the_file_and_the_field(tmp_path):
    table = tmp_path / "prices.toml"
    table.write_text('[models."a/b"]\nper_token = 1\n')
    with pytest.raises(ConfigurationError, match=r"prices.toml: models.a/b.per_token"):
        Prices.load(str(table))
    table.write_text("[models\n")
    with pytest.raises(ConfigurationError, match="not valid TOML"):
        Prices.load(str(table))


def test_cli_json_and_bad_arguments(archive, tmp_path):
    def run(*args, **env):
        return subprocess.run(
            [sys.executable, "-m", "flows", "usage", "--dest", str(archive), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**__import__("os").environ, **env},
        )

    table = tmp_path / "prices.toml"
    table.write_text(PRICES)
    result = run("--since", "2026-01-01", "--json", ARCHIVER_PRICES=str(table))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["total"]["predictions"] == 4 and doc["total"]["cost"] == pytest.approx(0.038)
    plain = run("--since", "2026-01-01", "--by", "month")
    assert plain.returncode == 0 and plain.stdout.splitlines()[-1].startswith("total\t4\t")
    for args in (["--by", "week"], ["--since", "soon"], ["--prices", str(tmp_path / "none.toml")]):
        bad = run(*args)
        assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, (args, bad.stderr)
