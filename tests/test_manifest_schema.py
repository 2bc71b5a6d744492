"""The versioned manifest JSON Schema ships with the package, documents every field, accepts what
the archiver writes (version 2) and what earlier versions wrote (version 1), and rejects the rest."""

from __future__ import annotations

import copy
import json
import re
from importlib.resources import files
from pathlib import Path

import jsonschema
import pytest

from archiver.manifest import SCHEMA_VERSION, Manifest, manifest_schema
from tests.conftest import ROOT
from tests.manifests import validate_manifest, validate_manifests_under
from tests.test_input_files import process_one

SHA = "ab" * 32
V1 = {  # a manifest as version 0.1.0 of the archiver wrote it (schema_version 1, no inputs)
    "schema_version": 1,
    "prediction_id": "p1",
    "model": "a/b",
    "version": None,
    "deployment": None,
    "status": "succeeded",
    "input": {"prompt": "x"},
    "created_at": "2026-12-01T10:00:00Z",
    "started_at": None,
    "completed_at": "2026-12-01T10:00:03Z",
    "metrics": {"predict_time": 1.2},
    "output": [{"file": "a/b/2026/12/01/p1/out-0.png"}],
    "files": [
        {
            "name": "out-0.png",
            "path": "a/b/2026/12/01/p1/out-0.png",
            "size": 3,
            "sha256": SHA,
            "content_type": "image/png",
            "source_url": "https://replicate.delivery/x/out-0.png",
            "pointer": "/0",
        }
    ],
    "cache_key": "k",
    "directory": "a/b/2026/12/01/p1",
    "tool": {"name": "replicate-archiver", "version": "0.1.0"},
    "archived_at": "2026-12-01T10:00:04Z",
}


def test_the_schema_ships_as_package_data():
    """Loaded from the installed package, a valid Draft 2020-12 schema."""
    assert files("archiver").joinpath("manifest.schema.json").is_file()
    jsonschema.Draft202012Validator.check_schema(manifest_schema())


def test_version_1_manifests_stay_valid_and_readable():
    """A version-1 manifest (with or without the field) validates and reads as version 1."""
    validate_manifest(V1)
    unversioned = {k: v for k, v in V1.items() if k != "schema_version"}
    validate_manifest(unversioned)
    manifest = Manifest.model_validate(unversioned)
    assert manifest.schema_version == 1 and manifest.input_files == [] and manifest.logs is None


def test_what_the_archiver_writes_validates(archive_env):
    """A version-2 manifest from a real run validates, retention (added elsewhere) or not."""
    manifest = process_one(archive_env, {"prompt": "schema", "image": "data:text/plain,hi"})
    data = json.loads(manifest.to_json())
    assert data["schema_version"] == SCHEMA_VERSION == 2
    validate_manifest(data)
    validate_manifest({**data, "retention": None})
    validate_manifest(
        {**data, "retention": {"deletes_at": "2026-12-01T11:00:00Z", "margin_seconds": 30.5}}
    )
    assert validate_manifests_under(archive_env) == 1


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.pop("input_files"),  # version 2 requires it
        lambda m: m.update(logs={"path": "x/logs.txt", "size": 1, "sha256": "ABC"}),
        lambda m: m["files"][0].update(source_url="https://h/x.png?sig=secret"),
        lambda m: m["files"][0].update(path="../escape.png"),
        lambda m: m.update(
            input_files=[{"key": "i", "index": None, "source": "data URI", "status": "archived"}]
        ),
        lambda m: m.update(
            input_files=[
                {
                    "key": "i",
                    "index": None,
                    "source": "https://x/y",
                    "status": "reference",
                    "path": "a/b/inputs/i.png",
                }
            ]
        ),
        lambda m: m.update(schema_version=3),
        lambda m: m.update(retention={"deletes_at": "2026-12-01T11:00:00Z"}),
    ],
)
def test_the_schema_rejects_broken_manifests(change):
    """Missing version-2 fields, bad digests, signed URLs, escaping paths, an archived input
    without its file, a reference with one, unknown versions: each one fails."""
    manifest = {**copy.deepcopy(V1), "schema_version": 2, "input_files": [], "logs": None}
    validate_manifest(manifest)
    change(manifest)
    with pytest.raises(jsonschema.ValidationError):
        validate_manifest(manifest)


def test_every_field_is_documented():
    """docs/manifest.md names each property of the schema and of its nested objects."""
    text = (ROOT / "docs" / "manifest.md").read_text()
    schema = manifest_schema()
    names = set(schema["properties"])
    for name in ("file", "input_file", "logs", "retention"):
        names |= set(schema["$defs"][name]["properties"])
    missing = sorted(n for n in names if not re.search(rf"`{re.escape(n)}`", text))
    assert not missing, f"docs/manifest.md does not document {missing}"
    assert set(Manifest.model_fields) <= set(schema["properties"])


def test_a_manifest_that_breaks_the_schema_fails_the_test_hook(tmp_path: Path):
    """The conftest hook is not vacuous: a bad manifest in a test's tmp_path is reported."""
    bad = tmp_path / "x" / "manifest.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({**V1, "status": "weird"}))
    with pytest.raises(AssertionError, match="breaks manifest.schema.json"):
        validate_manifests_under(tmp_path)
    bad.unlink()
