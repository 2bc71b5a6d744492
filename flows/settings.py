"""Settings for a flow run: the environment, plus secrets from Prefect blocks and this process.

The token may come from a Prefect Secret block, S3 credentials from a prefect-aws
`AwsCredentials` block. Both are read in this process and kept out of flow parameters.

Storage options reach a flow run as values, in two parts (`split_secret` in
archiver/storage/options.py): non-secret ones as the flow's `storage_options` parameter (Prefect
stores it: the UI shows it), secret ones as this process's own options (`use_storage_options`,
how the CLI hands over its secret `--storage-option`s): no flow parameter holds them, nor the
environment of a process this one starts (the webhook receiver's archive process aside).
Later wins: credentials block < ARCHIVER_STORAGE_OPTIONS < this process's < the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr

from archiver.errors import ConfigurationError
from archiver.runtime import check_store_urls
from archiver.settings import Settings
from archiver.storage.location import mask_credentials, refuse_credentials
from archiver.storage.options import refuse_secrets, split_secret

_process_options: dict[str, Any] = {}


def use_storage_options(options: Mapping[str, Any]) -> None:
    """Storage options for every flow run of this process, over ARCHIVER_STORAGE_OPTIONS."""
    _process_options.update(options)


def process_storage_options() -> dict[str, Any]:
    """The options `use_storage_options` gave this process (secrets in clear)."""
    return dict(_process_options)


async def flow_settings() -> Settings:
    """`Settings()` from the environment; the token and S3 credentials from blocks if configured.

    Async: flows call it on their event loop, where Prefect's public block API is `aload`."""
    settings = Settings()
    if settings.api_token is None and settings.token_secret_block:
        from prefect.blocks.system import Secret

        try:
            secret: Secret[str] = await Secret.aload(settings.token_secret_block)
        except ValueError as exc:  # Prefect: "Unable to find block document named ..."
            raise ConfigurationError(
                f"no Secret block {settings.token_secret_block!r} (ARCHIVER_TOKEN_SECRET_BLOCK) "
                "on this Prefect server: store the token with `REPLICATE_API_TOKEN=r8_... "
                "python -m deployments secret`, or set REPLICATE_API_TOKEN for the worker"
            ) from exc
        settings = settings.model_copy(update={"api_token": SecretStr(secret.get())})
    return await with_storage_credentials(settings)


async def with_storage_credentials(settings: Settings | None = None) -> Settings:
    """`settings` (default: from the environment) with the AwsCredentials block's options (if
    one is configured) and this process's options merged into its storage options; no token
    needed (flows that only read the archive use this alone)."""
    settings = settings or Settings()
    block_options: dict[str, Any] = {}
    if settings.aws_credentials_block:
        block_options = await aws_block_storage_options(settings.aws_credentials_block)
    if block_options or _process_options:
        # The flow's own (non-secret) storage_options parameter wins over all in Runtime.build.
        options = {**block_options, **settings.storage_options, **_process_options}
        settings = settings.model_copy(update={"storage_options": options})
    return settings


async def aws_block_storage_options(name: str) -> dict[str, Any]:
    """s3fs storage options from the prefect-aws `AwsCredentials` block called `name`."""
    try:
        from prefect_aws import AwsCredentials
    except ImportError as exc:
        raise ConfigurationError(
            "ARCHIVER_AWS_CREDENTIALS_BLOCK needs prefect-aws: "
            "pip install 'replicate-archiver[aws]'"
        ) from exc
    try:
        block: AwsCredentials = await AwsCredentials.aload(name)
    except ValueError as exc:
        raise ConfigurationError(f"cannot load AwsCredentials block {name!r}: {exc}") from exc
    if block.assume_role_arn:
        raise ConfigurationError(
            f"AwsCredentials block {name!r}: assume_role_arn is not supported for the archive "
            "store; give a key/secret or a profile"
        )
    secret = block.aws_secret_access_key
    candidates: dict[str, Any] = {
        "key": block.aws_access_key_id,
        "secret": secret.get_secret_value() if secret is not None else None,
        "token": block.aws_session_token,
        "profile": block.profile_name,
        "region": block.region_name,
        "endpoint_url": block.aws_client_parameters.endpoint_url,
    }
    return {name: value for name, value in candidates.items() if value}


async def checked_store_urls(settings: Settings, dest: str | None, file: str | None = None) -> None:
    """Refuse user:password@ in `dest` (else ARCHIVER_DEST), ARCHIVER_CACHE_URL or a batch
    `file` before anything is paid. Prefect stored the run's parameters as given (a UI or API
    run): on a refusal they are first rewritten with every URL's userinfo masked."""
    try:
        check_store_urls(settings, dest)
        refuse_credentials(file, setting="file")
    except ConfigurationError:
        await _mask_run_parameters()
        raise


async def checked_storage_options(options: Mapping[str, Any] | None) -> None:
    """Refuse a secret in a flow's `storage_options` parameter (`refuse_secrets`) before
    anything is paid; the run's stored parameters are first rewritten with it masked."""
    try:
        refuse_secrets(options, setting="the flow's storage_options parameter")
    except ConfigurationError:
        await _mask_run_parameters()
        raise


async def _mask_run_parameters() -> None:
    """The current flow run's stored parameters, each string's URL userinfo masked and every
    secret of its `storage_options` replaced by "***"."""
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    parameters = {
        name: mask_credentials(value) if isinstance(value, str) else value
        for name, value in (context.flow_run.parameters or {}).items()
    }
    given = parameters.get("storage_options")
    if isinstance(given, Mapping):
        public, secret = split_secret(given)
        parameters["storage_options"] = {**public, **dict.fromkeys(secret, "***")}
    async with get_client() as client:
        await client.update_flow_run(context.flow_run.id, parameters=parameters)
