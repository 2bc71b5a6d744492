"""The catalog at scale: `find`, `usage` and `verify` as whole CLI processes, wall clock.

    python -m benchmarks catalog [--sizes 10000,50000,100000] [--s3 10000] [--verify-mib 512]

Manifests are generated synthetically (4 models over a year of days, 2 outputs each; the
output files themselves are not written locally, except for the verify run) straight into a
local directory, and into a bucket of a SeaweedFS or moto server on loopback (`--s3 N
--s3-server seaweedfs|moto`; one small object per prediction beside its manifest, listed like
real outputs, and the journal marker the archiver writes; PUTs 64 at a time). For each size:
the first `find` (every manifest read into a new catalog), the median of later `find`s
(nothing new; on S3 they read the journal), `find` after 100 new manifests appeared, on S3
later `find`s that list the bucket whole (ARCHIVER_CATALOG_LIST_INTERVAL=0), and `usage --by
month`; CPU seconds (user + system) beside wall clock, and the load average. `--verify-mib`:
`verify` of that many MiB of real files against `sha256sum` over the same files (page cache
warm for both). Targets (issue 27): 100k local first find <= 60 s, later <= 1 s; usage <= 2 s; 10k on S3
first <= 60 s, later <= 2 s; verify >= 80% of sha256sum's speed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

MODELS = ["black-forest-labs/flux-schnell", "stability-ai/sdxl", "owner/upscaler", "owner/video"]
WORDS = "lighthouse sunset harbour forest neon city portrait fox dragon castle river snow".split()
START = datetime(2025, 1, 1, tzinfo=UTC)


def manifest(index: int, sha: str = "0" * 64, size: int = 1000) -> tuple[str, bytes]:
    """(directory relative to dest, manifest bytes) of synthetic prediction `index`."""
    model = MODELS[index % len(MODELS)]
    created = START + timedelta(seconds=index * 311 % (365 * 86400))
    pid = f"p{index:09d}bench"
    directory = f"{model}/{created:%Y/%m/%d}/{pid}"
    prompt = f"{WORDS[index % 12]} {WORDS[index * 7 % 12]} number {index}"
    doc = {
        "schema_version": 1,
        "prediction_id": pid,
        "model": model,
        "version": "v1",
        "status": "succeeded",
        "input": {"prompt": prompt, "seed": index, "negative_prompt": "blurry"},
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "metrics": {"predict_time": 1.5},
        "files": [
            {
                "name": f"out-{n}.png",
                "path": f"{directory}/out-{n}.png",
                "size": size,
                "sha256": sha,
                "content_type": "image/png",
                "source_url": "https://replicate.delivery/x.png",
                "pointer": f"/{n}",
            }
            for n in range(2)
        ],
        "cache_key": hashlib.sha256(str(index).encode()).hexdigest(),
        "directory": directory,
    }
    return directory, json.dumps(doc, indent=2).encode()


def write_local(root: Path, start: int, stop: int) -> None:
    for index in range(start, stop):
        directory, data = manifest(index)
        target = root / directory
        target.mkdir(parents=True, exist_ok=True)
        (target / "manifest.json").write_bytes(data)


def write_s3(server: Any, bucket: str, root: str, start: int, stop: int) -> None:
    """Manifests `start`..`stop` (and one small output each, listed like real outputs) put
    `S3_PUTS` at a time through aiobotocore, each followed by its journal marker as the
    archiver writes it (archiver/catalog/journal.py)."""
    import asyncio

    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    from archiver.catalog.journal import marker

    async def put_all() -> None:
        session = get_session()
        config = AioConfig(max_pool_connections=S3_PUTS)
        async with session.create_client(
            "s3",
            endpoint_url=server.endpoint_url,
            aws_access_key_id=server.key,
            aws_secret_access_key=server.secret,
            region_name=server.region,
            config=config,
        ) as client:
            slots = asyncio.Semaphore(S3_PUTS)

            async def put(index: int) -> None:
                directory, data = manifest(index)
                async with slots:
                    await client.put_object(
                        Bucket=bucket, Key=f"{root}/{directory}/out-0.png", Body=b"x"
                    )
                    await client.put_object(
                        Bucket=bucket, Key=f"{root}/{directory}/manifest.json", Body=data
                    )
                    note = marker(directory, datetime.now(UTC))
                    await client.put_object(Bucket=bucket, Key=f"{root}/{note}", Body=b"")

            await asyncio.gather(*(put(i) for i in range(start, stop)))

    asyncio.run(put_all())


S3_PUTS = 64  # PUTs in flight while generating the S3 archive


CPU: dict[str, list[float]] = {}  # command -> CPU seconds (user + sys) of each process


def cli(*args: str, env: dict[str, str]) -> float:
    """Seconds one `python -m flows ...` process takes (it must exit 0); its CPU seconds are
    kept in CPU (on a shared machine wall clock includes waiting for a core)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "flows", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"python -m flows {' '.join(args)}: exit {done.returncode}: {done.stderr}")
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    CPU.setdefault(args[0], []).append(cpu)
    return wall


def measure(
    dest: str, env: dict[str, str], add: Any, count: int, server_cpu: Any = None
) -> dict[str, float]:
    """The figures of one archive; `server_cpu()`: CPU seconds the S3 server has used."""
    CPU.clear()
    load_before = os.getloadavg()[0]
    served = server_cpu() if server_cpu else 0.0
    first = cli("find", "lighthouse", "--dest", dest, env=env)
    served = server_cpu() - served if server_cpu else 0.0
    later = statistics.median(cli("find", "lighthouse", "--dest", dest, env=env) for _ in range(5))
    later_cpu = statistics.median(CPU["find"][1:])
    add(count, count + 100)
    after_new = cli("find", "lighthouse", "--dest", dest, env=env)
    full: dict[str, float] = {}
    if dest.startswith("s3://"):  # later finds read the journal; these list the bucket whole
        listing = {**env, "ARCHIVER_CATALOG_LIST_INTERVAL": "0"}
        full["later_find_full_listing"] = statistics.median(
            cli("find", "lighthouse", "--dest", dest, env=listing) for _ in range(3)
        )
        full["later_find_full_listing_cpu"] = statistics.median(CPU["find"][-3:])
    usage = statistics.median(
        cli("usage", "--since", "2000-01-01", "--by", "month", "--dest", dest, env=env)
        for _ in range(3)
    )
    return {
        "first_find": first,
        "first_find_cpu": CPU["find"][0],
        "later_find": later,
        "later_find_cpu": later_cpu,
        "find_after_100_new": after_new,
        "usage": usage,
        "usage_cpu": statistics.median(CPU["usage"]),
        **full,
        "load_average_1min": (load_before + os.getloadavg()[0]) / 2,
        **({"first_find_server_cpu": served} if server_cpu else {}),
    }


def verify_speed(work: Path, mib: int, env: dict[str, str]) -> dict[str, float]:
    """verify vs sha256sum over the same files (8 MiB each), both after one warm-up read."""
    root = work / "verify-archive"
    chunk = os.urandom(1 << 20)
    files = max(1, mib // 8)
    paths = []
    for index in range(files):
        directory, _ = manifest(index)
        target = root / directory
        target.mkdir(parents=True, exist_ok=True)
        data = chunk * 8
        (target / "out-0.png").write_bytes(data)
        (target / "out-1.png").write_bytes(b"")
        sha = hashlib.sha256(data).hexdigest()
        doc = json.loads(manifest(index, sha=sha, size=len(data))[1])
        doc["files"][1].update(size=0, sha256=hashlib.sha256(b"").hexdigest())
        (target / "manifest.json").write_text(json.dumps(doc))
        paths.append(str(target / "out-0.png"))
    subprocess.run(["cat", *paths], stdout=subprocess.DEVNULL, check=True)
    cli("find", "--dest", str(root), env=env)  # the catalog, outside the timing

    def sha256sum() -> float:
        began = time.perf_counter()
        subprocess.run(["sha256sum", *paths], stdout=subprocess.DEVNULL, check=True)
        return time.perf_counter() - began

    tool = statistics.median(sha256sum() for _ in range(3))
    ours = statistics.median(cli("verify", "--dest", str(root), env=env) for _ in range(3))
    return {
        "mib": files * 8,
        "sha256sum_s": tool,
        "verify_s": ours,
        "sha256sum_mib_s": files * 8 / tool,
        "verify_mib_s": files * 8 / ours,
        "verify_vs_sha256sum": tool / ours,
    }


def engine_figures(work: Path, count: int) -> dict[str, float]:
    """Why SQLite FTS5: a word query by FTS5 and by a LIKE scan over `count` manifests, the
    catalog's size, and what one catalog write per archived prediction would cost on the hot
    path (one transaction each, as a writer in the pipeline would need)."""
    from archiver.catalog.records import entry_of
    from archiver.catalog.store import Catalog, Change

    path = work / "engine.sqlite3"
    with Catalog(path) as store:
        entries = []
        for index in range(count):
            directory, data = manifest(index)
            entries.append((f"{directory}/manifest.json", "s", entry_of(data)))
            if len(entries) == 5000:
                store.apply(Change(entries=entries, bad=[], gone=[], dirs=[]))
                entries = []
        store.apply(Change(entries=entries, bad=[], gone=[], dirs=[]))

        def timed(sql: str, arg: str) -> float:
            began = time.perf_counter()
            for _ in range(5):
                store.db.execute(sql, (arg,)).fetchall()
            return (time.perf_counter() - began) / 5

        fts = timed(
            "SELECT m.id FROM manifests m WHERE m.id IN (SELECT rowid FROM search WHERE search "
            "MATCH ?) ORDER BY created_at DESC LIMIT 50",
            '"dragon"* AND "castle"*',
        )
        like = timed(
            "SELECT m.id FROM manifests m JOIN search s ON s.rowid = m.id WHERE lower(s.text) "
            "LIKE ? AND lower(s.text) LIKE '%castle%' ORDER BY created_at DESC LIMIT 50",
            "%dragon%",
        )
        began = time.perf_counter()
        for index in range(count, count + 200):
            directory, data = manifest(index)
            store.apply(
                Change(
                    entries=[(f"{directory}/m.json", "s", entry_of(data))], bad=[], gone=[], dirs=[]
                )
            )
        per_write = (time.perf_counter() - began) / 200
    return {
        "manifests": count,
        "fts5_query_ms": fts * 1000,
        "like_scan_query_ms": like * 1000,
        "catalog_mb": path.stat().st_size / 2**20,
        "hot_path_write_ms": per_write * 1000,
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks catalog")
    p.add_argument("--sizes", default="10000,50000,100000")
    p.add_argument("--s3", type=int, default=10000, help="manifests on S3 (0: skip)")
    p.add_argument("--s3-server", choices=["moto", "seaweedfs"], default="seaweedfs")
    p.add_argument("--verify-mib", type=int, default=512, help="0: skip")
    p.add_argument("--engine", type=int, default=100000, help="manifests of the engine figures")
    p.add_argument("--out", default="bench-results/catalog.json")
    args = p.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVER_")}
    work = Path(tempfile.mkdtemp(prefix="catalog-bench-"))
    env["ARCHIVER_CATALOG_DIR"] = str(work / "catalogs")
    results: dict[str, Any] = {"local": {}, "s3": {}}
    try:
        for size in [int(s) for s in args.sizes.split(",") if s]:
            root = work / f"local-{size}"
            began = time.perf_counter()
            write_local(root, 0, size)
            print(f"local {size}: generated in {time.perf_counter() - began:.1f} s", flush=True)
            figures = measure(str(root), env, lambda a, b, r=root: write_local(r, a, b), size)
            results["local"][size] = figures
            print(f"local {size}: {figures}", flush=True)
            shutil.rmtree(root)
        if args.s3:
            results["s3_server"] = f"s3 ({args.s3_server})"
            results["s3"][args.s3] = s3_case(args.s3, env, args.s3_server, work)
            print(f"s3 {args.s3}: {results['s3'][args.s3]}", flush=True)
        if args.engine:
            results["engine"] = engine_figures(work, args.engine)
            print(f"engine: {results['engine']}", flush=True)
        if args.verify_mib:
            results["verify"] = verify_speed(work, args.verify_mib, env)
            print(f"verify: {results['verify']}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(table(results))
    return 0


def s3_case(count: int, env: dict[str, str], server_name: str, work: Path) -> dict[str, float]:
    """The figures on a moto or SeaweedFS server on loopback (tests/s3servers.py)."""
    from tests.s3servers import MotoS3, SeaweedS3

    server: Any = MotoS3() if server_name == "moto" else SeaweedS3(work / "seaweedfs")
    if server_name != "moto":
        server.start()
    try:
        bucket = server.make_bucket()
        options = server.storage_options()
        s3_env = {**env, "ARCHIVER_STORAGE_OPTIONS": json.dumps(options)}
        began = time.perf_counter()
        write_s3(server, bucket, "archive", 0, count)
        print(f"s3 {count}: generated in {time.perf_counter() - began:.1f} s", flush=True)
        return measure(
            f"s3://{bucket}/archive",
            s3_env,
            lambda a, b: write_s3(server, bucket, "archive", a, b),
            count,
            server_cpu=_server_cpu(server),
        )
    finally:
        server.close() if server_name == "moto" else server.stop()


def _server_cpu(server: Any) -> Any:
    """CPU seconds so far of a SeaweedFS process (moto runs in this process: None)."""
    process = getattr(server, "_process", None)
    if process is None:
        return None
    from benchmarks.servers import tree_cpu_seconds

    return lambda: tree_cpu_seconds({"weed": process.pid})["weed"]


def table(results: dict[str, Any]) -> str:
    lines = [
        "| archive | manifests | first find (CPU) | later find (CPU) | find after 100 new "
        "| usage (CPU) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind in ("local", "s3"):
        for size, f in results[kind].items():
            lines.append(
                f"| {results.get('s3_server', 's3') if kind == 's3' else kind} | {int(size):,} "
                f"| {f['first_find']:.2f} s ({f['first_find_cpu']:.2f} s) "
                f"| {f['later_find']:.2f} s ({f['later_find_cpu']:.2f} s) "
                f"| {f['find_after_100_new']:.2f} s | {f['usage']:.2f} s ({f['usage_cpu']:.2f} s) |"
            )
    if "verify" in results:
        v = results["verify"]
        lines.append(
            f"\nverify {v['mib']} MiB: {v['verify_mib_s']:.0f} MiB/s against sha256sum's "
            f"{v['sha256sum_mib_s']:.0f} MiB/s ({v['verify_vs_sha256sum']:.0%})"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
