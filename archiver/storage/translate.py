"""The storage boundary: every foreign error leaves the package through `translated`, once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from archiver import errors

from .backends import Backend

__all__ = ["translated"]


@contextmanager
def translated(backend: Backend, what: str, *, missing_ok: bool = False) -> Iterator[None]:
    """Raise any foreign exception of the block as `backend.translate(exc, what)`.

    With `missing_ok`, a FileNotFoundError for the path is swallowed and the code after the
    `with` runs (a missing file is an answer, not an error), unless the backend says it means
    a missing bucket or container (still translated: an error).
    """
    try:
        yield
    except errors.ArchiverError:
        raise
    except FileNotFoundError as exc:
        if missing_ok and backend.is_absent(exc):
            return
        raise backend.translate(exc, what) from exc
    except Exception as exc:
        raise backend.translate(exc, what) from exc
