"""The storage boundary: every foreign error leaves the package through `translated`, once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from archiver import errors

__all__ = ["translated"]


@contextmanager
def translated(what: str, *, missing_ok: bool = False) -> Iterator[None]:
    """Raise any foreign exception of the block as `errors.storage_error(exc, what)`.

    With `missing_ok`, a FileNotFoundError for the path is swallowed and the code after the
    `with` runs (a missing file is an answer, not an error); a missing S3 bucket, which s3fs
    also reports as FileNotFoundError, is still translated (a StorageError).
    """
    try:
        yield
    except errors.ArchiverError:
        raise
    except FileNotFoundError as exc:
        if missing_ok and errors.storage_code(exc) != "NoSuchBucket":
            return
        raise errors.storage_error(exc, what) from exc
    except Exception as exc:
        raise errors.storage_error(exc, what) from exc
