"""Write staged files and their manifest into the archive, atomically, manifest last.

Staged files are the outputs, the input files (`inputs/<key>.<ext>`, see `inputfiles`) and
`logs.txt`: all three go the same way below, and the manifest records each with its sha256.

Storage only: the prediction handed in is already final (see `pipeline.download_step`), and the
caller holds the prediction's lock, so nobody else writes this prediction's archive meanwhile.

Hard link or copy? On a local archive on the staging's device every file is hard-linked (no
copy of possibly gigabytes), and that is safe because staged files are immutable: each download
attempt writes a temp file of its own, created exclusively, fsynced, made read-only and renamed
into staging; nothing in the archiver ever opens a staged (or archived) path for writing, so a
later attempt can only replace a name, never the bytes the archive's link points to. Every file
is verified against what was measured while downloading before the manifest is written, and
staging is dropped afterwards, leaving the archive the only link.

Verification of a hard link is by identity: the archived name must be the very inode whose
bytes were hashed (and fsynced) while downloading, with the size and modification time it had
then (`StagedFile.identity`); that proves its bytes are the hashed ones without reading them
again. Anything else (a copy to another device or store, an inline output, a staging whose
identity is unknown, `read_back=True`) is checked by size and, where reading is cheap or asked
for, by sha256 read back.

Durability, in order: each staged file's bytes were fsynced before it got its staged name;
its archive name is linked (or written and fsynced) next; the directory holding the new names
is fsynced once, after all of them and before the manifest; the manifest is written to a temp
name, fsynced, renamed, and its directory fsynced. A crash before the manifest's rename leaves
no manifest, so the prediction is not archived and the rerun archives it again from staging.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from .download import Staged
from .errors import ConfigurationError
from .manifest import (
    INPUTS_DIRECTORY,
    LOGS_NAME,
    MANIFEST_NAME,
    SCHEMA_VERSION,
    ArchivedFile,
    InputFile,
    LogsFile,
    Manifest,
    Retention,
)
from .outputs import replace_files
from .prediction import Prediction
from .staging import StagedInput
from .storage import (
    Destination,
    put_file_atomic,
    remove,
    sync_directory,
    verify_stored,
    write_bytes_atomic,
)


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
    parents: set[str] = set()

    def put(name: str, size: int, sha256: str, identity: tuple[int, int, int, int] | None) -> str:
        """Put one staged file at `<directory>/<name>` and verify it; its path in dest.

        A hard link when staging sits on the same local device (no copy; safe because staged
        files are immutable, see the module docstring); staging stays whole until the manifest
        is written, so a failed archive can always be retried from it. Staged bytes are fsynced
        before they get their staged name: no second fsync. The new names are made durable
        together, below, before the manifest."""
        relative = f"{directory}/{name}"
        target = dest.path(relative)
        put_file_atomic(
            dest,
            Path(staged.directory) / name,
            target,
            part_size=part_size,
            link=True,
            source_synced=True,
            sync_dir=False,
        )
        parents.add(posixpath.dirname(target))
        verify_stored(
            dest, target, size=size, sha256=sha256, read_back=read_back, identity=identity
        )
        return relative

    for item in staged.files:
        relative = put(item.name, item.size, item.sha256, item.identity)
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
    input_files = [_input_file(given, put) for given in staged.inputs]
    logs = None
    if staged.logs is not None:
        staged_logs = staged.logs
        path = put(LOGS_NAME, staged_logs.size, staged_logs.sha256, staged_logs.identity)
        logs = LogsFile(path=path, size=staged_logs.size, sha256=staged_logs.sha256)
    summary = prediction.summary()
    archived_at = datetime.now(UTC)
    manifest = Manifest(
        schema_version=SCHEMA_VERSION,
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
        web_url=prediction.urls.get("web"),
        output=replace_files(prediction.output, {f.pointer: f.path for f in files}),
        files=files,
        input_files=input_files,
        logs=logs,
        cache_key=cache_key,
        directory=directory,
        archived_at=archived_at,
        retention=Retention.of(prediction.source, prediction.created_at, archived_at),
    )
    for parent in sorted(parents):
        sync_directory(dest, parent)
    remove_stray_temps(dest, directory, keep={f.name for f in files})
    if staged.inputs:
        remove_stray_temps(dest, f"{directory}/{INPUTS_DIRECTORY}", keep=set())
    write_bytes_atomic(dest, dest.path(f"{directory}/{MANIFEST_NAME}"), manifest.to_json())
    from .catalog.journal import note

    note(dest, directory)  # object stores: the catalog's journal finds it without a listing
    return manifest


def _input_file(given: StagedInput, put: Callable[..., str]) -> InputFile:
    """The manifest's record of one input, its file put in place first if it was staged."""
    path = None
    if given.status == "archived" and given.name is not None:
        path = put(given.name, given.size, given.sha256, given.identity)
    return InputFile(**given.model_dump(exclude={"name", "identity"}), path=path)


def is_temp_name(name: str) -> bool:
    """A temp sibling of an atomic write (`.<name>.tmp-<random>`), never a real output name."""
    return name.startswith(".") and ".tmp-" in name


def remove_stray_temps(dest: Destination, directory: str, *, keep: set[str]) -> None:
    """Remove temp files an interrupted writer left in a prediction's directory (best effort),
    never a name in `keep` (the outputs; safe names never start with a dot anyway).

    Only safe while holding the prediction's lock: no writer of ours is at work there. Object
    stores whose uploads appear whole (S3, GCS, Azure) write no temp names: no listing is spent
    there."""
    if not dest.backend.writes_temp_names:
        return
    with contextlib.suppress(Exception):
        for name in dest.backend.list_names(dest.path(directory)):
            if is_temp_name(name) and name not in keep:
                remove(dest, dest.path(directory, name))
