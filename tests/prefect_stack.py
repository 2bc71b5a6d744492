"""A real Prefect deployment stack for tests: `prefect server start`, the process work pool,
the Secret block, `prefect deploy --all`, and `prefect worker start` processes, all on loopback.

It runs the commands docs/deployments.md gives (which the Makefile's `server`, `pool`,
`secret`, `deploy` and `worker` targets shorten), with a private PREFECT_HOME per process, on
free ports; workers run from directories outside the project. Workers
get the Replicate emulator's address and a shared archive through their environment; the token
only through the Secret block. Redis (worker locks) and PostgreSQL (the server's database) are
used when this machine runs them.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.prefect_server import PREFECT, ROOT, PrefectServer, Process, tail, wait_for

POOL = "archiver"  # prefect.yaml's work pool (`make pool`)
TOKEN = "r8_deployments_secret_block_token_0123456789"  # stored in the Secret block only
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


# -- services the stack may use ---------------------------------------------------------------


def redis_unavailable(url: str = REDIS_URL) -> str | None:
    """None when Redis answers PING at `url`, else why not."""
    try:
        import redis
    except ImportError:
        return "the redis package is not installed"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001 - any failure means: skip
        return f"Redis is not reachable at {url}: {exc}"
    return None


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_ADMIN_DSN, timeout=3)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def postgres_unavailable() -> str | None:
    """None when PostgreSQL accepts `POSTGRES_ADMIN_DSN`, else why not."""
    import asyncio

    try:
        import asyncpg  # noqa: F401
    except ImportError:
        return "asyncpg is not installed"
    try:
        asyncio.run(_pg("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        return f"PostgreSQL is not reachable at {POSTGRES_ADMIN_DSN}: {exc}"
    return None


@contextlib.contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database for one Prefect server; dropped afterwards. Yields its SQLAlchemy
    URL (`postgresql+asyncpg://...`), as PREFECT_API_DATABASE_CONNECTION_URL takes it."""
    import asyncio

    name = f"archiver_prefect_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Worker(Process):
    """`prefect worker start --pool archiver --name NAME --limit N`, exactly as
    docs/deployments.md starts one (not `make worker`): from a directory of its own outside the
    project, as if on its own machine, with its own PREFECT_HOME and staging directory, the
    shared archive and cache, and no project-specific variable but the archiver's settings."""

    def __init__(self, server: PrefectServer, name: str, env: dict[str, str], limit: int = 1):
        self.name = name
        workdir = server.workdir / name
        workdir.mkdir(parents=True, exist_ok=True)
        full_env = server.env(workdir / "home", **env)
        full_env.setdefault("ARCHIVER_STAGING_DIR", str(workdir / "staging"))
        super().__init__(
            [PREFECT, "worker", "start", "--pool", POOL, "--name", name, "--limit", str(limit)],
            full_env,
            workdir,
            workdir / "worker.log",
        )


# -- the stack --------------------------------------------------------------------------------


@dataclass
class Stack:
    """A Prefect server with the project deployed and workers polling its pool."""

    server: PrefectServer
    workers: list[Worker]
    emulator: Any
    archive: Path
    lock_url: str | None
    database_url: str | None = None
    deployment_ids: dict[str, Any] = field(default_factory=dict)

    def client(self) -> Any:
        return self.server.client()

    def logs(self) -> str:
        """The tails of every process log (for assertion messages)."""
        parts = [f"--- server ---\n{tail(self.server.process.log)}"]
        parts += [f"--- {w.name} ---\n{tail(w.log)}" for w in self.workers]
        return "\n".join(parts)

    def run_deployment(self, name: str, parameters: dict[str, Any], **kwargs: Any) -> Any:
        """Create a flow run the way the UI's Run button does: parameters through the API."""
        with self.client() as client:
            return client.create_flow_run_from_deployment(
                self.deployment_ids[name], parameters=parameters, **kwargs
            )

    def wait_for_runs(self, ids: list[Any], timeout: float = 90) -> list[Any]:
        """The flow runs once all are in a final state (fails with the logs on timeout)."""

        def finished() -> list[Any] | None:
            with self.client() as client:
                runs = [client.read_flow_run(i) for i in ids]
            done = all(r.state is not None and r.state.type.value in TERMINAL for r in runs)
            return runs if done else None

        try:
            return wait_for(finished, timeout, f"flow runs {ids}", interval=0.5)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def artifacts(self, flow_run_id: Any) -> dict[str, Any]:
        """The artifacts of a flow run that have a key, by key."""
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        only = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        with self.client() as client:
            return {a.key: a for a in client.read_artifacts(artifact_filter=only) if a.key}

    def wait_idle(self, timeout: float = 90) -> None:
        """Until no flow run is pending or running (so tests do not queue behind each other)."""
        from prefect.client.schemas.filters import (
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType

        busy = FlowRunFilter(
            state=FlowRunFilterState(
                type=FlowRunFilterStateType(any_=[StateType.PENDING, StateType.RUNNING])
            )
        )

        def idle() -> bool:
            with self.client() as client:
                return not client.read_flow_runs(flow_run_filter=busy, limit=1)

        wait_for(idle, timeout, "idle workers", interval=0.5)


def manifests(archive: Path) -> list[dict[str, Any]]:
    """Every manifest.json under `archive` (skipping the .archiver bookkeeping directory)."""
    return [
        json.loads(p.read_text())
        for p in sorted(archive.rglob("manifest.json"))
        if ".archiver" not in p.parts
    ]


@contextlib.contextmanager
def prefect_stack(
    workdir: Path,
    *,
    database_url: str | None = None,
    template: Path | None = None,
    workers: int = 2,
    processing_seconds: float = 0.2,
) -> Iterator[Stack]:
    """Server (SQLite from a copy of `template`, or `database_url`), pool, Secret block,
    `prefect deploy --all` and `workers` workers, torn down after."""
    from emulator import Emulator

    with contextlib.ExitStack() as stack:
        emulator = stack.enter_context(Emulator(processing_seconds=processing_seconds))
        server = PrefectServer(workdir, database_url, template)
        stack.callback(server.stop)
        server.start()
        # `make pool` and `make secret`, side by side (both only need the server).
        pool = subprocess.Popen(
            [PREFECT, "work-pool", "create", POOL, "--type", "process", "--overwrite"],
            env=server.env(workdir / "cli-home"),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        secret = server.run(
            sys.executable, "-m", "deployments", "secret", env={"REPLICATE_API_TOKEN": TOKEN}
        )
        if TOKEN in secret.stdout + secret.stderr:
            raise RuntimeError("`python -m deployments secret` printed the token")
        out, _ = pool.communicate(timeout=120)
        if pool.returncode != 0:
            raise RuntimeError(f"work-pool create failed:\n{out}")
        archive = workdir / "archive"
        lock_url = None if redis_unavailable() else REDIS_URL
        worker_env = {
            **emulator.env(),  # REPLICATE_BASE_URL, REPLICATE_DELIVERY_HOSTS; no token
            "ARCHIVER_DEST": str(archive),
            "ARCHIVER_POLL_INTERVAL": "0.1",
            "ARCHIVER_TASK_RETRY_DELAY": "0",
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            "PREFECT_WORKER_PREFETCH_SECONDS": "5",
        }
        if lock_url:
            worker_env["ARCHIVER_LOCK_URL"] = lock_url
        started = [Worker(server, f"worker-{i + 1}", worker_env) for i in range(workers)]
        for worker in started:
            stack.callback(worker.stop)
            worker.start()
        # `make deploy`, while the workers start.
        server.run(PREFECT, "--no-prompt", "deploy", "--all", timeout=180)
        result = Stack(server, started, emulator, archive, lock_url, database_url)
        with server.client() as client:
            for deployment in client.read_deployments():
                flow = client.read_flow(deployment.flow_id)
                result.deployment_ids[f"{flow.name}/{deployment.name}"] = deployment.id

            def online() -> bool:
                names = {
                    w.name
                    for w in client.read_workers_for_work_pool(POOL)
                    if w.status is not None and w.status.value == "ONLINE"
                }
                return names >= {w.name for w in started}

            try:
                wait_for(online, 60, "workers online", interval=0.5)
            except TimeoutError as exc:
                raise RuntimeError(f"{exc}\n{result.logs()}") from None
        yield result
