"""One module per kind of store, each behind the `Backend` protocol (base.py).

    base.py     Backend: the protocol, and the generic fsspec fallback (temp name, then mv)
    local.py    local disk: temp sibling + fsync + rename, hard links, in-place appends
    memory.py   memory://: the fallback, read back for free
    s3.py       s3://: PUT or multipart upload aborted on failure; S3 error codes
    gcs.py      gs://: one upload session, never finalized on failure (gcsfs, extra [gcs])
    azure.py    az://: staged blocks, committed at the end (adlfs, extra [azure])

`backend_for(protocol)` picks the class once, when a destination is opened; a backend module is
imported only when a URL of its protocol is. Adding a store means adding one module here and its
line in `_MODULES`.
"""

from __future__ import annotations

import importlib

from archiver import errors

from .base import Backend

__all__ = ["Backend", "backend_for"]

# protocol -> module of this package defining BACKEND; anything else: the generic fallback.
_MODULES = {
    None: "local",
    "file": "local",
    "local": "local",
    "memory": "memory",
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
}

# backend module -> the package extra that installs its filesystem
_EXTRAS = {"gcs": "gcs", "azure": "azure", "s3": "aws"}


def backend_for(protocol: str | None) -> type[Backend]:
    """The backend class for a URL's protocol (None: a plain local path)."""
    module = _MODULES.get(protocol)
    if module is None:
        return Backend
    try:
        found: type[Backend] = importlib.import_module(f"{__name__}.{module}").BACKEND
    except ImportError as exc:
        extra = _EXTRAS.get(module, module)
        raise errors.ConfigurationError(
            f"{protocol}:// destinations need {exc.name or 'a missing package'}: "
            f"pip install 'replicate-archiver[{extra}]'"
        ) from exc
    return found
