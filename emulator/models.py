"""Built-in emulated models: their input schemas, validation and (deterministic) outputs.

Which ``owner/name`` exist is the `ModelRegistry`'s business: the built-ins, a few real names
(``black-forest-labs/flux-schnell``...) and whatever a test or user registers; as on Replicate,
any other name is unknown (404), and a version other than the model's own is invalid (422).
Every known name that no built-in reserves runs the demo image model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.files import FileRef, FileText, OutputFile
from emulator.images import render_png

DEMO_MODEL = "emulator/image"
VERSION_CREATED_AT = "2024-01-01T00:00:00.000000Z"
COG_VERSION = "0.13.0"

#: Names the demo image model uses when ``hostile_filenames`` is on (cycled by output index).
HOSTILE_NAMES: tuple[str, ...] = (
    "../../etc/passwd.png",
    "a/b\\c.png",
    "line\nbreak\x00.png",
    "..",
    "dup.png",
    "dup.png",
    "n" * 296 + ".png",
    "snow ☃ 日本語 é.png",
)


def version_id(model: str) -> str:
    """The deterministic version id of ``owner/name``: ``sha256("owner/name")`` in hex."""
    return hashlib.sha256(model.encode()).hexdigest()


class InputError(ValueError):
    """Prediction input that fails the model's input schema."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"- {field}: {message}" for field, message in problems))


@dataclass(frozen=True)
class Produced:
    """What a finished prediction yields: an output template (with FileRefs) and its files."""

    template: Any
    files: list[OutputFile]


def _int(title: str, default: int | None, minimum: int, maximum: int) -> dict[str, Any]:
    prop: dict[str, Any] = {"type": "integer", "title": title, "minimum": minimum}
    prop["maximum"] = maximum
    if default is not None:
        prop["default"] = default
    return prop


PROMPT = {"type": "string", "title": "Prompt", "default": ""}
SEED = _int("Seed", 0, 0, 2**53)
SIZE = {"width": _int("Width", 256, 16, 1024), "height": _int("Height", 256, 16, 1024)}
URI_LIST = {"type": "array", "items": {"type": "string", "format": "uri"}}
SIZE_DEFAULTS = {"prompt": "echo", "seed": 0, "width": 16, "height": 16}


@dataclass(frozen=True)
class ModelSpec:
    """A built-in model: schemas for ``GET /v1/models/...`` plus a produce function."""

    name: str
    description: str
    inputs: dict[str, dict[str, Any]]
    output_schema: dict[str, Any]
    produce: Callable[[dict[str, Any], bool], Produced]
    required: tuple[str, ...] = ()

    def validate(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Apply defaults and check types/ranges; raise :class:`InputError` on problems."""
        problems: list[tuple[str, str]] = []
        clean = dict(raw)
        for name, prop in self.inputs.items():
            value = raw.get(name)
            if value is None:
                if name in self.required:
                    problems.append((f"input.{name}", f"{name} is required"))
                elif "default" in prop:
                    clean[name] = prop["default"]
                continue
            expected = prop["type"]
            if expected == "integer" and (isinstance(value, bool) or not isinstance(value, int)):
                problems.append(
                    (f"input.{name}", f"Invalid type. Expected: integer, given: {value!r}")
                )
            elif expected == "string" and not isinstance(value, str):
                problems.append(
                    (f"input.{name}", f"Invalid type. Expected: string, given: {value!r}")
                )
            elif expected == "integer" and value < prop["minimum"]:
                problems.append(
                    (f"input.{name}", f"Must be greater than or equal to {prop['minimum']}")
                )
            elif expected == "integer" and value > prop["maximum"]:
                problems.append(
                    (f"input.{name}", f"Must be less than or equal to {prop['maximum']}")
                )
        if problems:
            raise InputError(problems)
        return clean

    def openapi_schema(self) -> dict[str, Any]:
        """A Cog-style OpenAPI document with ``Input`` and ``Output`` component schemas."""
        properties = {
            name: {**prop, "x-order": order}
            for order, (name, prop) in enumerate(self.inputs.items())
        }
        input_schema: dict[str, Any] = {
            "type": "object",
            "title": "Input",
            "properties": properties,
        }
        if self.required:
            input_schema["required"] = list(self.required)
        return {
            "openapi": "3.0.2",
            "info": {"title": "Cog", "version": "0.1.0"},
            "paths": {},
            "components": {
                "schemas": {
                    "Input": input_schema,
                    "Output": {"title": "Output", **self.output_schema},
                }
            },
        }


def _png(input_: dict[str, Any], index: int, name: str) -> OutputFile:
    data = render_png(input_["prompt"], input_["seed"], index, input_["width"], input_["height"])
    return OutputFile.from_bytes(name, "image/png", data)


def _image(input_: dict[str, Any], hostile: bool) -> Produced:
    count = input_["num_outputs"]
    names = [
        HOSTILE_NAMES[i % len(HOSTILE_NAMES)] if hostile else f"out-{i}.png" for i in range(count)
    ]
    files = [_png(input_, i, name) for i, name in enumerate(names)]
    return Produced([FileRef(i) for i in range(count)], files)


def _single(input_: dict[str, Any], hostile: bool) -> Produced:
    return Produced(FileRef(0), [_png(input_, 0, "output.png")])


def _reply(input_: dict[str, Any]) -> str:
    return f"Emulated reply to {input_['prompt']!r} with seed {input_['seed']}."


def _text(input_: dict[str, Any], hostile: bool) -> Produced:
    words = _reply(input_).split()
    return Produced([word if i == 0 else f" {word}" for i, word in enumerate(words)], [])


def _large(input_: dict[str, Any], hostile: bool) -> Produced:
    count, size, seed = input_["num_outputs"], input_["size_bytes"], input_["seed"]
    files = [OutputFile.generated(f"blob-{i}.bin", size, seed, i) for i in range(count)]
    return Produced([FileRef(i) for i in range(count)], files)


def _mixed(input_: dict[str, Any], hostile: bool) -> Produced:
    meta = json.dumps({"prompt": input_["prompt"], "seed": input_["seed"]}, sort_keys=True)
    files = [
        _png(input_, 0, "image.png"),
        OutputFile.from_bytes("data.json", "application/json", meta.encode()),
        OutputFile.from_bytes("notes.txt", "text/plain; charset=utf-8", _reply(input_).encode()),
    ]
    template = {
        "image": FileRef(0),
        "caption": f"A picture of {input_['prompt']}",
        "files": [FileRef(1), FileRef(2)],
    }
    return Produced(template, files)


def _echo(input_: dict[str, Any], hostile: bool) -> Produced:
    """The `output` input (JSON text, else the text itself) as the output; each string in it
    holding `{delivery}` gets one PNG's signed delivery URL there, without its scheme."""
    try:
        value = json.loads(input_["output"])
    except ValueError:
        value = input_["output"]
    files: list[OutputFile] = []

    def render(node: Any) -> Any:
        if isinstance(node, str) and "{delivery}" in node:
            files.append(_png({**input_, **SIZE_DEFAULTS}, len(files), f"echo-{len(files)}.png"))
            return FileText(len(files) - 1, node)
        if isinstance(node, list):
            return [render(item) for item in node]
        if isinstance(node, dict):
            return {key: render(item) for key, item in node.items()}
        return node

    return Produced(render(value), files)


NUM_OUTPUTS = _int("Num Outputs", 1, 1, 8)
_IMAGE_INPUTS = {"prompt": PROMPT, "num_outputs": NUM_OUTPUTS, "seed": SEED, **SIZE}

BUILTIN_MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            DEMO_MODEL,
            "Demo image model: the prompt on a seeded gradient (PNG).",
            _IMAGE_INPUTS,
            URI_LIST,
            _image,
        ),
        ModelSpec(
            "emulator/single-file",
            "One PNG, returned as a single URL string.",
            {"prompt": PROMPT, "seed": SEED, **SIZE},
            {"type": "string", "format": "uri"},
            _single,
        ),
        ModelSpec(
            "emulator/text",
            "A short deterministic reply, as a list of word tokens.",
            {"prompt": PROMPT, "seed": SEED},
            {
                "type": "array",
                "items": {"type": "string"},
                "x-cog-array-type": "iterator",
                "x-cog-array-display": "concatenate",
            },
            _text,
        ),
        ModelSpec(
            "emulator/large-file",
            "Large generated binary files (streamed, never in memory).",
            {
                "size_bytes": _int("Size Bytes", None, 0, 2**44),
                "num_outputs": NUM_OUTPUTS,
                "seed": SEED,
            },
            URI_LIST,
            _large,
            required=("size_bytes",),
        ),
        ModelSpec(
            "emulator/mixed",
            "An object with an image URL, a caption and a list of files.",
            {"prompt": PROMPT, "seed": SEED, **SIZE},
            {
                "type": "object",
                "properties": {
                    "image": {"type": "string", "format": "uri"},
                    "caption": {"type": "string"},
                    "files": URI_LIST,
                },
            },
            _mixed,
        ),
        ModelSpec(
            "emulator/echo",
            "Any output: the `output` input (JSON, else text) verbatim; `{delivery}` in a "
            "string becomes a PNG's signed delivery URL without its scheme (`HTTP://{delivery}`).",
            {"output": {"type": "string", "title": "Output", "default": "null"}},
            {"title": "Output"},
            _echo,
        ),
    )
}


def resolve_model(name: str) -> ModelSpec:
    """The built-in model reserved for ``name``, else the demo image model."""
    return BUILTIN_MODELS.get(name, BUILTIN_MODELS[DEMO_MODEL])


#: Real models (and a real version) the emulator knows out of the box; they run the demo image
#: model, so the README's and a newcomer's first commands work offline.
WELL_KNOWN_MODELS: tuple[str, ...] = (
    "black-forest-labs/flux-schnell",
    "black-forest-labs/flux-dev",
    "black-forest-labs/flux-1.1-pro",
    "stability-ai/sdxl:7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc",
    "stability-ai/stable-diffusion-3",
    "bytedance/sdxl-lightning-4step",
)


class ModelRegistry:
    """The models that exist on this emulator, and their versions.

    Each known ``owner/name`` has its own deterministic version (`version_id`); registering
    ``owner/name:VERSION`` adds that version too. ``any_model`` makes every name exist (each
    with its own version only).
    """

    def __init__(self, extra: tuple[str, ...] | list[str] = (), *, any_model: bool = False):
        self.any_model = any_model
        self._names: set[str] = set()
        self._versions: dict[str, str] = {}  # extra version id -> owner/name
        self.register(*BUILTIN_MODELS, *WELL_KNOWN_MODELS, *extra)

    def register(self, *names: str) -> None:
        """Make ``owner/name`` (with ``:VERSION``: that version too) exist from now on."""
        for name in names:
            model, _, version = name.partition(":")
            self._names.add(model)
            if version:
                self._versions[version] = model

    def knows(self, model: str) -> bool:
        return self.any_model or model in self._names

    def has_version(self, model: str, version: str) -> bool:
        """True if ``version`` is one of known ``model``'s versions."""
        return self.knows(model) and (
            version == version_id(model) or self._versions.get(version) == model
        )

    def model_of(self, version: str) -> str | None:
        """The model a registered extra version belongs to."""
        return self._versions.get(version)
