"""What README.md and docs/ tell a user to type exists: commands, their options, make targets."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

import typer

from tests.conftest import ROOT

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`]+)`")
PROGRAMS = {
    "python -m flows": "flows",
    "replicate-archiver": "flows",
    "python -m deployments": "deployments",
}


def pages() -> list:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def snippets(text: str) -> Iterator[str]:
    """Every shell command a page shows: lines of code blocks, and inline code spans."""
    for block in FENCE.findall(text):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"^\$ ", "", line)
            line = re.split(r"\s#", line, maxsplit=1)[0]  # a comment
            yield from re.split(r"\s(?:&&|\||;)\s", line)
    for span in INLINE.findall(FENCE.sub("", text)):
        yield " ".join(span.split())


def words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:  # an unbalanced quote in prose
        return command.split()


def invocations(text: str) -> Iterator[tuple[str, list[str]]]:
    """(program, the words after it) for each command line of a documented program."""
    for snippet in snippets(text):
        for prefix, program in PROGRAMS.items():
            for match in re.finditer(rf"(?:^|[\s/]){re.escape(prefix)}(?=\s|$)", snippet):
                yield program, words(snippet[match.end() :])


def cli(program: str) -> Any:
    """The program's command tree (typer's click objects: groups have `commands`)."""
    if program == "flows":
        from cli.app import app
    else:
        from deployments.__main__ import app
    command = typer.main.get_command(app)
    assert hasattr(command, "commands")
    return command


def emulator_options() -> set[str]:
    """`python -m flows emulator` hands its arguments to the emulator's own command."""
    from emulator.cli import emulator_command

    app = typer.Typer()
    app.command()(emulator_command)
    return options(typer.main.get_command(app))


def options(command: Any) -> set[str]:
    found = {"--help"}
    for param in command.params:
        found.update(param.opts)
        found.update(param.secondary_opts)
    return found


def problems(program: str, argv: list[str], root: Any) -> Iterator[str]:
    """What in `argv` is not a command, subcommand or option of the program."""
    command = root
    rest = list(argv)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        names = rest.pop(0).split("|")
        missing = [name for name in names if name not in command.commands]
        if missing:
            yield f"{program}: no command {missing[0]!r}"
            return
        if len(names) > 1:  # `server status|stop`: alternatives, options not theirs to check
            return
        command = command.commands[names[0]]
    if hasattr(command, "commands"):  # a group named alone
        return
    known = (
        emulator_options() if (program, command.name) == ("flows", "emulator") else options(command)
    )
    for word in rest:
        word = word.strip("[](),.;:")
        if not re.match(r"--?[A-Za-z]", word):
            continue
        for option in word.split("=", 1)[0].split("|")[0].split("/"):
            if option.startswith("-") and option not in known:
                yield f"{program} {command.name}: no option {option!r}"


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets: set[str] = set()
    for line in re.findall(r"^([A-Za-z][\w -]*?)\s*:(?!=)", text, re.MULTILINE):
        targets.update(line.split())
    return targets


def test_documented_commands_and_options_exist():
    """A renamed or removed command, subcommand or option still shown in the docs fails here."""
    roots = {program: cli(program) for program in set(PROGRAMS.values())}
    broken, seen = [], 0
    for page in pages():
        for program, argv in invocations(page.read_text(encoding="utf-8")):
            seen += 1
            broken += [
                f"{page.relative_to(ROOT)}: {p}" for p in problems(program, argv, roots[program])
            ]
    assert seen > 50, "the docs show fewer commands than expected: is the extraction broken?"
    assert not broken, "\n".join(sorted(set(broken)))


def test_documented_make_targets_exist():
    """Every `make TARGET` the docs show is a target of the Makefile."""
    targets = make_targets()
    broken = []
    for page in pages():
        for snippet in snippets(page.read_text(encoding="utf-8")):
            for target in re.findall(r"(?:^|\s)make ([a-z][\w-]*)(?=\s|$)", snippet):
                if target not in targets:
                    broken.append(f"{page.relative_to(ROOT)}: make {target}")
    assert {"demo", "test", "server", "worker"} <= targets
    assert not broken, "\n".join(sorted(set(broken)))


def test_the_readme_stays_a_short_read():
    """The README is an entry point of at most 200 lines; the rest belongs in docs/."""
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move detail into docs/"
