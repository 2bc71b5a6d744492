"""The three ways of archiving K predictions that the benchmark compares, one per subprocess.

    python -m benchmarks.contenders naive|raw|raw_safe|serve|pipeline CONFIG_JSON

`serve` is the raw script receiving every byte without writing it: what the emulator (and one
client process) can serve at all, the ceiling of every other contender.

Each prints one JSON line on stdout: wall seconds and CPU seconds (of the work itself, not of
interpreter start or imports), bytes written, per-prediction (completed_at, safe_at) pairs for time-to-safety,
and the process's peak RSS. The environment (REPLICATE_*, PREFECT_API_URL, ARCHIVER_*) comes
from the parent, `benchmarks.__main__`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import sys
import time
import zlib
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

MODEL = "emulator/large-file"
CHUNK = 1 << 20
STREAMS = 16  # downloads open at once in the raw script (the pipeline uses the same number)
SHARDS = 4  # ... over this many connection pools (as the pipeline does)


def inputs(config: dict[str, Any]) -> list[dict[str, Any]]:
    """K distinct inputs, each with its own `seed`: every prediction's outputs are distinct
    bytes (nothing can be served from, or deduplicated against, another item's). `item` makes
    each input, hence each cache key, distinct across runs too."""
    run = config.get("run", "")
    base = zlib.crc32(run.encode()) * 1_000_000  # < 2**53: a seed range of its own per run
    return [
        {
            "size_bytes": config["size"],
            "num_outputs": config["files"],
            "seed": base + i,
            "item": f"{run}-{i}",
        }
        for i in range(config["k"])
    ]


def peak_rss() -> int:
    """Peak resident set size of this process, in bytes (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far, all threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text).timestamp()


# -- (1) naive: the replicate client's `run`, then each output, one prediction after another ---


def naive(config: dict[str, Any]) -> dict[str, Any]:
    import replicate

    client = replicate.Client(
        api_token=os.environ["REPLICATE_API_TOKEN"], base_url=os.environ["REPLICATE_BASE_URL"]
    )
    dest = Path(config["dest"])
    written = 0
    started, cpu = time.perf_counter(), cpu_seconds()
    with httpx.Client(timeout=60) as http:
        for number, item in enumerate(inputs(config)):
            output = client.run(MODEL, input=item)
            directory = dest / f"item-{number}"
            directory.mkdir(parents=True, exist_ok=True)
            for index, url in enumerate(output):
                with (
                    http.stream("GET", str(url)) as response,
                    open(directory / f"blob-{index}.bin", "wb") as sink,
                ):
                    response.raise_for_status()
                    for chunk in response.iter_bytes(CHUNK):
                        sink.write(chunk)
                        written += len(chunk)
    wall = time.perf_counter() - started
    # `run` returns outputs only, not the prediction's times: no time-to-safety here.
    return {
        "wall": wall,
        "bytes": written,
        "predictions": config["k"],
        "safety": [],
        "peak_rss": peak_rss(),
        "cpu": cpu_seconds() - cpu,
    }


# -- (2) raw: asyncio + httpx, every prediction created at once, every file streamed -----------


async def _raw(config: dict[str, Any]) -> dict[str, Any]:
    """What a careful hand-written script does: all creates at once (Prefer: wait), then each
    file streamed to disk, at most STREAMS downloads at once spread over SHARDS small clients
    (httpcore's pool upkeep per request grows with its connections and queue: one big pool
    made this script CPU-bound). The pipeline's delivery client does the same."""
    base = os.environ["REPLICATE_BASE_URL"].rstrip("/")
    headers = {"Authorization": f"Bearer {os.environ['REPLICATE_API_TOKEN']}", "Prefer": "wait=60"}
    dest = Path(config["dest"])
    timeout = httpx.Timeout(120, connect=30, pool=None)
    api_limits = httpx.Limits(max_connections=4096, max_keepalive_connections=16)
    safe = bool(config.get("safe"))
    discard = bool(config.get("discard"))
    per_shard = STREAMS // SHARDS
    delivery_limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
    lanes = [
        (asyncio.Semaphore(per_shard), httpx.AsyncClient(limits=delivery_limits, timeout=timeout))
        for _ in range(SHARDS)
    ]
    next_lane = 0
    written = 0
    safety: list[tuple[float | None, float]] = []
    async with httpx.AsyncClient(limits=api_limits, timeout=timeout) as api:

        async def one(item: dict[str, Any]) -> None:
            nonlocal written
            response = await api.post(
                f"{base}/v1/models/{MODEL}/predictions", json={"input": item}, headers=headers
            )
            response.raise_for_status()
            prediction = response.json()
            while prediction["status"] not in ("succeeded", "failed", "canceled", "aborted"):
                await asyncio.sleep(0.1)
                prediction = (
                    await api.get(f"{base}/v1/predictions/{prediction['id']}", headers=headers)
                ).json()
            directory = dest / prediction["id"]
            if not discard:
                directory.mkdir(parents=True, exist_ok=True)

            async def fetch(index: int, url: str) -> None:
                nonlocal written, next_lane
                lane, next_lane = lanes[next_lane], (next_lane + 1) % SHARDS
                async with lane[0], lane[1].stream("GET", url) as body:
                    body.raise_for_status()
                    if discard:  # the emulator's capacity: receive and drop the bytes
                        async for chunk in body.aiter_raw():
                            written += len(chunk)
                        return
                    # a plain script writes inline, as most do
                    with open(directory / f"blob-{index}.bin", "wb") as sink:  # noqa: ASYNC230
                        digest = hashlib.sha256()
                        async for chunk in body.aiter_bytes(CHUNK):
                            sink.write(chunk)
                            written += len(chunk)
                            if safe:
                                digest.update(chunk)
                        if safe:  # what "archived" means in the pipeline: hashed and on disk
                            sink.flush()
                            await asyncio.to_thread(os.fsync, sink.fileno())

            await asyncio.gather(*(fetch(i, url) for i, url in enumerate(prediction["output"])))
            safety.append((_parse_time(prediction.get("completed_at")), time.time()))

        started, cpu = time.perf_counter(), cpu_seconds()
        await asyncio.gather(*(one(item) for item in inputs(config)))
        wall = time.perf_counter() - started
        for _, client in lanes:
            await client.aclose()
    return {
        "wall": wall,
        "bytes": written,
        "predictions": config["k"],
        "safety": safety,
        "peak_rss": peak_rss(),
        "cpu": cpu_seconds() - cpu,
    }


def raw(config: dict[str, Any]) -> dict[str, Any]:
    return asyncio.run(_raw(config))


# -- (3) this pipeline: the archive-batch flow over a JSONL file --------------------------------


def _batch_file(config: dict[str, Any]) -> tuple[Path, Path]:
    """The run's dest (made) and its batch file of K distinct inputs, as JSONL beside it."""
    dest = Path(config["dest"])
    dest.mkdir(parents=True, exist_ok=True)
    batch_file = dest.parent / f"{dest.name}.jsonl"
    batch_file.write_text("".join(json.dumps(item) + "\n" for item in inputs(config)))
    return dest, batch_file


def _archived(summary: Any) -> tuple[list[tuple[float | None, float]], list[float], int]:
    """From each archived item's manifest: (completed, archived) times, created times, bytes."""
    from archiver.manifest import Manifest

    safety, created, written = [], [], 0
    for item in summary.items:
        if item.manifest_url:
            manifest = Manifest.from_json(Path(item.manifest_url).read_bytes())
            completed = manifest.completed_at.timestamp() if manifest.completed_at else None
            safety.append((completed, manifest.archived_at.timestamp()))
            if manifest.created_at:
                created.append(manifest.created_at.timestamp())
            written += sum(f.size for f in manifest.files)
    return safety, created, written


def pipeline(config: dict[str, Any]) -> dict[str, Any]:
    from flows.batch import archive_batch
    from flows.console import quiet_prefect_console

    dest, batch_file = _batch_file(config)
    # Each run gets its own global create limit (a full burst, like raw, which has no limit):
    # a shared one would throttle later runs by the slots earlier runs took.
    os.environ["ARCHIVER_CREATE_LIMIT_NAME"] = f"bench-{config['run']}"[-100:]
    quiet_prefect_console(debug=False)
    if config.get("warm", True):
        # A worker (or any process that ran a flow before) has Prefect's lazy imports, its API
        # client and the rate limit already set up: warm them with a batch of one, untimed,
        # into a dest of its own. (An empty batch ends before it looks up the limit or runs a
        # task: the timed run then paid for both.)
        warm = {**config, "k": 1, "files": 1, "size": 1024, "run": f"{config['run']}-warmup"}
        _, one = _batch_file({**warm, "dest": f"{dest}-warmup"})
        asyncio.run(archive_batch(file=str(one), model=MODEL, dest=f"{dest}-warmup"))
    profiler = None
    if config.get("profile"):
        from pyinstrument import Profiler

        profiler = Profiler(async_mode="enabled")
        profiler.start()
    started, started_at, cpu = time.perf_counter(), time.time(), cpu_seconds()
    state = asyncio.run(
        archive_batch(
            file=str(batch_file),
            model=MODEL,
            dest=str(dest),
            concurrency=config["concurrency"],
            return_state=True,
        )
    )
    wall = time.perf_counter() - started
    ended_at = time.time()
    if profiler is not None:
        profiler.stop()
        target = Path(config["profile"])
        target.write_text(
            profiler.output_text(unicode=True, show_all=True)
            if target.suffix == ".txt"
            else profiler.output_html()
        )
    summary = state.result(raise_on_failure=False)  # sync context: the sync variant
    if isinstance(summary, BaseException):
        raise summary
    safety, created, written = _archived(summary)
    phases = {  # where the wall time went: before the first create, after the last archive
        "to_first_create": min(created, default=ended_at) - started_at,
        "after_last_archive": ended_at - max((s for _, s in safety), default=started_at),
    }
    return {
        "wall": wall,
        "bytes": written,
        "predictions": config["k"],
        "safety": safety,
        "peak_rss": peak_rss(),
        "cpu": cpu_seconds() - cpu,
        "counts": summary.counts,
        "phases": phases,
        "created": summary.predictions_created,
    }


# -- (4) the same domain code without Prefect: what the orchestrator adds --------------------------


def domain(config: dict[str, Any]) -> dict[str, Any]:
    """The batch's domain code alone (`archiver.batch.run_batch`): no flow, no tasks, no
    Prefect API; the pipeline's wall minus this one's is what Prefect costs."""
    from archiver.batch import run_batch
    from archiver.batchfile import load_batch
    from archiver.runtime import Runtime
    from archiver.settings import Settings

    dest, batch_file = _batch_file(config)
    items = load_batch(str(batch_file), default_model=MODEL)

    async def go() -> Any:
        runtime = Runtime.build(Settings(), dest=str(dest))
        try:
            return await run_batch(runtime, items, concurrency=config["concurrency"])
        finally:
            await runtime.aclose()

    started, cpu = time.perf_counter(), cpu_seconds()
    summary = asyncio.run(go())
    wall = time.perf_counter() - started
    safety, _, written = _archived(summary)
    return {
        "wall": wall,
        "bytes": written,
        "predictions": config["k"],
        "safety": safety,
        "peak_rss": peak_rss(),
        "cpu": cpu_seconds() - cpu,
        "counts": summary.counts,
    }


RUNNERS = {
    "domain": domain,
    "naive": naive,
    "raw": raw,
    "raw_safe": lambda c: raw({**c, "safe": True}),
    "serve": lambda c: raw({**c, "discard": True}),
    "pipeline": pipeline,
}


def main() -> None:
    name, config = sys.argv[1], json.loads(sys.argv[2])
    result = RUNNERS[name](config)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
