"""Ad-hoc runs: the replicate client vs `python -m flows run`, whole processes, wall clock.

    python -m benchmarks adhoc [--runs 5] [--busy-runs 10]      (also part of `make bench`)

Both run one prediction of a 1 s emulated model with 2 x 1 MiB outputs against the same emulator,
as a new user would: the CLI with a fresh PREFECT_HOME and no PREFECT_API_URL, so its first run
starts the local Prefect server (from the migrated template `make install` builds, which the bench
builds first if missing) and later runs reuse it. One first run on another fresh home without the
template (`ARCHIVER_SERVER_TEMPLATE=false`) is reported beside it. Figures: the first run, the median of
`--runs`, the peak RSS of a run's own process tree (the background server's RSS beside it), and
`--busy-runs` runs in a row while two busy loops hold both cores (failures counted).

Targets: `replicate-archiver --help` <= 1 s (median of `--runs`); first run <= 15 s; later runs
<= the client's time + 1.5 s; a run's tree <= 250 MB peak RSS; 0 failures under load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.servers import emulator

ROOT = Path(__file__).resolve().parent.parent
MiB = 1 << 20
TOKEN = "r8_benchmark_token_not_secret_0000"
MODEL = "emulator/large-file"

CLIENT_SCRIPT = """
import os, sys, httpx, replicate
from pathlib import Path
client = replicate.Client(api_token=os.environ["REPLICATE_API_TOKEN"])
out = client.run(sys.argv[1], input={"size_bytes": int(sys.argv[2]), "num_outputs": 2,
                 "seed": int(sys.argv[3])})
dest = Path(sys.argv[4]); dest.mkdir(parents=True, exist_ok=True)
with httpx.Client(timeout=60) as http:
    for i, url in enumerate(out):
        with http.stream("GET", str(url)) as r, open(dest / f"blob-{i}.bin", "wb") as f:
            r.raise_for_status()
            for chunk in r.iter_bytes(1 << 20):
                f.write(chunk)
"""


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(root: int, exclude: set[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in exclude and child not in found:
                found.add(child)
                todo.append(child)
    return found


def timed(args: list[str], env: dict[str, str], exclude: set[int]) -> dict[str, Any]:
    """Run a process; wall seconds, exit code, and its tree's peak RSS (sampled, MB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            pids = _tree(proc.pid, exclude | _server_pids(env))
            peak = max(peak, sum(_rss_kb(p) for p in pids))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate(timeout=600)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "wall": wall,
        "rc": proc.returncode,
        "peak_rss_mb": peak / 1024,
        "stderr": stderr[-500:],
    }


def flows_cli(args: list[str], env: dict[str, str]) -> None:
    """`python -m flows ARGS`, output dropped (e.g. `server stop`)."""
    subprocess.run(
        [sys.executable, "-m", "flows", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
        timeout=60,
    )


def _server_pids(env: dict[str, str]) -> set[int]:
    """The local server's pid (not part of a run's own tree, even while a run starts it)."""
    try:
        state = Path(env["PREFECT_HOME"]) / "archiver-server" / "state.json"
        return {int(json.loads(state.read_text())["pid"])}
    except (OSError, ValueError, KeyError):
        return set()


def _loadavg() -> list[str]:
    with open("/proc/loadavg") as loadavg:
        return loadavg.read().split()[:3]


def settle(log: Any, quiet: float = 0.5, timeout: float = 180.0) -> float:
    """Flush dirty pages and wait (bounded) for the 1-minute load average to fall below
    `quiet`: the targets are for a quiet machine, and `make bench` runs this right after the
    batch benchmark, whose write-back and load would otherwise land on the first run (a fresh
    server's migrations fsync every step). Returns the seconds waited."""
    started = time.monotonic()
    os.sync()
    while float(_loadavg()[0]) >= quiet and time.monotonic() - started < timeout:
        time.sleep(2)
    waited = time.monotonic() - started
    log(f"settled for {waited:.0f}s (load average {' '.join(_loadavg())})")
    return waited


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks adhoc", description=__doc__.split("\n")[0]
    )
    p.add_argument("--runs", type=int, default=5, help="later runs, for the median (default 5)")
    p.add_argument("--busy-runs", type=int, default=10, help="runs under two busy loops")
    p.add_argument("--size", type=int, default=MiB, help="bytes per output (2 outputs)")
    p.add_argument("--model-seconds", type=float, default=1.0)
    p.add_argument("--out", default=str(ROOT / "bench-results"))
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="adhoc-", dir=out))
    log = lambda text: print(f"[adhoc {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr)  # noqa: E731
    figures: dict[str, Any] = {"params": vars(args)}
    seed = iter(range(1, 10**6))
    figures["settled_s"] = settle(log)
    figures["loadavg_before"] = _loadavg()
    with emulator(args.model_seconds) as (base_url, _pid):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ARCHIVER_"))}
        env.update(
            REPLICATE_BASE_URL=base_url,
            REPLICATE_DELIVERY_HOSTS=base_url.split("//")[1].split(":")[0],
            REPLICATE_API_TOKEN=TOKEN,
            PREFECT_HOME=str(work / "prefect-home"),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            ARCHIVER_STAGING_DIR=str(work / "staging"),
        )

        def client() -> dict[str, Any]:
            n = next(seed)
            return timed(
                [
                    sys.executable,
                    "-c",
                    CLIENT_SCRIPT,
                    MODEL,
                    str(args.size),
                    str(n),
                    str(work / f"c{n}"),
                ],
                env,
                set(),
            )

        def cli(environment: dict[str, str] | None = None) -> dict[str, Any]:
            n = next(seed)
            command = [sys.executable, "-m", "flows", "run", MODEL, "-i", f"size_bytes={args.size}"]
            command += ["-i", "num_outputs=2", "-i", f"seed={n}", "--dest", str(work / "archive")]
            return timed(command, environment or env, set())

        try:
            script = str(Path(sys.executable).with_name("replicate-archiver"))
            helps = [timed([script, "--help"], env, set()) for _ in range(args.runs)]
            figures["help_median_s"] = statistics.median(r["wall"] for r in helps)
            log(f"replicate-archiver --help: median {figures['help_median_s']:.2f}s")
            client()  # warm the page cache for the interpreter and replicate
            # A first run without the migrated template (`make install` builds it): the home
            # migrates its own database. Its server is stopped before the measured first run.
            bare = {
                **env,
                "PREFECT_HOME": str(work / "bare-home"),
                "ARCHIVER_SERVER_TEMPLATE": "false",
            }
            untemplated = cli(bare)
            flows_cli(["server", "stop"], bare)
            figures["first_run_no_template_s"] = untemplated["wall"]
            log(f"first run, no template (the home migrates its own): {untemplated['wall']:.2f}s")
            prepared = timed([sys.executable, "-m", "flows", "server", "prepare"], env, set())
            figures["prepare_s"] = prepared["wall"]  # what make install did (0.3 s if done)
            first = cli()
            figures["first_run_s"] = first["wall"]
            figures["first_run_rc"] = first["rc"]
            log(f"first run (fresh PREFECT_HOME, starts the local server): {first['wall']:.2f}s")
            clients, later = [], []
            for _ in range(args.runs):  # alternate, so both see the same machine load
                clients.append(client())
                later.append(cli())
            figures["client_median_s"] = statistics.median(r["wall"] for r in clients)
            log(f"replicate client: median {figures['client_median_s']:.2f}s")
            figures["later_median_s"] = statistics.median(r["wall"] for r in later)
            figures["later_failures"] = sum(r["rc"] != 0 for r in later)
            figures["run_peak_rss_mb"] = max(r["peak_rss_mb"] for r in later)
            server = _server_pids(env)
            figures["server_rss_mb"] = sum(_rss_kb(pid) for pid in server) / 1024
            log(f"later runs: median {figures['later_median_s']:.2f}s")
            busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
            try:
                loaded = [cli() for _ in range(args.busy_runs)]
            finally:
                for proc in busy:
                    proc.kill()
                    proc.wait()
            figures["busy_runs"] = len(loaded)
            figures["busy_failures"] = sum(r["rc"] != 0 for r in loaded)
            figures["busy_median_s"] = (
                statistics.median(r["wall"] for r in loaded) if loaded else None
            )
            if figures["busy_failures"]:
                figures["busy_errors"] = [r["stderr"] for r in loaded if r["rc"]][:3]
            log(f"under load: {figures['busy_failures']}/{len(loaded)} failed")
        finally:
            flows_cli(["server", "stop"], env)
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    figures["targets"] = {
        "help_le_1s": figures["help_median_s"] <= 1,
        "first_run_le_15s": figures["first_run_s"] <= 15,
        "later_le_client_plus_1_5s": figures["later_median_s"] <= figures["client_median_s"] + 1.5,
        "run_rss_le_250mb": figures["run_peak_rss_mb"] <= 250,
        "busy_no_failures": figures["busy_failures"] == 0,
    }
    (out / "adhoc-latest.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
