"""The archive store: where outputs land, through fsspec, atomically.

A `Destination` is an fsspec filesystem plus a root inside it, opened once from the user's URL
(`/abs/dir`, `~/dir`, `s3://bucket/prefix`, `memory://x`, `gs://...` if gcsfs is installed) and
its `StorageOptions`, parsed once where they enter, with one rule (`is_secret`) for secrets.

    options.py    StorageOptions, is_secret: parsing, coercion, secret registration
    location.py   Destination, open_destination: URLs, S3 client limits
    atomic.py     put_file_atomic, write_bytes_atomic, remove: all or nothing per backend;
                  append_local: a durable addition to a small local file
    verify.py     read_bytes, exists, stored_size, verify_stored: reading back and checking
    translate.py  translated: the one boundary every foreign error leaves through

Every foreign exception leaves this package translated once, by `errors.storage_error` inside
`translate.translated`. This package must not import Prefect.
"""

from .atomic import (
    DEFAULT_PART_SIZE,
    append_local,
    put_file_atomic,
    remove,
    sync_directory,
    temp_name,
    write_bytes_atomic,
)
from .location import Destination, open_destination, refuse_credentials
from .options import StorageOptions, is_secret
from .verify import exists, read_bytes, stored_size, verify_stored

__all__ = [
    "DEFAULT_PART_SIZE",
    "append_local",
    "Destination",
    "StorageOptions",
    "exists",
    "is_secret",
    "open_destination",
    "put_file_atomic",
    "sync_directory",
    "temp_name",
    "read_bytes",
    "refuse_credentials",
    "remove",
    "stored_size",
    "verify_stored",
    "write_bytes_atomic",
]
