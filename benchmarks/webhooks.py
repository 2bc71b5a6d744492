"""The webhook receiver's soak: a burst of signed `completed` deliveries, with Prefect configured.

    python -m benchmarks webhooks [--n 1800] [--seconds 60] [--duplicates 0.1] [--senders 8]

Predictions made elsewhere are seeded on one emulator process, a `prefect server` is started, and
`python -m flows webhooks` runs as deployed (PREFECT_API_URL set: groups of archives are
`archive-webhooks` flow runs). `--senders` clients deliver `--n` distinct deliveries, evenly
spread over `--seconds`, plus `--duplicates` of them again (the same webhook-id and body, as
Replicate's retries are) mixed in. Figures: answers by status and their latency (p50/p99/max),
when the last prediction was archived after the last delivery, manifests per prediction, the
peak RSS of the receiver's process tree, its CPU seconds, and the flow runs it made.

Targets (issue 25): every prediction archived within 180 s of the last delivery, exactly one
manifest each, every answer 2xx with p99 <= 500 ms, receiver tree <= 400 MB RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks import Webhook

from benchmarks.servers import emulator, prefect_server, run_env, tree_cpu_seconds
from cli.server_process import die_with_parent

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "r8_benchmark_token_not_secret_0000"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks webhooks", description=__doc__)
    p.add_argument("--n", type=int, default=1800, help="distinct deliveries (default 1800)")
    p.add_argument("--seconds", type=float, default=60, help="spread over (default 60 s)")
    p.add_argument("--duplicates", type=float, default=0.1, help="share redelivered (0.1)")
    p.add_argument("--senders", type=int, default=8, help="concurrent senders (default 8)")
    p.add_argument("--concurrency", type=int, default=None, help="ARCHIVER_WEBHOOK_CONCURRENCY")
    p.add_argument("--deadline", type=float, default=180, help="seconds after the last delivery")
    p.add_argument("--out", default=str(ROOT / "bench-results"), help="results directory")
    return p.parse_args(argv)


def tree_rss_kb(root: int) -> int:
    """Resident KB of `root` and its live descendants, found through /proc/PID/task/TID/children
    (cheap: the watcher samples it while the senders run in the same process)."""
    total, frontier = 0, [root]
    while frontier:
        pid = frontier.pop()
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{pid}/task").iterdir():
                frontier.extend(int(c) for c in (task / "children").read_text().split())
        except (OSError, ValueError):
            continue
    return total


def manifests(dest: Path) -> list[Path]:
    found = []
    for root, dirs, files in os.walk(dest):
        dirs[:] = [d for d in dirs if d != ".archiver"]
        if "manifest.json" in files:
            found.append(Path(root) / "manifest.json")
    return found


def start_receiver(env: dict[str, str], dest: Path) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "flows", "webhooks", "--port", "0", "--dest", str(dest)]
    proc = subprocess.Popen(
        command,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent,  # noqa: PLW1509 - a killed soak takes its receiver along
    )
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"the receiver did not start: {line}{proc.stderr.read()[-2000:]}")
    stderr = proc.stderr
    threading.Thread(target=lambda: [None for _ in stderr], daemon=True).start()  # drained
    return proc, line.split("listening on ", 1)[1].strip()


async def send(
    url: str, secret: str, plan: list[tuple[float, str, bytes]], senders: int
) -> list[tuple[int | None, float]]:
    """Each (offset s, webhook id, body) POSTed at its offset by one of `senders` clients;
    (status, seconds) per delivery, in plan order."""
    signer = Webhook(secret)
    results: list[tuple[int | None, float]] = [(None, 0.0)] * len(plan)
    start = time.monotonic()
    lock = asyncio.Lock()
    cursor = iter(range(len(plan)))

    async def sender(http: httpx.AsyncClient) -> None:
        while True:
            async with lock:
                n = next(cursor, None)
            if n is None:
                return
            offset, msg_id, body = plan[n]
            await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
            moment = datetime.now(UTC)
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(moment.timestamp())),
                "webhook-signature": signer.sign(msg_id, moment, body.decode()),
            }
            began = time.monotonic()
            try:
                answer = await http.post(url, content=body, headers=headers)
                results[n] = (answer.status_code, time.monotonic() - began)
            except httpx.HTTPError:
                results[n] = (None, time.monotonic() - began)

    limits = httpx.Limits(max_connections=senders)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        await asyncio.gather(*(sender(http) for _ in range(senders)))
    return results


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-webhooks-", dir=out))

    def log(text: str) -> None:
        print(f"[soak {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    (work / "prefect").mkdir()
    log("starting the emulator and a prefect server")
    with (
        emulator(0.05) as (base_url, emulator_pid),
        prefect_server(work / "prefect", timeout=600) as (api_url, _startup, server_pid),
    ):
        env = {
            **run_env(base_url, api_url, work, TOKEN),
            "ARCHIVER_CACHE_URL": str(work / "cache"),
            "ARCHIVER_STAGING_DIR": str(work / "staging"),
            "PYTHONPATH": str(ROOT),
        }
        if args.concurrency:
            env["ARCHIVER_WEBHOOK_CONCURRENCY"] = str(args.concurrency)
        log(f"seeding {args.n} predictions made elsewhere")
        with httpx.Client(base_url=base_url, timeout=30) as api:
            made = [
                api.post("/_emulator/predictions", json={"age_seconds": 5}).json()
                for _ in range(args.n)
            ]
            secret = api.get(
                "/v1/webhooks/default/secret", headers={"Authorization": f"Bearer {TOKEN}"}
            ).json()["key"]
        step = args.seconds / args.n
        plan = [(i * step, f"msg_{p['id']}", json.dumps(p).encode()) for i, p in enumerate(made)]
        repeats = int(args.n * args.duplicates)
        for j in range(repeats):  # each redelivered a few seconds after its first delivery
            offset, msg_id, body = plan[j * args.n // max(1, repeats)]
            plan.append((min(args.seconds, offset + 5.0), msg_id, body))
        plan.sort(key=lambda item: item[0])
        dest = work / "archive"
        proc, url = start_receiver(env, dest)
        rss_start = tree_rss_kb(proc.pid)
        peak = [rss_start]
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.5):
                peak[0] = max(peak[0], tree_rss_kb(proc.pid))

        threading.Thread(target=watch, daemon=True).start()
        cpu_before = tree_cpu_seconds({"receiver": proc.pid, "server": server_pid})
        load_before = os.getloadavg()[0]
        try:
            log(f"delivering {len(plan)} ({repeats} duplicates) over {args.seconds:g}s")
            answers = asyncio.run(send(url, secret, plan, args.senders))
            last_delivery = time.monotonic()
            log("waiting for the archives")
            wanted, archived_after = {p["id"] for p in made}, None
            while time.monotonic() - last_delivery < args.deadline + 120:
                found = manifests(dest)
                if len(found) >= len(wanted):
                    archived_after = time.monotonic() - last_delivery
                    break
                log(f"{len(found)}/{len(wanted)} archived")
                time.sleep(2)
            cpu = tree_cpu_seconds({"receiver": proc.pid, "server": server_pid})
        finally:
            stop.set()
            proc.terminate()
            proc.wait(30)
        ids = [json.loads(m.read_text())["prediction_id"] for m in manifests(dest)]
        runs = httpx.post(
            f"{api_url}/flow_runs/filter",
            json={"flows": {"name": {"any_": ["archive-webhooks"]}}, "limit": 200},
            timeout=30,
        ).json()
        flow_runs = httpx.post(
            f"{api_url}/flow_runs/count",
            json={"flows": {"name": {"any_": ["archive-webhooks"]}}},
            timeout=30,
        ).json()
        artifacts = httpx.post(f"{api_url}/artifacts/count", json={}, timeout=30).json()
    latencies = [seconds for _status, seconds in answers]
    statuses: dict[str, int] = {}
    for status, _seconds in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    figures: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "params": vars(args),
        "deliveries": len(plan),
        "statuses": statuses,
        "all_2xx": all(s is not None and 200 <= s < 300 for s, _ in answers),
        "ack_p50_ms": 1000 * percentile(latencies, 0.5),
        "ack_p99_ms": 1000 * percentile(latencies, 0.99),
        "ack_max_ms": 1000 * max(latencies),
        "acks_over_500ms": sum(s > 0.5 for s in latencies),
        "archived": len(set(ids) & wanted),
        "manifests": len(ids),
        "exactly_one_manifest_each": sorted(ids) == sorted(wanted),
        "last_archived_after_last_delivery_s": archived_after,
        "receiver_rss_start_mb": rss_start / 1024,
        "receiver_rss_peak_mb": peak[0] / 1024,
        "receiver_cpu_s": cpu["receiver"] - cpu_before["receiver"],
        "prefect_server_cpu_s": cpu["server"] - cpu_before["server"],
        "load_average_1min": [load_before, os.getloadavg()[0]],  # a shared machine skews all
        "flow_runs": flow_runs,
        "largest_flow_run": max((len(r["parameters"]["prediction_ids"]) for r in runs), default=0),
        "artifacts": artifacts,
    }
    (out / "webhooks.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
    ok = (
        figures["all_2xx"]
        and figures["ack_p99_ms"] <= 500
        and figures["exactly_one_manifest_each"]
        and archived_after is not None
        and archived_after <= args.deadline
        and figures["receiver_rss_peak_mb"] <= 400
    )
    log("targets met" if ok else "targets NOT met")
    return 0 if ok else 1
