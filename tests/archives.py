"""Archives made by hand for catalog tests: predictions as `{relative path: bytes}`, written to
a local directory or through any fsspec filesystem, in manifest schema 1 or 2."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def prediction(
    pid: str,
    prompt: str,
    *,
    model: str = "black-forest-labs/flux-schnell",
    created: str = "2026-12-01T10:00:00Z",
    outputs: int = 2,
    predict_time: float = 2.0,
    schema: int = 1,
    extra_input: dict[str, Any] | None = None,
    images: bool = False,
) -> dict[str, bytes]:
    """A prediction's files and its manifest (last), paths relative to dest; `images`: the
    outputs are real PNGs (for galleries), else a few bytes of text."""
    directory = f"{model}/{created[:4]}/{created[5:7]}/{created[8:10]}/{pid}"
    files: dict[str, bytes] = {}
    entries = []
    for n in range(outputs):
        data = png(n) if images else f"{pid} output {n}".encode() * 10
        path = f"{directory}/out-{n}.png"
        files[path] = data
        entries.append(
            {
                "name": f"out-{n}.png",
                "path": path,
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "content_type": "image/png",
                "source_url": "https://replicate.delivery/x/out.png",
                "pointer": f"/{n}",
            }
        )
    doc: dict[str, Any] = {
        "schema_version": schema,
        "prediction_id": pid,
        "model": model,
        "version": "abc123",
        "status": "succeeded",
        "input": {"prompt": prompt, "seed": 1, **(extra_input or {})},
        "created_at": created,
        "metrics": {"predict_time": predict_time},
        "files": entries,
        "cache_key": hashlib.sha256(pid.encode()).hexdigest(),
        "directory": directory,
        "tool": {"name": "replicate-archiver", "version": "0.1.0"},
        "archived_at": created,
    }
    if schema >= 2:
        image = b"an input image" * 5
        logs = b"step 1\nstep 2\n"
        files[f"{directory}/inputs/image.png"] = image
        files[f"{directory}/logs.txt"] = logs
        doc["input_files"] = [
            _stored("image", f"{directory}/inputs/image.png", image, status="archived"),
            {"key": "mask", "index": None, "status": "reference", "source": "https://x/y.png"},
        ]
        doc["logs"] = {
            "path": f"{directory}/logs.txt",
            "size": len(logs),
            "sha256": hashlib.sha256(logs).hexdigest(),
        }
        doc["retention"] = {"deletes_at": "2026-12-01T11:00:00Z", "margin_seconds": 600}
    files[f"{directory}/manifest.json"] = json.dumps(doc, indent=2).encode()
    return files


def _stored(key: str, path: str, data: bytes, status: str) -> dict[str, Any]:
    return {
        "key": key,
        "index": None,
        "path": path,
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": "image/png",
        "source": "https://example.com/in.png",
        "status": status,
    }


def write_local(root: Path, files: dict[str, bytes]) -> None:
    """Outputs first, the manifest last (as the archiver writes)."""
    for path in sorted(files, key=lambda p: p.endswith("manifest.json")):
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[path])


def manifest_path(files: dict[str, bytes]) -> str:
    return next(p for p in files if p.endswith("/manifest.json"))


def png(shade: int) -> bytes:
    """A small real PNG image."""
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 48), (40 * shade % 256, 120, 200)).save(out, "PNG")
    return out.getvalue()


def flows_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m flows ARGS` with this environment plus `env` (no Prefect API needed)."""
    return subprocess.run(
        [sys.executable, "-m", "flows", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )
