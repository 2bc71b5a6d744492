"""Every setting of the archiver, described, bounded and read from the environment in one place.

Replicate's own variables keep their names (`REPLICATE_API_TOKEN`, `REPLICATE_BASE_URL`,
`REPLICATE_DELIVERY_HOSTS`); everything else is `ARCHIVER_<FIELD>`. The configuration
table (docs/configuration.md) is generated from this class (`python -m flows settings`).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from .errors import ConfigurationError

MiB = 2**20


class Settings(BaseSettings):
    """Configuration for one process: a CLI run, a worker's flow run, a benchmark."""

    model_config = SettingsConfigDict(env_prefix="ARCHIVER_", extra="ignore", populate_by_name=True)

    def __init__(self, **values: Any) -> None:
        """Read the environment (and `values`); a bad setting raises `ConfigurationError`, one
        line naming the variable and, unless it may hold a secret, its value."""
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigurationError(_invalid(exc)) from None
        except SettingsError as exc:  # a dict setting that is not JSON
            field = str(exc).rpartition("for field ")[2].partition(" ")[0].strip('"')
            raise ConfigurationError(
                f"invalid setting {env_name(field)}: not a JSON object"
            ) from None

    api_token: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("REPLICATE_API_TOKEN", "ARCHIVER_API_TOKEN"),
        description="Replicate API token. Sent only to the API base URL, never to delivery hosts.",
    )
    token_secret_block: str | None = Field(
        default=None,
        description="Name of a Prefect Secret block holding the token, read by flows when "
        "REPLICATE_API_TOKEN is not set (deployments: keep the token out of job variables).",
    )
    base_url: str = Field(
        default="https://api.replicate.com",
        validation_alias=AliasChoices("REPLICATE_BASE_URL", "ARCHIVER_BASE_URL"),
        description="Replicate API base, without /v1 (the emulator prints its own).",
    )
    delivery_hosts: str = Field(
        default="replicate.delivery,*.replicate.delivery",
        validation_alias=AliasChoices("REPLICATE_DELIVERY_HOSTS", "ARCHIVER_DELIVERY_HOSTS"),
        description="Comma-separated hosts output files may be fetched from (https only; "
        "plain http only for loopback hosts listed explicitly). `*.` matches subdomains.",
    )
    dest: str = Field(
        default="./archive",
        description="Default archive destination: a local path or any fsspec URL (s3://bucket/prefix).",
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options for the destination, as JSON (endpoint_url, key, "
        "secret, region...). Secrets here never reach flow parameters or manifests.",
    )
    aws_credentials_block: str | None = Field(
        default=None,
        description="Name of a Prefect `AwsCredentials` block (prefect-aws, the `aws` extra) whose "
        "key, secret, session token, profile, region and endpoint flows merge into the storage "
        "options in process, under ARCHIVER_STORAGE_OPTIONS (never into flow parameters).",
    )
    cache_url: str | None = Field(
        default=None,
        description="Where cache records live (any fsspec URL). Default: `<dest>/.archiver/cache`, "
        "so every worker writing to the same archive shares one cache.",
    )
    staging_dir: str | None = Field(
        default=None,
        description="Local directory files are downloaded to before archiving. Default: "
        "`<dest>/.archiver/staging` for a local dest, else `~/.cache/replicate-archiver/staging`.",
    )
    catalog_dir: str | None = Field(
        default=None,
        description="Local directory of the catalog `find`, `verify` and `usage` query (a file "
        "derived from the manifests; deleting it loses nothing). Default: `<dest>/.archiver` for "
        "a local dest, else `~/.cache/replicate-archiver/catalog`.",
    )
    catalog_list_interval: float = Field(
        default=900,
        ge=0,
        le=86400,
        description="Object-store archives: seconds between full listings of the archive by "
        "`find`, `verify` and `usage`; in between they read only the journal the archiver "
        "writes beside each new manifest, so a manifest copied in by hand shows up within this "
        "time (0: list every time; 20k keys take seconds). Local archives always look.",
    )
    prices: str | None = Field(
        default=None,
        description="TOML price table for `usage` cost estimates (per model: per_second, "
        "per_output, per_prediction in USD; see docs/archive.md). Unset: no costs.",
    )
    path_template: str = Field(
        default="{owner}/{name}/{yyyy}/{mm}/{dd}/{prediction_id}",
        description="Directory of a prediction inside dest. Fields: owner, name, yyyy, mm, dd, "
        "prediction_id.",
    )
    lock_url: str | None = Field(
        default=None,
        description="redis://host:port/db to serialise same-input runs across machines. "
        "Default: a file lock, which serialises them across processes on one machine.",
    )
    lock_ttl: float = Field(
        default=60,
        ge=3,
        le=3600,
        description="Seconds a Redis lock outlives a worker that died holding it; a live holder "
        "renews it every third of this, however long its create or download takes.",
    )
    wait_seconds: int = Field(
        default=10,
        ge=1,
        le=60,
        description="`Prefer: wait=N` on create (1-60 s); then poll, which also catches files "
        "published before the prediction finishes.",
    )
    poll_interval: float = Field(
        default=0.5, ge=0.01, le=60, description="Seconds between polls while a prediction runs."
    )
    prediction_timeout: float = Field(
        default=3600,
        gt=0,
        le=86400,
        description="Give up waiting for a prediction after this many seconds (it is canceled).",
    )
    create_attempts: int = Field(
        default=6,
        ge=1,
        le=50,
        description="Tries (POSTs) of one create through 429s, connection errors and "
        "lost answers (each looked up before trying again).",
    )
    max_rate_limit_wait: float = Field(
        default=120, ge=0, le=3600, description="Longest single wait honoured after a 429."
    )
    create_rate_per_minute: float = Field(
        default=600,
        gt=0,
        le=1_000_000,
        description="Prediction creates per minute, for all runs sharing a limiter (Replicate "
        "allows 600/min by default). Through a Prefect global concurrency limit when a Prefect "
        "server is configured, else in-process.",
    )
    create_burst: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Creates allowed back to back before the rate applies (Replicate allows "
        "short bursts). Default: one minute's worth, i.e. `create_rate_per_minute`.",
    )
    create_limit_name: str = Field(
        default="replicate-create",
        min_length=1,
        max_length=100,
        description="Name of the Prefect global concurrency limit (with slot decay) that rate-"
        "limits creates across flow runs; created with the two settings above if missing.",
    )
    create_limit_advance: int = Field(
        default=16,
        ge=0,
        le=1000,
        description="Creates a batch sends while its first request for slots of that global "
        "limit is in flight (a busy Prefect server takes 0.1-0.3 s to answer); they are "
        "counted in that request. A batch starting while the limit is full exceeds it by this "
        "many. 0: every create waits for its slot.",
    )
    download_concurrency: int = Field(
        default=4, ge=1, le=64, description="Files of one prediction downloaded at once."
    )
    download_attempts: int = Field(
        default=5,
        ge=1,
        le=50,
        description="Tries (delivery requests) per file, re-fetching the prediction between "
        "them when its URLs expired or a stream broke.",
    )
    chunk_size: int = Field(
        default=1 * MiB, ge=4096, le=64 * MiB, description="Bytes read per chunk while streaming."
    )
    max_data_uri_bytes: int = Field(
        default=8 * MiB,
        ge=1,
        le=64 * MiB,
        description="Largest `data:` URI output decoded and archived as a file (bytes after "
        "decoding); a larger one fails the run naming the output.",
    )
    part_size: int = Field(
        default=8 * MiB,
        ge=5 * MiB,
        le=5 * 1024 * MiB,
        description="Multipart upload part size for object stores (S3 minimum 5 MiB).",
    )
    read_back: bool = Field(
        default=False,
        description="Re-read every archived file from the store and check its sha256 (sizes are "
        "always checked). Costs a full read; off by default.",
    )
    http_timeout: float = Field(
        default=60, gt=0, le=3600, description="Seconds without progress before an HTTP read fails."
    )
    task_retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description="Retries of a whole step (generate, download, archive: Prefect task retries "
        "in flows) after a transient error no request retry handled, i.e. a store outage.",
    )
    task_retry_delay: float = Field(
        default=2,
        ge=0,
        le=600,
        description="First step retry delay in seconds; doubles each retry.",
    )
    api_attempts: int = Field(
        default=4,
        ge=1,
        le=20,
        description="Tries of one API read (a prediction, a list page, a cancel) through 5xx, "
        "429 and connection errors.",
    )
    list_wait_budget: float = Field(
        default=300,
        ge=0,
        le=3600,
        description="Seconds one list page of a sweep may wait between its tries in all, "
        "Retry-After included; past it the sweep stops with one line.",
    )
    wait_failures: int = Field(
        default=8,
        ge=1,
        le=100,
        description="Consecutive failed polls after which waiting for a prediction gives up "
        "(the prediction keeps running; a rerun resumes it).",
    )
    retry_delay: float = Field(
        default=0.5,
        ge=0,
        le=60,
        description="First wait before retrying an API or delivery request, in seconds; doubles "
        "each retry (+-10% jitter) up to ARCHIVER_RETRY_MAX_DELAY.",
    )
    retry_max_delay: float = Field(
        default=30, ge=0, le=600, description="Longest wait between two tries of a request."
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("REPLICATE_WEBHOOK_SECRET", "ARCHIVER_WEBHOOK_SECRET"),
        description="The account's `whsec_` webhook signing secret for the receiver; unset: "
        "fetched once from the API with the token.",
    )
    webhook_max_body: int = Field(
        default=4 * MiB,
        ge=1024,
        le=64 * MiB,
        description="Largest webhook delivery body the receiver reads (bytes); larger: 413.",
    )
    webhook_concurrency: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Predictions the webhook receiver archives at once; later deliveries wait in "
        "its durable inbox, oldest first (also after a restart), and are still answered at once. "
        "16 keeps two cores busy without slowing the answers (docs/webhooks.md).",
    )
    webhook_attempts: int = Field(
        default=5,
        ge=1,
        le=50,
        description="Archive attempts per accepted webhook delivery (e.g. a prediction the API "
        "does not know yet), ARCHIVER_RETRY_DELAY apart and doubling; then it is recorded failed "
        "(a permanent error, such as a refused output URL, at once).",
    )
    presign_seconds: int = Field(
        default=0,
        ge=0,
        le=604800,
        description="Lifetime in seconds of presigned download links shown in a run's summary "
        "artifact for files in S3, GCS (credentials that can sign) or Azure Blob (the account "
        "key) (anyone holding a link can download the file until it expires). 0: no links.",
    )
    local_server: bool = Field(
        default=True,
        description="When no PREFECT_API_URL is configured, CLI runs use (and start if needed) "
        "a local Prefect server in the background (`python -m flows server`); off: each run "
        "starts Prefect's temporary server.",
    )
    local_server_port: int | None = Field(
        default=None,
        ge=1024,
        le=65535,
        description="Port of the local Prefect server on 127.0.0.1. Default: the first free "
        "port from one derived from PREFECT_HOME (4300-4899).",
    )
    server_template: bool = Field(
        default=True,
        description="The local server's first start on a PREFECT_HOME with no database copies "
        "one Prefect migrated once per Prefect version (`python -m flows server prepare`, run "
        "by make install; kept in $XDG_CACHE_HOME/replicate-archiver): about 5 s instead of 14. "
        "Off: every new home migrates its own.",
    )
    server_start_timeout: float = Field(
        default=120,
        ge=5,
        le=900,
        description="Seconds the CLI waits for a Prefect server it starts to answer.",
    )
    api_timeout: float = Field(
        default=15,
        ge=1,
        le=300,
        description="Seconds a configured PREFECT_API_URL may take to answer the CLI's check "
        "before anything is created.",
    )

    @field_validator("storage_options", mode="before")
    @classmethod
    def _json_object(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value or "{}")
        if not isinstance(value, dict):
            raise ValueError("storage_options must be a JSON object")
        return value

    @property
    def create_burst_size(self) -> int:
        """`create_burst`, or one minute's worth of creates when unset."""
        return self.create_burst or max(1, int(self.create_rate_per_minute))

    def token(self) -> str | None:
        """The API token in clear, for building the client only."""
        return self.api_token.get_secret_value() if self.api_token else None


#: Fields whose value is never repeated in an error message.
_SECRET_FIELDS = frozenset({"api_token", "webhook_secret", "storage_options"})


def env_name(field: str) -> str:
    """The environment variable a field (or one of its aliases) is read from."""
    info = Settings.model_fields.get(field)
    if info is None:
        return field.upper()
    alias = info.validation_alias
    return str(alias.choices[0]) if isinstance(alias, AliasChoices) else f"ARCHIVER_{field.upper()}"


def _invalid(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        loc = str(error["loc"][0]) if error["loc"] else "?"
        field = next((n for n, f in Settings.model_fields.items() if loc in (n, env_name(n))), loc)
        value = "" if field in _SECRET_FIELDS else f"={error.get('input')!s}"
        problems.append(f"{env_name(field)}{value}: {error['msg']}")
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return f"invalid setting {problems[0]}{more}"


def settings_table() -> str:
    """The settings as a markdown table (docs/configuration.md)."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        env = env_name(name)
        default = field.get_default(call_default_factory=True)
        shown = "" if default is None else f"`{default}`"
        rows.append(f"| `{env}` | {shown} | {field.description} |")
    return "\n".join(rows)
