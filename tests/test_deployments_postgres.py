"""The production layout: a Prefect server on PostgreSQL, two workers, one shared archive.

The server gets PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://... on a database this
module creates and drops; everything else is what `make server`, `pool`, `secret`, `deploy` and
`worker` run.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from tests.prefect_stack import (
    fresh_postgres_database,
    manifests,
    postgres_unavailable,
    prefect_stack,
)

pytestmark = [pytest.mark.server, pytest.mark.timeout(300)]

MODEL = "black-forest-labs/flux-schnell"


@pytest.fixture(scope="module")
def pg_stack(tmp_path_factory):
    reason = postgres_unavailable()
    if reason:
        pytest.skip(reason)
    with (
        fresh_postgres_database() as url,
        prefect_stack(tmp_path_factory.mktemp("prefect-postgres"), database_url=url) as stack,
    ):
        yield stack


async def _count_flow_runs(url: str, ids: list) -> int:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return await conn.fetchval("SELECT count(*) FROM flow_run WHERE id = ANY($1::uuid[])", ids)
    finally:
        await conn.close()


def test_postgres_backed_server_runs_deployments_on_two_workers(pg_stack):
    """A server on PostgreSQL runs deployments on two workers; its runs live in PostgreSQL."""
    tag = uuid.uuid4().hex[:8]
    inputs = [{"prompt": f"postgres {tag} {i}", "seed": i} for i in range(2)]
    created = [
        pg_stack.run_deployment("archive-prediction/on-demand", {"model": MODEL, "input": value})
        for value in inputs
    ]
    runs = pg_stack.wait_for_runs([r.id for r in created], timeout=120)
    assert all(r.state.type.value == "COMPLETED" for r in runs), pg_stack.logs()
    assert {r.labels.get("prefect.worker.name") for r in runs} == {"worker-1", "worker-2"}
    archived = [m["input"] for m in manifests(pg_stack.archive)]
    assert all(value in archived for value in inputs)
    # The runs live in PostgreSQL (not in a SQLite file under PREFECT_HOME).
    assert asyncio.run(_count_flow_runs(pg_stack.database_url, [r.id for r in runs])) == 2
    assert not list(pg_stack.server.workdir.joinpath("server-home").glob("*.db"))
