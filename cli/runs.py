"""The flow run a CLI command starts in process: how it starts, where to see it, how it ends.

`run_flow` is the one way a command runs a flow: pre-flight checks, then on the Prefect API
(`cli.prefect_api`) with a progress bar and Prefect's console quiet. Storage options reach the
flow as values (`storage`): the non-secret ones as its `storage_options` parameter, the secret
ones as this process's own (`flows.settings.use_storage_options`), never a flow parameter.

Every flow announces itself once it is running (`flows.hooks.announce`); the first announcement
of a command is its run: its UI URL goes to stderr as `flow run: URL` (and into `--json` as
`flow_run_url`). Prefect records an in-process run whose task was cancelled as Crashed; after a
Ctrl-C the command cancelled the run cleanly (its predictions too), so the run is then set to
Cancelled, which is what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cli import interrupts
from cli.common import fail

if TYPE_CHECKING:
    from cli.head_start import HeadStart

T = TypeVar("T")
CANCEL_TIMEOUT = 5.0  # seconds; interrupts.GRACE bounds the whole exit anyway


@dataclass(frozen=True)
class StartedRun:
    run_id: str
    url: str | None


_started: list[StartedRun] = []


def started() -> StartedRun | None:
    """The run this command started, once it is running."""
    return _started[0] if _started else None


def _listen(run_id: str, url: str | None) -> None:
    if _started:
        return  # a nested run of the same command: the first one is the command's run
    _started.append(StartedRun(run_id, url))
    if url:
        sys.stderr.write(f"flow run: {url}\n")
        sys.stderr.flush()


@dataclass(frozen=True)
class Storage:
    """A command's `--storage-option` pairs: every one as given (for what this process reads
    itself), and the non-secret ones (the flow's `storage_options` parameter)."""

    options: dict[str, str]
    public: dict[str, str]


def storage(pairs: list[str]) -> Storage:
    """Check `--storage-option K=V` pairs; the secret ones become this process's own storage
    options for every flow run it starts (`flows.settings.use_storage_options`)."""
    from archiver.inputs import option_pairs
    from archiver.storage.options import split_secret
    from flows.settings import use_storage_options

    options = option_pairs(pairs)
    public, secret = split_secret(options)
    use_storage_options(secret)
    return Storage(options, public)


@contextlib.contextmanager
def boundary(debug: bool) -> Iterator[None]:
    """The command's one error boundary: Ctrl-C handled (`interrupts`), every error one line
    and exit 1 (a traceback too with --debug), an interrupt exit 130."""
    interrupts.install()
    try:
        yield
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - the CLI's one boundary
        fail(exc, debug)


def preflight(dest: str | None) -> None:
    """What every command that archives checks before Prefect or Replicate is touched."""
    from cli import checks

    checks.token()
    checks.local_dest(dest)
    checks.hosts(dest)


def run_flow(
    start: Callable[[dict[str, str] | None], Awaitable[Any]],
    *,
    dest: str | None,
    storage: Storage,
    debug: bool,
    progress: bool,
    predictions: int | None = None,
    ahead: HeadStart | None = None,
) -> Any:
    """`preflight(dest)`, then `start(storage.public or None)` (it calls the flow) on the Prefect
    API (`prefect_api`), with Prefect's console quiet and a progress bar (when `progress`, on a
    terminal) as this command's run (`run`). Its result; raised if it is an exception.
    `ahead`: the prediction's create, begun as soon as the API answers (`cli.head_start`);
    closed (waited for; cancelled if no run took it) before this returns."""
    from archiver.progress import use_progress
    from cli.console import RichProgress
    from cli.prefect_api import prefect_api  # before Prefect loads: its defaults for CLI runs
    from flows.console import quiet_prefect_console

    preflight(dest)
    try:
        with prefect_api(on_ready=ahead.begin if ahead else None):
            quiet_prefect_console(debug)
            with RichProgress(enabled=progress, predictions=predictions) as sink:
                use_progress(sink)
                result = run(start(storage.public or None))
    finally:
        if ahead is not None:
            ahead.close()
            if interrupts.interrupted():
                raise KeyboardInterrupt  # pressed during the close: exit 130 all the same
    if isinstance(result, BaseException):
        raise result
    return result


async def result_of(state: Awaitable[Any]) -> Any:
    """The result of a flow call with `return_state=True`: a failed run's report too (a run
    that failed without one: its exception)."""
    return await (await state).aresult(raise_on_failure=False)


def run(coro: Awaitable[T]) -> T:
    """Run a flow call (as `interrupts.run`), announcing it; a Ctrl-C leaves it Cancelled."""
    from archiver.progress import use_run_listener

    use_run_listener(_listen)
    try:
        return interrupts.run(coro)
    except KeyboardInterrupt:
        if _started:
            _mark_cancelled(_started[0].run_id)
        raise


def _mark_cancelled(run_id: str) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    async def go() -> None:
        async with get_client() as client:
            await client.set_flow_run_state(
                UUID(run_id),
                Cancelled(message="Cancelled from the command line (Ctrl-C)"),
                force=True,
            )

    # On failure the run stays Crashed: exiting 130 now is what matters.
    with contextlib.suppress(Exception):
        asyncio.run(asyncio.wait_for(go(), CANCEL_TIMEOUT))


def as_json(model: Any) -> str:
    """A pydantic result as the `--json` document, with the run's `flow_run_url`."""
    run = started()
    document = {**model.model_dump(mode="json"), "flow_run_url": run.url if run else None}
    return json.dumps(document, indent=2)
