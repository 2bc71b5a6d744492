"""What `python -m benchmarks` reports: the figures of its runs summed up (throughput,
time-to-safety percentiles, each target met or not) and the markdown table written beside the
JSON in bench-results/."""

from __future__ import annotations

import argparse
from typing import Any

MiB = 1 << 20


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


def tts(result: dict[str, Any]) -> dict[str, float | None]:
    delays = [safe - done for done, safe in result.get("safety", []) if done is not None]
    return {
        "p50": percentile(delays, 50),
        "p99": percentile(delays, 99),
        "max": max(delays) if delays else None,
        "n": len(delays),
    }


def throughput(result: dict[str, Any]) -> dict[str, float]:
    wall = result["wall"]
    return {
        "predictions_per_s": result["predictions"] / wall,
        "mb_per_s": result["bytes"] / MiB / wall,
    }


def summarize(figures: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    runs = figures["runs"]
    report: dict[str, Any] = {"rows": {}, "targets": []}
    for name, result in runs.items():
        report["rows"][name] = {
            **throughput(result),
            "wall_s": result["wall"],
            "tts": tts(result),
            "peak_rss_mb": result["peak_rss"] / MiB,
        }
    targets = report["targets"]
    raw, pipe = runs.get("raw"), runs.get("pipeline")
    if raw and pipe:
        ratio = pipe["wall"] / raw["wall"]
        k = pipe["predictions"]
        pairs = sorted(figures.get("paired_ratios") or [ratio])
        paired = pairs[len(pairs) // 2]
        report["paired_ratio"] = paired
        targets.append(
            (
                f"pipeline wall <= 1.15x raw at K={k} (median of {len(pairs)} back-to-back rounds)",
                f"{paired:.2f}x (rounds {pairs[0]:.2f}-{pairs[-1]:.2f}x)",
                paired <= 1.15,
            )
        )
        targets.append(("(context) median pipeline wall / median raw wall", f"{ratio:.2f}x", None))
        raw_p99, pipe_p99 = tts(raw)["p99"], tts(pipe)["p99"]
        if raw_p99 is not None and pipe_p99 is not None:
            targets.append(
                (
                    f"time-to-safety p99 <= raw's + 0.5 s at K={k}, full concurrency",
                    f"{pipe_p99:.2f} s vs {raw_p99:.2f} s",
                    pipe_p99 <= raw_p99 + 0.5,
                )
            )
    for row in figures.get("scale", []):
        if row["k"] >= 1000:
            ratio = row["pipeline"]["wall"] / row["raw"]["wall"]
            targets.append(
                (f"pipeline wall <= 1.25x raw at K={row['k']}", f"{ratio:.2f}x", ratio <= 1.25)
            )
    if runs.get("domain") and pipe:
        report["prefect_s"] = pipe["wall"] - runs["domain"]["wall"]
    if runs.get("raw_safe") and pipe:
        ratio = pipe["wall"] / runs["raw_safe"]["wall"]
        targets.append(("(context) pipeline wall / raw_safe wall", f"{ratio:.2f}x", ratio <= 1.25))
    naive = runs.get("naive")
    if naive and pipe:
        speedup = naive["extrapolated_wall"] / pipe["wall"]
        targets.append(("pipeline >= 10x faster than naive", f"{speedup:.1f}x", speedup >= 10))
    if "rss_small" in runs and "rss_large" in runs:
        delta = (runs["rss_large"]["peak_rss"] - runs["rss_small"]["peak_rss"]) / MiB
        targets.append(
            (
                f"peak RSS {args.rss_size / MiB / 1024:g} GiB - 1 MiB output < 64 MB",
                f"{delta:.1f} MB",
                delta < 64,
            )
        )
    if "pipeline_tts" in runs:
        t = tts(runs["pipeline_tts"])
        if t["p50"] is not None:
            targets.append(
                (
                    f"time-to-safety p50 < 0.5 s at {args.tts_concurrency} concurrent",
                    f"{t['p50']:.3f} s",
                    t["p50"] < 0.5,
                )
            )
            targets.append(
                (
                    f"time-to-safety p99 < 2 s at {args.tts_concurrency} concurrent",
                    f"{t['p99']:.3f} s",
                    t["p99"] < 2,
                )
            )
    if "overhead_raw" in runs and "overhead_pipeline" in runs:
        k = runs["overhead_pipeline"]["predictions"]
        per = (runs["overhead_pipeline"]["wall"] - runs["overhead_raw"]["wall"]) / k * 1000
        targets.append((f"overhead <= 30 ms per prediction at K={k}", f"{per:.1f} ms", per <= 30))
    if raw and pipe:
        per = (pipe["wall"] - raw["wall"]) / pipe["predictions"] * 1000
        report["overhead_ms_main"] = per
    return report


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(figures: dict[str, Any], report: dict[str, Any]) -> str:
    p = figures["params"]
    lines = [
        f"# Benchmark {figures['when']}",
        "",
        (
            f"K={p['k']} predictions x {p['files']} file(s) x {p['size']:,} B, model time "
            f"{p['model_seconds']} s; emulator and `prefect server` in their own processes "
            f"(server start {figures.get('prefect_server_startup_s', 0):.1f} s, not timed); "
            f"{figures['machine']['cpus']} CPUs."
        ),
        "",
        (
            "| run | K | wall s (median) | all walls s | predictions/s | MB/s | TTS p50 s "
            "| TTS p99 s | peak RSS MB | CPU s | emulator CPU s | Prefect server CPU s |"
        ),
        "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in report["rows"].items():
        run = figures["runs"][name]
        wall = _f(row["wall_s"])
        if "extrapolated_wall" in run and run["predictions"] != p["k"]:
            wall += f" (→ {run['extrapolated_wall']:.1f} at K={p['k']})"
        walls = ", ".join(f"{w:.2f}" for w in run.get("walls", [run["wall"]]))
        lines.append(
            f"| {name} | {run['predictions']} | {wall} | {walls} | {row['predictions_per_s']:.1f} | "
            f"{row['mb_per_s']:.1f} | {_f(row['tts']['p50'], 3)} | {_f(row['tts']['p99'], 3)} | "
            f"{row['peak_rss_mb']:.0f} | {_f(run.get('cpu'))} | {_f(run.get('emulator_cpu'))} | "
            f"{_f(run.get('server_cpu'))} |"
        )
    lines += ["", "| target | measured | met |", "| --- | ---: | :---: |"]
    for name, measured, met in report["targets"]:
        verdict = "–" if met is None else "yes" if met else "**no**"
        lines.append(f"| {name} | {measured} | {verdict} |")
    if figures.get("scale"):
        lines += [
            "",
            "Growth with K (median of the runs; pipeline at full concurrency; wall, CPU seconds "
            "of the contender's process, its peak RSS, and the CPU seconds of the emulator and of "
            "the Prefect server meanwhile):",
            "",
            "| K | raw wall s | pipeline wall s | ratio | raw CPU s | pipeline CPU s | raw RSS MB "
            "| pipeline RSS MB | emulator CPU s raw / pipeline | Prefect server CPU s raw / "
            "pipeline | TTS p99 s raw / pipeline |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for row in figures["scale"]:
            r, q = row["raw"], row["pipeline"]
            lines.append(
                f"| {row['k']} | {r['wall']:.2f} | {q['wall']:.2f} | {q['wall'] / r['wall']:.2f}x "
                f"| {_f(r['cpu'])} | {_f(q['cpu'])} | {r['peak_rss_mb']:.0f} "
                f"| {q['peak_rss_mb']:.0f} | {_f(r['emulator_cpu'])} / {_f(q['emulator_cpu'])} "
                f"| {_f(r['server_cpu'])} / {_f(q['server_cpu'])} "
                f"| {_f(r['tts']['p99'])} / {_f(q['tts']['p99'])} |"
            )
    serve = figures["runs"].get("serve")
    if serve:
        lines += [
            "",
            (
                f"The emulator alone (`serve`: every create and every byte received, nothing "
                f"written) at K={serve['predictions']}: {serve['wall']:.2f} s, "
                f"{serve['bytes'] / MiB / serve['wall']:.0f} MB/s, "
                f"{serve['predictions'] / serve['wall']:.0f} predictions/s, emulator CPU "
                f"{_f(serve.get('emulator_cpu'))} s."
            ),
        ]
    if "prefect_s" in report:
        lines += [
            "",
            (
                f"What Prefect adds (pipeline wall - domain wall, the same batch code without a "
                f"flow): {report['prefect_s']:.2f} s."
            ),
        ]
    if "overhead_ms_main" in report:
        lines += [
            "",
            (
                f"Main run overhead: {report['overhead_ms_main']:.1f} ms per prediction "
                "(pipeline wall - raw wall) / K."
            ),
        ]
    return "\n".join(lines) + "\n"
