"""Local staging of a prediction's downloaded files, and what may be trusted of it.

`<staging>/<prediction id>/` holds each output under its final name, written once (an attempt's
own temp file, fsynced, made read-only, renamed) and never changed in place, plus `staged.json`
(written atomically) with every file's size and sha256 as measured while it was received. An
earlier staging is reused only when every file still hashes to what was recorded; otherwise it
is discarded and the files are downloaded again. `download.py` fills it; `archive.py` reads it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from .prediction import Prediction
from .storage import temp_name

STAGED_MARKER = "staged.json"


class StagedFile(BaseModel):
    """A whole output file in local staging, with what we measured while receiving it."""

    name: str
    pointer: str
    size: int
    sha256: str
    content_type: str | None = None
    source_url: str  # without its query string (signatures expire and are not for keeping)
    # The staged file as it was hashed: (st_dev, st_ino, st_size, st_mtime_ns), taken from the
    # descriptor the bytes were written (or re-read) and hashed through, after its fsync. The
    # archive proves a hard link holds exactly these bytes by this identity (see `archive`).
    # Not kept in staged.json: a reused staging is re-hashed, which measures it afresh.
    identity: tuple[int, int, int, int] | None = None


class StagedInput(BaseModel):
    """One file-valued input: staged (`archived`, with what was measured while receiving it),
    `unavailable` (with the reason) or a `reference` (a URL on a host never fetched)."""

    key: str
    index: int | None = None
    name: str | None = None  # relative to the staging directory: "inputs/<key>.<ext>"
    size: int | None = None
    sha256: str | None = None
    content_type: str | None = None
    source: str  # public URL, or "data URI"
    status: Literal["archived", "unavailable", "reference"]
    reason: str | None = None
    identity: tuple[int, int, int, int] | None = None  # as `StagedFile.identity`


class StagedLogs(BaseModel):
    """The prediction's final logs, staged as `logs.txt` like an output file."""

    size: int
    sha256: str
    identity: tuple[int, int, int, int] | None = None


class Staged(BaseModel):
    """All output files of one prediction, staged locally and ready to archive, with its
    input files and (staged by the archive step, from the final state) its logs."""

    prediction: Prediction
    directory: str
    files: list[StagedFile]
    refetches: int = 0
    inputs: list[StagedInput] = []
    logs: StagedLogs | None = None

    def path_of(self, staged: StagedFile | StagedInput) -> Path:
        assert staged.name is not None
        return Path(self.directory) / staged.name


def staging_directory(staging_root: Path, prediction_id: str) -> Path:
    return staging_root / prediction_id


def load_staged(staging_root: Path, prediction: Prediction) -> Staged | None:
    """A complete earlier download of this prediction, if every file still has the size and
    sha256 recorded while it was downloaded. A staging that fails the check is discarded."""
    directory = staging_directory(staging_root, prediction.id)
    try:
        data = json.loads((directory / STAGED_MARKER).read_text())
        staged = Staged.model_validate({**data, "prediction": prediction})
    except (OSError, ValueError):
        return None
    files, inputs = [], []
    for item in staged.files:
        identity = _intact(staged.path_of(item), item.size, item.sha256)
        if identity is None:
            discard_staging(staging_root, prediction.id)
            return None
        files.append(item.model_copy(update={"identity": identity}))
    for given in staged.inputs:
        if given.status == "archived":
            assert given.size is not None and given.sha256 is not None
            identity = _intact(staged.path_of(given), given.size, given.sha256)
            if identity is None:
                discard_staging(staging_root, prediction.id)
                return None
            given = given.model_copy(update={"identity": identity})
        inputs.append(given)
    return staged.model_copy(update={"files": files, "inputs": inputs, "logs": None})


def _intact(path: Path, size: int, sha256: str) -> tuple[int, int, int, int] | None:
    """The identity of the file at `path` if it has exactly the size and sha256 measured while
    it was received (hashed through one descriptor, unchanged while it was read); else None."""
    try:
        if not path.is_file() or path.stat().st_size != size:
            return None
        digest = hashlib.sha256()
        with path.open("rb") as source:
            before = identity_of(os.fstat(source.fileno()))
            while chunk := source.read(2**20):
                digest.update(chunk)
            if identity_of(os.fstat(source.fileno())) != before:
                return None
    except OSError:
        return None
    return before if digest.hexdigest() == sha256 else None


def identity_of(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What tells one file's bytes from any other's, short of reading them: the inode (device
    and number) and its size and modification time (every write changes them)."""
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def write_marker(directory: Path, staged: Staged) -> None:
    """Write `staged.json` all or nothing: a temp file of our own, fsynced, renamed."""
    marker = staged.model_dump(
        mode="json",
        exclude={
            "prediction": True,
            "logs": True,  # staged after the marker, from the final state, every time
            "files": {"__all__": {"identity"}},
            "inputs": {"__all__": {"identity"}},
        },
    )
    temp = temp_path(directory, STAGED_MARKER)
    try:
        with temp.open("x") as out:
            out.write(json.dumps(marker, indent=1))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, directory / STAGED_MARKER)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def temp_path(directory: Path, name: str) -> Path:
    """A hidden name beside `name` that no other attempt, thread or process can share."""
    return directory / temp_name(name)


def discard_staging(staging_root: Path, prediction_id: str) -> None:
    """Remove a prediction's staging once its manifest is written."""
    shutil.rmtree(staging_directory(staging_root, prediction_id), ignore_errors=True)
