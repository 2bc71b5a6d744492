"""`make bench` / `python -m benchmarks`: naive vs raw asyncio vs this pipeline, on the emulator.

One emulator process and one `prefect server` (both started here, outside every timing) serve
every run; each contender runs in a fresh subprocess. Figures go to bench-results/ as JSON and a
markdown table. Shrink it with e.g. `make bench BENCH_ARGS="--k 20 --overhead-k 100"`.

Targets: pipeline wall <= 1.15x raw at K=200 (the median of back-to-back rounds' own ratios;
<= 1.25x at K=1000), time-to-safety p99 within raw's + 0.5 s at K=200, and >= 10x faster than
naive at K=200; peak RSS for a 1 GB output minus a 1 MB output < 64 MB; time-to-safety p50 <
0.5 s and p99 < 2 s at 50 concurrent predictions; orchestration overhead <= 30 ms per
prediction at K=1000.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.report import MiB, markdown, summarize, tts
from benchmarks.servers import emulator, prefect_server, run_env, tree_cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "r8_benchmark_token_not_secret_0000"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--k", type=int, default=200, help="predictions per run (default 200)")
    p.add_argument("--files", type=int, default=2, help="output files per prediction (1-8)")
    p.add_argument("--size", type=int, default=MiB, help="bytes per output file (default 1 MiB)")
    p.add_argument("--model-seconds", type=float, default=1.0, help="emulated model time")
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="pipeline items in flight for the main run (default: K, like raw)",
    )
    p.add_argument(
        "--tts-concurrency",
        type=int,
        default=50,
        help="items in flight for the time-to-safety run (default 50)",
    )
    p.add_argument(
        "--naive-k",
        type=int,
        default=None,
        help="predictions for the naive run (default K; fewer is extrapolated)",
    )
    p.add_argument("--overhead-k", type=int, default=1000, help="K of the tiny-file run")
    p.add_argument("--overhead-size", type=int, default=1024, help="bytes per tiny file")
    p.add_argument("--rss-size", type=int, default=1 << 30, help="the large output for RSS")
    p.add_argument(
        "--skip",
        default="",
        help="comma list of: serve,domain,raw_safe,naive,tts,overhead,rss,scale",
    )
    p.add_argument(
        "--scale",
        default="200,500,1000,2000",
        help="comma list of K for the growth table (raw and pipeline at each; '' for none)",
    )
    p.add_argument(
        "--scale-repeat",
        type=int,
        default=None,
        help="runs of each contender at each K of --scale (default: --repeat)",
    )
    p.add_argument(
        "--spy",
        default=None,
        help="py-spy: record the first main raw and pipeline runs into SPY-raw.txt and "
        "SPY-pipeline.txt (collapsed stacks)",
    )
    p.add_argument(
        "--spy-gil", action="store_true", help="py-spy --gil: only the thread holding the GIL"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each timed contender (alternating); the median is reported",
    )
    p.add_argument(
        "--profile", action="store_true", help="pyinstrument HTML profile of the main pipeline run"
    )
    p.add_argument("--out", default=str(ROOT / "bench-results"), help="results directory")
    return p.parse_args(argv)


# The servers' process ids, once started: "emulator" and "server" (`prefect server`); each run
# records the CPU seconds each spent meanwhile ("emulator_cpu", "server_cpu").
WATCHED: dict[str, int] = {}


def set_aside(dest: str | Path) -> None:
    """Empty a finished run's files without deleting them; the bench deletes them at its end.

    On a journal-less ext4 (this project's machines) every inode freed in the last minute is
    skipped, one by one, by each new inode allocation in its block group: deleting a run's
    thousands of files right before the next run taxes whichever contender creates more files,
    by more than the whole gap being measured. Truncating frees the bytes and their page cache
    (the next run reuses those pages; fresh ones cost a VM more) but no inode."""
    for root, _dirs, files in os.walk(dest):
        for name in files:
            path = os.path.join(root, name)
            try:
                os.chmod(path, 0o600)  # archived files are read-only
                os.truncate(path, 0)
            except OSError:
                pass


def run_contender(
    name: str, config: dict[str, Any], env: dict[str, str], spy: str | None = None
) -> dict[str, Any]:
    """One contender in a fresh interpreter; its JSON result line, plus the CPU seconds the
    emulator and the Prefect server spent meanwhile ("emulator_cpu", "server_cpu")."""
    os.sync()  # no run pays for the write-back of the previous run's files
    command = [sys.executable, "-m", "benchmarks.contenders", name, json.dumps(config)]
    if spy:
        spy_bin = str(Path(sys.executable).with_name("py-spy"))
        record = ["record", "--format", "raw", "--rate", "200", "-o", f"{spy}-{name}.txt"]
        if spy.endswith("+gil"):
            record.append("--gil")
        command = [spy_bin, *record, "--", *command]
    before = tree_cpu_seconds(WATCHED)
    result = subprocess.run(
        command,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{name} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    answer: dict[str, Any] = json.loads(lines[-1])
    for server, seconds in tree_cpu_seconds(WATCHED).items():
        answer[f"{server}_cpu"] = seconds - before[server]
    return answer


def run_median(
    name: str,
    config: dict[str, Any],
    env: dict[str, str],
    repeat: int,
    log: Any,
    spy: str | None = None,
) -> dict[str, Any]:
    """`repeat` runs (each with its own inputs and dest); the run with the median wall, plus
    every wall under "walls"."""
    results = []
    for attempt in range(max(1, repeat)):
        cfg = {**config, "run": f"{config['run']}-{attempt}", "dest": f"{config['dest']}-{attempt}"}
        results.append(run_contender(name, cfg, env, spy))
        set_aside(cfg["dest"])
        log(f"  {name} {config['k']}: {results[-1]['wall']:.2f}s")
    results.sort(key=lambda r: r["wall"])
    median = results[len(results) // 2]
    return {**median, "walls": [r["wall"] for r in results]}


def run_scale(
    ks: list[int],
    base: dict[str, Any],
    config: Any,
    env: dict[str, str],
    repeat: int,
    log: Any,
) -> list[dict[str, Any]]:
    """Raw and pipeline (full concurrency) at each K, alternating `repeat` times; the median
    run of each by wall. The pipeline's create limit is lifted to K per minute, as raw has none."""
    rows = []
    for k in ks:
        fast = {**env, "ARCHIVER_CREATE_RATE_PER_MINUTE": str(max(600, 60 * k))}
        runs: dict[str, list[dict[str, Any]]] = {"raw": [], "pipeline": []}
        for attempt in range(max(1, repeat)):
            for name in ("raw", "pipeline"):
                extra = {"concurrency": k} if name == "pipeline" else {}
                cfg = {**config(f"scale-{name}-{k}-{attempt}", **extra), **base, "k": k}
                runs[name].append(run_contender(name, cfg, fast if extra else env))
                set_aside(cfg["dest"])
                log(f"  scale {name} K={k}: {runs[name][-1]['wall']:.2f}s")
        row: dict[str, Any] = {"k": k}
        for name, results in runs.items():
            results.sort(key=lambda r: r["wall"])
            median = results[len(results) // 2]
            row[name] = {
                "wall": median["wall"],
                "walls": [r["wall"] for r in results],
                "cpu": median.get("cpu"),
                "peak_rss_mb": median["peak_rss"] / MiB,
                "emulator_cpu": median.get("emulator_cpu"),
                "server_cpu": median.get("server_cpu"),
                "tts": tts(median),
            }
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-", dir=out))
    figures: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "params": vars(args),
        "runs": {},
    }
    runs = figures["runs"]

    def log(text: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    try:
        (work / "prefect").mkdir()
        log("starting the emulator and a prefect server (not timed)")
        with (
            emulator(args.model_seconds) as (base_url, emulator_pid),
            prefect_server(work / "prefect") as (api_url, startup, server_pid),
        ):
            WATCHED.update(emulator=emulator_pid, server=server_pid)
            figures["prefect_server_startup_s"] = startup
            env = run_env(base_url, api_url, work, TOKEN)
            k = args.k
            base = {"k": k, "files": args.files, "size": args.size}

            def config(run: str, **extra: Any) -> dict[str, Any]:
                return {**base, "run": f"{work.name}-{run}", "dest": str(work / run), **extra}

            concurrency = args.concurrency or k
            profile = str(out / "pipeline-profile.html") if args.profile else None
            if "serve" not in skip:
                log("serve: what the emulator serves alone (raw script, bytes not written)")
                runs["serve"] = run_median("serve", config("serve"), env, args.repeat, log)
            log(
                f"raw and pipeline (concurrency {concurrency}): K={k} x {args.files} x "
                f"{args.size:,} B, {args.repeat} time(s) each"
            )
            # Rounds of raw and pipeline back to back, which goes first alternating (raw first in
            # even rounds): a machine whose speed drifts within minutes, or a run that taxes
            # the next one, favours neither. Each round's ratio is kept (`paired_ratios`).
            pairs = figures["paired_ratios"] = []
            for attempt in range(max(1, args.repeat)):
                spy = args.spy and (args.spy + ("+gil" if args.spy_gil else ""))
                spy = spy if attempt == 0 else None
                round_runs: dict[str, dict[str, Any]] = {}
                for name in ("raw", "pipeline") if attempt % 2 == 0 else ("pipeline", "raw"):
                    extra = {"concurrency": concurrency, "profile": profile}
                    cfg = config(f"{name}{attempt}", **(extra if name == "pipeline" else {}))
                    round_runs[name] = run_median(name, cfg, env, 1, log, spy=spy)
                    runs.setdefault(f"_{name}", []).append(round_runs[name])
                pairs.append(round_runs["pipeline"]["wall"] / round_runs["raw"]["wall"])
                if "domain" not in skip:  # the same batch code without Prefect
                    cfg = config(f"domain{attempt}", concurrency=concurrency)
                    runs.setdefault("_domain", []).append(run_median("domain", cfg, env, 1, log))
            for name in ("raw", "pipeline", "domain"):
                if f"_{name}" not in runs:
                    continue
                ordered = sorted(runs.pop(f"_{name}"), key=lambda r: r["wall"])
                runs[name] = {**ordered[len(ordered) // 2], "walls": [r["wall"] for r in ordered]}
            if "raw_safe" not in skip:
                log("raw_safe: the raw script plus sha256 and fsync of every file")
                runs["raw_safe"] = run_median("raw_safe", config("raw-safe"), env, args.repeat, log)
            if "tts" not in skip:
                log(f"pipeline at {args.tts_concurrency} concurrent predictions")
                runs["pipeline_tts"] = run_median(
                    "pipeline",
                    config("tts", concurrency=args.tts_concurrency),
                    env,
                    args.repeat,
                    log,
                )
            if "naive" not in skip:
                naive_k = min(args.naive_k or k, k)
                log(f"naive: K={naive_k} one after another")
                runs["naive"] = run_contender("naive", {**config("naive"), "k": naive_k}, env)
                runs["naive"]["extrapolated_wall"] = runs["naive"]["wall"] * k / naive_k
                log(f"naive: {runs['naive']['wall']:.2f}s")
            if "overhead" not in skip:
                ok = args.overhead_k
                tiny = {"k": ok, "files": 1, "size": args.overhead_size}
                # raw creates all K at once and the emulator has no rate limit: let the
                # pipeline's limit (its own global limit, created with these values) not bind.
                fast = {**env, "ARCHIVER_CREATE_RATE_PER_MINUTE": str(max(600, 60 * ok))}
                log(f"overhead: K={ok} tiny files, raw then pipeline")
                runs["overhead_raw"] = run_median(
                    "raw", {**config("overhead-raw"), **tiny}, env, args.repeat, log
                )
                runs["overhead_pipeline"] = run_median(
                    "pipeline",
                    {**config("overhead-pipeline"), **tiny, "concurrency": ok},
                    fast,
                    args.repeat,
                    log,
                )
            scale = [int(n) for n in args.scale.split(",") if n.strip()]
            if "scale" not in skip and scale:
                repeat = args.scale_repeat or args.repeat
                figures["scale"] = run_scale(scale, base, config, env, repeat, log)
            if "rss" not in skip:
                for label, size in (("rss_small", MiB), ("rss_large", args.rss_size)):
                    log(f"RSS: one prediction, one {size:,} B output")
                    runs[label] = run_contender(
                        "pipeline",
                        {**config(label), "k": 1, "files": 1, "size": size, "concurrency": 1},
                        env,
                    )
                    set_aside(work / label)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report = summarize(figures, args)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for name in (f"bench-{stamp}", "latest"):
        (out / f"{name}.json").write_text(json.dumps({**figures, "report": report}, indent=2))
        (out / f"{name}.md").write_text(markdown(figures, report))
    print(markdown(figures, report))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["catalog"]:  # `python -m benchmarks catalog`: find/verify/usage at scale
        from benchmarks.catalog import main as catalog

        raise SystemExit(catalog(sys.argv[2:]))
    if sys.argv[1:2] == ["adhoc"]:  # `python -m benchmarks adhoc`: the ad-hoc case alone
        from benchmarks.adhoc import main as adhoc

        raise SystemExit(adhoc(sys.argv[2:]))
    if sys.argv[1:2] == ["webhooks"]:  # `python -m benchmarks webhooks`: the receiver's soak
        from benchmarks.webhooks import main as webhooks

        raise SystemExit(webhooks(sys.argv[2:]))
    raise SystemExit(main())
