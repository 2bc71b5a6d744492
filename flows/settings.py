"""Settings for a flow run: the environment, plus the token from a Prefect Secret block."""

from __future__ import annotations

from pydantic import SecretStr

from archiver.settings import Settings


def flow_settings() -> Settings:
    """`Settings()` from the environment; the token from a Secret block when configured."""
    settings = Settings()
    if settings.api_token is None and settings.token_secret_block:
        from prefect.blocks.system import Secret

        token = Secret.load(settings.token_secret_block, _sync=True).get()
        settings = settings.model_copy(update={"api_token": SecretStr(token)})
    return settings
