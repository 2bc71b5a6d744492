"""The archive store: where outputs land, through fsspec, atomically.

A `Destination` is an fsspec filesystem plus a root inside it and its backend, opened once from
the user's URL (`/abs/dir`, `~/dir`, `s3://bucket/prefix`, `gs://bucket/prefix`,
`az://container/prefix`, `memory://x`, any other fsspec URL) and its `StorageOptions`, parsed
once where they enter, with one rule (`is_secret`) for secrets.

    options.py    StorageOptions, is_secret: parsing, coercion, secret registration
    location.py   Destination, open_destination: the URL's backend chosen once
    backends/     one module per store (local, memory, s3, gcs, azure, the fsspec fallback):
                  atomic writes, reads, signed links, error translation
    atomic.py     put_file_atomic, write_bytes_atomic, create_empty, remove, append_local:
                  the entry points
    verify.py     read_bytes, exists, stored_size, verify_stored: reading back and checking
    streams.py    bounded reads of a source, temp names
    translate.py  translated: the one boundary every foreign error leaves through

Every foreign exception leaves this package translated once, by the destination's backend
(`Backend.translate`, falling back to `errors.storage_error`) inside `translate.translated`.
This package must not import Prefect.
"""

from .atomic import (
    DEFAULT_PART_SIZE,
    append_local,
    create_empty,
    put_file_atomic,
    remove,
    sync_directory,
    temp_name,
    write_bytes_atomic,
)
from .location import Destination, open_destination, refuse_credentials
from .options import StorageOptions, is_secret
from .translate import translated
from .verify import exists, read_bytes, stored_size, verify_stored

__all__ = [
    "DEFAULT_PART_SIZE",
    "append_local",
    "create_empty",
    "Destination",
    "StorageOptions",
    "exists",
    "is_secret",
    "open_destination",
    "put_file_atomic",
    "sync_directory",
    "temp_name",
    "translated",
    "read_bytes",
    "refuse_credentials",
    "remove",
    "stored_size",
    "verify_stored",
    "write_bytes_atomic",
]
