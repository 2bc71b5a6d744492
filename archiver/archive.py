"""Write staged files and their manifest into the archive, atomically, manifest last."""

from __future__ import annotations

from datetime import UTC, datetime

from .download import Staged
from .errors import ConfigurationError
from .manifest import MANIFEST_NAME, ArchivedFile, Manifest
from .outputs import replace_files
from .prediction import Prediction
from .storage import Destination, put_file_atomic, verify_stored, write_bytes_atomic


def prediction_directory(template: str, prediction: Prediction) -> str:
    """The prediction's directory inside dest, from the path template."""
    owner, _, name = (prediction.model or "unknown/unknown").partition("/")
    when = prediction.created_at or datetime.now(UTC)
    fields = {
        "owner": owner,
        "name": name or "unknown",
        "yyyy": f"{when.year:04d}",
        "mm": f"{when.month:02d}",
        "dd": f"{when.day:02d}",
        "prediction_id": prediction.id,
    }
    try:
        directory = template.format(**fields).strip("/")
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigurationError(f"path template {template!r} is invalid: {exc}") from exc
    if not directory or any(part in ("", ".", "..") for part in directory.split("/")):
        raise ConfigurationError(f"path template {template!r} gives an unsafe path {directory!r}")
    return directory


def archive_staged(
    staged: Staged,
    dest: Destination,
    *,
    cache_key: str,
    template: str,
    part_size: int,
    read_back: bool = False,
) -> Manifest:
    """Put every staged file under its final path, verify it, then write the manifest."""
    prediction = staged.prediction
    directory = prediction_directory(template, prediction)
    files = []
    for item in staged.files:
        relative = f"{directory}/{item.name}"
        target = dest.path(relative)
        # A hard link when staging sits on the same local device (no copy); staging stays whole
        # until the manifest is written, so a failed archive can always be retried from it.
        put_file_atomic(dest, staged.path_of(item), target, part_size=part_size, link=True)
        verify_stored(dest, target, size=item.size, sha256=item.sha256, read_back=read_back)
        files.append(
            ArchivedFile(
                name=item.name,
                path=relative,
                size=item.size,
                sha256=item.sha256,
                content_type=item.content_type,
                source_url=item.source_url,
                pointer=item.pointer,
            )
        )
    summary = prediction.summary()
    manifest = Manifest(
        prediction_id=prediction.id,
        model=prediction.model,
        version=summary.get("version"),
        deployment=prediction.deployment,
        status=prediction.status,
        input=prediction.input,
        created_at=prediction.created_at,
        started_at=prediction.started_at,
        completed_at=prediction.completed_at,
        metrics=prediction.metrics,
        output=replace_files(prediction.output, {f.pointer: f.path for f in files}),
        files=files,
        cache_key=cache_key,
        directory=directory,
    )
    write_bytes_atomic(dest, dest.path(f"{directory}/{MANIFEST_NAME}"), manifest.to_json())
    return manifest
