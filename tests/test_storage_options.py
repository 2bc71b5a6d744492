"""Storage options: parsed once where they enter, one rule for secrets, redaction follows it."""

from __future__ import annotations

import uuid

import pytest

from archiver import errors
from archiver.inputs import parse_options
from archiver.storage import StorageOptions, is_secret, open_destination

SECRET_NAMES = [
    "key",
    "secret",
    "token",
    "password",
    "session_token",
    "aws_session_token",
    "client_kwargs.aws_secret_access_key",
    "aws_access_key_id",
    "account_key",
    "sas_token",
    "client_secret",
    "connection_string",
    "credentials",
]
PLAIN_NAMES = [
    "region",
    "region_name",
    "endpoint_url",
    "client_kwargs.endpoint_url",
    "profile",
    "anon",
    "connect_timeout",
    "retries",
    "use_ssl",
]


def _value() -> str:
    """A value no other test (or message) contains."""
    return f"v-{uuid.uuid4().hex}"


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names(name):
    """Keys, secrets, tokens, passwords and credentials (dotted: by the last part) are secret."""
    assert is_secret(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_plain_names(name):
    """Regions, endpoints, profiles and client limits are not secret."""
    assert not is_secret(name)


@pytest.mark.parametrize("entry", ["cli", "settings"])
def test_redaction_follows_the_one_rule(entry):
    """Every option is_secret calls secret is scrubbed from messages, the others are kept, whether
    the options came from --storage-option or from settings/flow parameters."""
    values = {name: _value() for name in SECRET_NAMES + PLAIN_NAMES}
    if entry == "cli":
        parse_options([f"{name}={value}" for name, value in values.items()])
    else:
        StorageOptions.parse(values)
    message = str(errors.ArchiverError(" ".join(values.values())))
    for name, value in values.items():
        assert (value in message) != is_secret(name), name


def test_secrets_nested_in_json_are_registered_and_masked():
    """A secret inside a JSON object option (any depth) is registered; the repr masks them all."""
    nested, whole, region = _value(), _value(), _value()
    options = StorageOptions.parse(
        {
            "client_kwargs": {"aws_secret_access_key": nested, "region_name": region},
            "token": {"type": "service_account", "private_key": whole},
        }
    )
    assert sorted(options.secret_values()) == sorted([nested, "service_account", whole])
    assert errors.redact(f"{nested} {whole} {region}") == f"*** *** {region}"
    shown = repr(options)
    assert nested not in shown and whole not in shown and region in shown
    assert options["client_kwargs"]["aws_secret_access_key"] == nested  # in clear for fsspec


def test_parse_coerces_once_and_keeps_text_verbatim():
    """Strings become booleans, numbers and JSON; text options stay as given; dotted keys nest."""
    options = StorageOptions.parse(
        {
            "secret": "0123",
            "key": "007",
            "region": "true",
            "endpoint_url": "http://127.0.0.1:9000",
            "anon": "False",
            "connect_timeout": "7",
            "read_timeout": "1.5",
            "scale": "1e3",
            "skip": "null",
            "config_kwargs.retries": '{"max_attempts": 0}',
            "client_kwargs.region_name": "12",
            "plain": "text",
        }
    )
    assert options.to_dict() == {
        "secret": "0123",
        "key": "007",
        "region": "true",
        "endpoint_url": "http://127.0.0.1:9000",
        "anon": False,
        "connect_timeout": 7,
        "read_timeout": 1.5,
        "scale": 1000.0,
        "skip": None,
        "config_kwargs": {"retries": {"max_attempts": 0}},
        "client_kwargs": {"region_name": "12"},
        "plain": "text",
    }
    assert StorageOptions.parse(options) is options  # parsed options are not parsed again
    assert StorageOptions.parse(options.to_dict()) == options  # a re-parse changes nothing


def test_parse_errors_are_configuration_errors():
    """Invalid JSON and a dotted key under a non-mapping are one-line ConfigurationErrors."""
    with pytest.raises(errors.ConfigurationError, match="invalid JSON"):
        StorageOptions.parse({"config_kwargs": "{nope"})
    with pytest.raises(errors.ConfigurationError, match="not a mapping"):
        StorageOptions.parse({"anon": "true", "anon.x": "1"})
    with pytest.raises(errors.ConfigurationError, match="KEY=VALUE"):
        parse_options(["novalue"])


def test_parsed_options_do_not_alias_their_input():
    """Parsing copies nested mappings: opening a store never changes the caller's options."""
    raw = {"client_kwargs": {"region_name": "eu-west-3"}, "client_kwargs.verify": "false"}
    options = StorageOptions.parse(raw)
    assert raw == {"client_kwargs": {"region_name": "eu-west-3"}, "client_kwargs.verify": "false"}
    assert options["client_kwargs"] == {"region_name": "eu-west-3", "verify": False}
    open_destination("memory://options-test", options)
    assert options["client_kwargs"] == {"region_name": "eu-west-3", "verify": False}
