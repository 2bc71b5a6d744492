"""Storage options: parsed once where they enter, with one rule for which of them are secret.

Options reach the archiver as text (`--storage-option K=V`, a flow parameter) or JSON
(`ARCHIVER_STORAGE_OPTIONS`, a credentials block). `StorageOptions.parse` turns any of these into
fsspec keyword arguments once: dotted keys nest (`client_kwargs.region_name=x`), strings that
spell booleans, None, numbers or JSON objects/arrays become those, except for text options
(secrets, names, URLs), which stay exactly as given: a secret may look like a number. Parsing
is idempotent, so options that travel on (through the environment, say) parse the same again.

`is_secret(name)` is the one rule deciding which options are secret: parsing registers their
values with `errors.register_secret` (so `redact` scrubs them from every message), and the repr
of a `StorageOptions` masks them. `split_secret` divides options as given into the ones that may
be shown (a flow parameter, which Prefect stores) and the ones that hold a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from archiver import errors

__all__ = ["StorageOptions", "is_secret", "is_text", "refuse_secrets", "split_secret"]

# Words of an option name that make it secret: its value never reaches a message.
SECRET_WORDS = frozenset(
    {"secret", "password", "passwd", "passphrase", "token", "key", "credential", "credentials"}
)
SECRET_NAMES = frozenset({"connection_string"})  # Azure: holds the account key
# Words of an option name whose value is text even when it looks like a number or a boolean.
TEXT_WORDS = frozenset(
    {"url", "endpoint", "profile", "region", "user", "username", "project", "id", "name", "host"}
)
_WORD_SPLIT = re.compile(r"[^a-z0-9]+")
_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(?=[eE]))([eE][+-]?\d+)?")


def _words(name: str) -> tuple[str, set[str]]:
    """The leaf of a dotted option name, lowercased, and the words in it."""
    leaf = str(name).rsplit(".", 1)[-1].lower()
    return leaf, set(_WORD_SPLIT.split(leaf))


def is_secret(name: str) -> bool:
    """Whether the option called `name` (dotted names: its last part) holds a secret."""
    leaf, words = _words(name)
    return leaf in SECRET_NAMES or not SECRET_WORDS.isdisjoint(words)


def is_text(name: str) -> bool:
    """Whether the option's string value is kept verbatim: secrets, names, URLs, regions."""
    return is_secret(name) or not TEXT_WORDS.isdisjoint(_words(name)[1])


def split_secret(raw: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`raw` options, as given, in two: (public, secret). An option is secret when its name is
    (`is_secret`) or its value holds a secret (`client_kwargs={"aws_secret_access_key": ...}`).
    Raises errors.ConfigurationError on a malformed option."""
    public: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for name, value in raw.items():
        holds = is_secret(name) or any(StorageOptions.parse({name: value}).secret_values())
        (secret if holds else public)[name] = value
    return public, secret


# gcsfs's `token` values that name a way to find credentials, not a credential.
TOKEN_METHODS = frozenset({"anon", "google_default", "cache", "cloud", "browser"})


def refuse_secrets(raw: Mapping[str, Any] | None, *, setting: str) -> None:
    """Raise errors.ConfigurationError, naming the first option of `raw` that holds a secret
    (never its value), when `raw` is a place that is stored and shown (a flow parameter)."""
    public, secret = split_secret(raw or {})
    for name, value in secret.items():
        if str(name).rsplit(".", 1)[-1] == "token" and value in TOKEN_METHODS:
            continue  # gcsfs: `token=anon` is a choice, not a credential
        raise errors.ConfigurationError(
            f"{setting}: the storage option {name} holds a secret, and Prefect stores and "
            "shows this parameter; give credentials in the worker's environment "
            "(ARCHIVER_STORAGE_OPTIONS, AZURE_STORAGE_*, GOOGLE_APPLICATION_CREDENTIALS, "
            "AWS_*) or as a CLI --storage-option"
        )


class StorageOptions(Mapping[str, Any]):
    """fsspec keyword arguments, parsed from user input once; secrets masked in the repr."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        """Wrap already-parsed options; use `StorageOptions.parse` for user input."""
        self._data: dict[str, Any] = _copy(dict(data or {}))

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> StorageOptions:
        """Parse options from user input (a StorageOptions is returned as it is).

        Registers every secret value with `errors.register_secret` before anything else can
        print it. Raises errors.ConfigurationError on a malformed option.
        """
        if isinstance(raw, StorageOptions):
            return raw
        result: dict[str, Any] = {}
        for raw_key, value in (raw or {}).items():
            *parents, leaf = str(raw_key).split(".")
            target = result
            for parent in parents:
                nested = target.setdefault(parent, {})
                if not isinstance(nested, dict):
                    raise errors.ConfigurationError(
                        f"storage option {raw_key}: {parent} is not a mapping"
                    )
                target = nested
            target[leaf] = _copy(value) if is_text(leaf) else _coerce(str(raw_key), value)
        options = cls()
        options._data = result
        for secret in options.secret_values():
            errors.register_secret(secret)
        return options

    def __getitem__(self, name: str) -> Any:
        return self._data[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"StorageOptions({_masked(self._data)!r})"

    def to_dict(self) -> dict[str, Any]:
        """A deep copy as a plain (JSON-safe if the input was) dict, secrets in clear."""
        return _copy(self._data)

    def secret_values(self) -> Iterator[str]:
        """Every string held by a secret option, at any depth (a secret mapping: all of it)."""
        yield from _secret_strings(self._data, inside_secret=False)


def _coerce(key: str, value: Any) -> Any:
    """One non-text option value: booleans, None, numbers and JSON objects/arrays from strings."""
    if not isinstance(value, str):
        return _copy(value)
    text = value.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise errors.ConfigurationError(f"storage option {key}: invalid JSON: {exc}") from exc
    return value


def _copy(value: Any) -> Any:
    """A copy of nested dicts and lists, so parsed options never share state with their input."""
    if isinstance(value, Mapping):
        return {str(k): _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def _secret_strings(value: Any, *, inside_secret: bool) -> Iterator[str]:
    """The strings under `value` that sit below a secret option name."""
    if isinstance(value, Mapping):
        for name, item in value.items():
            yield from _secret_strings(item, inside_secret=inside_secret or is_secret(str(name)))
    elif isinstance(value, list):
        for item in value:
            yield from _secret_strings(item, inside_secret=inside_secret)
    elif inside_secret and isinstance(value, str):
        yield value


def _masked(value: Any, *, inside_secret: bool = False) -> Any:
    """`value` with every secret replaced by "***", for display."""
    if isinstance(value, Mapping):
        return {
            name: _masked(item, inside_secret=inside_secret or is_secret(str(name)))
            for name, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item, inside_secret=inside_secret) for item in value]
    return "***" if inside_secret and value is not None else value
