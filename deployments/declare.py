"""The deployments of `prefect.yaml` as Python objects: served without a work pool, or listed.

`prefect.yaml` is the one declaration. `prefect deploy --all` reads it for work pools and
workers; `serve()` reads the same names, entrypoints, parameters, schedules and limits and hands
them to `prefect.serve` (one process that both schedules and runs: the single-machine option).
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr

PROJECT_DIR = Path(__file__).resolve().parent.parent
PREFECT_YAML = PROJECT_DIR / "prefect.yaml"
TOKEN_BLOCK_VARIABLE = "ARCHIVER_TOKEN_SECRET_BLOCK"


@dataclass(frozen=True)
class DeploymentSpec:
    """One entry of `deployments:` in prefect.yaml (the fields this project uses)."""

    name: str
    entrypoint: str
    description: str | None = None
    version: str | None = None
    tags: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    schedules: list[dict[str, Any]] = field(default_factory=list)
    enforce_parameter_schema: bool = True
    concurrency_limit: int | dict[str, Any] | None = None
    work_pool: str | None = None
    work_queue: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, entry: dict[str, Any]) -> DeploymentSpec:
        pool = entry.get("work_pool") or {}
        job_variables = pool.get("job_variables") or {}
        return cls(
            name=entry["name"],
            entrypoint=entry["entrypoint"],
            description=entry.get("description"),
            version=str(entry["version"]) if entry.get("version") is not None else None,
            tags=list(entry.get("tags") or []),
            parameters=dict(entry.get("parameters") or {}),
            schedules=list(entry.get("schedules") or []),
            enforce_parameter_schema=entry.get("enforce_parameter_schema", True) is not False,
            concurrency_limit=entry.get("concurrency_limit"),
            work_pool=pool.get("name"),
            work_queue=pool.get("work_queue_name"),
            env={k: str(v) for k, v in (job_variables.get("env") or {}).items()},
        )

    @property
    def module(self) -> str:
        """`flows.batch.archive_batch` (or `flows/batch.py:archive_batch`) -> `flows.batch`."""
        if ":" in self.entrypoint:
            return self.entrypoint.split(":", 1)[0].removesuffix(".py").replace("/", ".")
        return self.entrypoint.rsplit(".", 1)[0]

    @property
    def function(self) -> str:
        return self.entrypoint.rsplit(":" if ":" in self.entrypoint else ".", 1)[1]

    def load_flow(self) -> Any:
        """The flow object, imported from the installed package (any working directory)."""
        return getattr(importlib.import_module(self.module), self.function)

    def schedule_objects(self) -> list[dict[str, Any]]:
        """The schedules as `to_deployment(schedules=...)` takes them."""
        from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

        result = []
        for entry in self.schedules:
            if entry.get("cron"):
                kwargs = {"cron": entry["cron"]}
                if entry.get("timezone"):
                    kwargs["timezone"] = entry["timezone"]
                schedule: Any = CronSchedule(**kwargs)
            elif entry.get("interval"):
                schedule = IntervalSchedule(interval=timedelta(seconds=float(entry["interval"])))
            else:
                raise ValueError(f"{self.name}: serve takes cron and interval schedules: {entry}")
            item: dict[str, Any] = {"schedule": schedule, "active": entry.get("active", True)}
            if entry.get("parameters"):
                item["parameters"] = entry["parameters"]
            result.append(item)
        return result

    def to_runner_deployment(self) -> Any:
        """A `RunnerDeployment` for `prefect.serve` with this spec's settings."""
        from prefect.client.schemas.objects import ConcurrencyLimitConfig
        from prefect.types.entrypoint import EntrypointType

        limit: int | ConcurrencyLimitConfig | None = (
            ConcurrencyLimitConfig(**self.concurrency_limit)
            if isinstance(self.concurrency_limit, dict)
            else self.concurrency_limit
        )
        return self.load_flow().to_deployment(
            name=self.name,
            description=self.description,
            version=self.version,
            tags=self.tags,
            parameters=self.parameters,
            schedules=self.schedule_objects(),
            enforce_parameter_schema=self.enforce_parameter_schema,
            concurrency_limit=limit,
            # Like prefect.yaml: the module path, importable from any working directory.
            entrypoint_type=EntrypointType.MODULE_PATH,
        )


def load_specs(path: Path = PREFECT_YAML) -> list[DeploymentSpec]:
    """Every deployment declared in `path`."""
    config = yaml.safe_load(path.read_text()) or {}
    specs = [DeploymentSpec.from_yaml(entry) for entry in config.get("deployments") or []]
    for spec in specs:
        _refuse_credentials(spec)
    return specs


def _refuse_credentials(spec: DeploymentSpec) -> None:
    """No user:password@ in a URL among a deployment's (or its schedules') parameters."""
    from archiver.storage.location import refuse_credentials

    for parameters in [spec.parameters, *(s.get("parameters") or {} for s in spec.schedules)]:
        for key, value in parameters.items():
            if isinstance(value, str):
                refuse_credentials(value, setting=f"deployment {spec.name} parameter {key}")


def token_block_names(specs: list[DeploymentSpec] | None = None) -> list[str]:
    """The Secret block names the deployments point at (normally one)."""
    specs = specs if specs is not None else load_specs()
    return sorted({s.env[TOKEN_BLOCK_VARIABLE] for s in specs if TOKEN_BLOCK_VARIABLE in s.env})


def create_token_secret(name: str | None = None) -> list[str]:
    """Store REPLICATE_API_TOKEN (from the environment) in the deployments' Secret block(s).

    Returns the block names written. The token is read from the environment and written to the
    Prefect API only; it is never printed.
    """
    from prefect.blocks.system import Secret

    from archiver.errors import ConfigurationError
    from archiver.settings import Settings

    token = Settings().token()
    if not token:
        raise ConfigurationError("REPLICATE_API_TOKEN is not set: nothing to store")
    names = [name] if name else token_block_names()
    if not names:
        raise ConfigurationError(f"no deployment sets {TOKEN_BLOCK_VARIABLE}; pass --name")
    _check_prefect_api(Settings().api_timeout)
    for block_name in names:
        Secret(value=SecretStr(token)).save(block_name, overwrite=True)
    return names


def _check_prefect_api(timeout: float) -> None:
    """The block goes to the server the workers use: PREFECT_API_URL must name one that
    answers (never a throwaway temporary server); else one ConfigurationError line."""
    from archiver.errors import ConfigurationError
    from cli.prefect_api import check_api, configured_api_url

    url = configured_api_url()
    if url is None:
        raise ConfigurationError(
            "PREFECT_API_URL is not set: the Secret block must be stored on the Prefect server "
            "your workers use; export PREFECT_API_URL=http://HOST:4200/api first"
        )
    check_api(url, timeout)


def serve(
    names: list[str] | None = None, *, limit: int | None = None, replace: bool = False
) -> None:
    """Serve the deployments (all, or those named) from this process until interrupted.

    Runs the flows in subprocesses of this process with its environment; the deployments'
    job-variable env (the Secret block name) is applied where the environment does not set it.
    Serving and work-pool workers are alternatives: a deployment of the same name already
    deployed to a work pool on this server is an error, or is deleted first with `replace`.
    """
    from prefect import serve as prefect_serve

    specs = [s for s in load_specs() if not names or s.name in names]
    if names and len(specs) != len(set(names)):
        known = ", ".join(s.name for s in load_specs())
        raise SystemExit(f"unknown deployment name in {names}; declared: {known}")
    for spec in specs:
        for key, value in spec.env.items():
            os.environ.setdefault(key, value)
    runner_deployments = [spec.to_runner_deployment() for spec in specs]
    _clear_pool_deployments(runner_deployments, replace=replace)
    prefect_serve(*runner_deployments, limit=limit)


def _clear_pool_deployments(runner_deployments: list[Any], *, replace: bool) -> None:
    """Refuse (or, with `replace`, delete) same-named deployments bound to a work pool: the
    server would keep their pull steps and storage, and served runs could not load."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for deployment in runner_deployments:
            full_name = f"{deployment.flow_name}/{deployment.name}"
            try:
                existing = client.read_deployment_by_name(full_name)
            except ObjectNotFound:
                continue
            if not existing.work_pool_name:
                continue
            if not replace:
                raise SystemExit(
                    f"{full_name} is deployed to work pool {existing.work_pool_name!r} on this "
                    "server: run workers for it (make worker), or serve with --replace to "
                    "delete that deployment and serve it from here instead"
                )
            client.delete_deployment(existing.id)
