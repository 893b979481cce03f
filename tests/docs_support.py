"""Checks that keep the README and docs/ true to the repository they describe.

    problems(Path("."))   # [] when every check holds, else one line per problem: "FILE:LINE: what"

Which documents: README.md, CONTRIBUTING.md and every docs/**/*.md.

1. Every `mlops` command and option they name exists. A command is named where a code span or a
   line of a code block runs one: `mlops local --drift`, `.venv/bin/mlops data prepare cnn`, or
   `./dev.sh local --network rnn` (which runs `mlops local`). The words after `mlops` are walked
   down the CLI's own command tree (typer's click commands, not its help text): a word that is a
   subcommand descends, an `--option` must be one of the command reached, anything else is an
   argument or a placeholder (NETWORK, [--version N]) and is skipped; a word where a group wants a
   subcommand must be one. Every `./dev.sh COMMAND` named must be a command of dev.sh.
2. Every relative link resolves: `[text](path)` and `![alt](path)` to a file or folder of the
   repository, and a `#fragment` to a heading of the page it names.
3. Every figure outside docs/benchmarks.md carries a date. A figure is a measurement as the docs
   write one: a number with an abbreviated unit of time (`47.6 s`, `9.3 ms`, `17.5-19.2 ms`,
   `12 min`) or a rate (`2,368 requests/s`, `9,500-14,000 samples/s`). Settings are written in
   words or as code (`after 60 seconds`, `Period: 300`, `rate(7 days)`), and code spans are not
   read here; a code block is (a sample output with times needs its date too). The date (`7 Dec
   2026`, `2026-12-07`, `December 2026`) must be in the figure's block (a paragraph, a list item,
   a table, a code block) or in the block just before it (a table's or an output's caption).
   In docs/benchmarks.md every section (`## ...`) holding a figure names its date, the CPU it ran
   on and the command that measures it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A command of typer's command tree: typer builds it with the click it vendors (`typer._click`).
CliCommand = Any


BENCHMARKS = Path("docs/benchmarks.md")
_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_MLOPS = re.compile(r"(?:^|(?<=[\s(`;|&]))(?:\S*/)?(mlops|\./dev\.sh)(?=\s|$)((?:\s+\S+)*)")
_NUMBER = r"\d[\d,]*(?:\.\d+)?"
FIGURE = re.compile(
    rf"(?<![\w.-]){_NUMBER}(?:\s?(?:-|\u2013|to)\s?{_NUMBER})?"
    r"(?:\s?(?:µs|us|ms|s|min|h)\b(?!/)|\s(?:[a-z]+/s|/s)\b)"
)
DATE = re.compile(
    r"\b\d{4}-\d{2}-\d{2}\b|\b(?:\d{1,2}\s)?(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?\s\d{4}\b"
)
CPU = re.compile(r"\b(?:AMD|Intel|EPYC|Xeon|CPU|cores?)\b")
COMMAND = re.compile(r"benchmarks/\w+\.py|\bmlops\s+\w|\./dev\.sh\s+\w|\bpytest\b")


@dataclass(frozen=True)
class Block:
    """Consecutive non-blank lines (or one code block), as (line number, text) pairs."""

    lines: tuple[tuple[int, str], ...]
    code: bool

    @property
    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


def documents(root: Path) -> list[Path]:
    return [root / "README.md", root / "CONTRIBUTING.md", *sorted((root / "docs").rglob("*.md"))]


def problems(root: Path, cli: CliCommand = None) -> list[str]:
    """Every problem of the documents under `root`, checked against `cli` (default: `mlops`'s)."""
    if cli is None:
        import typer

        from mlops.cli import app

        cli = typer.main.get_command(app)
    dev_commands = set(re.findall(r"^\s*([a-z][\w-]*)\)", (root / "dev.sh").read_text(), flags=re.MULTILINE))
    found = []
    for path in documents(root):
        if not path.exists():
            continue
        name = path.relative_to(root).as_posix()
        blocks = list(_blocks(path.read_text()))
        found += [f"{name}:{line}: {problem}" for line, problem in _commands(blocks, cli, dev_commands)]
        found += [f"{name}:{line}: {problem}" for line, problem in _links(blocks, path, root)]
        if name == BENCHMARKS.as_posix():
            found += [f"{name}:{line}: {problem}" for line, problem in _benchmark_sections(blocks)]
        else:
            found += [f"{name}:{line}: {problem}" for line, problem in _undated_figures(blocks)]
    return found


def _blocks(text: str) -> Iterator[Block]:
    lines = text.splitlines()
    current: list[tuple[int, str]] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _FENCE.match(line):
            if current:
                yield Block(tuple(current), code=False)
                current = []
            fence = [(index + 1, line)]
            index += 1
            while index < len(lines) and not _FENCE.match(lines[index]):
                fence.append((index + 1, lines[index]))
                index += 1
            yield Block(tuple(fence[1:]), code=True)
        elif line.strip():
            # A list item or a heading starts a block of its own.
            if current and (re.match(r"\s*([-*+]|\d+\.)\s", line) or line.startswith("#")):
                yield Block(tuple(current), code=False)
                current = []
            current.append((index + 1, line))
        elif current:
            yield Block(tuple(current), code=False)
            current = []
        index += 1
    if current:
        yield Block(tuple(current), code=False)


def _code(blocks: list[Block]) -> Iterator[tuple[int, str]]:
    """Each piece of code the documents show: code block lines (less comments), and code spans."""
    for block in blocks:
        for number, line in block.lines:
            if block.code:
                yield number, re.sub(r"\s#\s.*$", "", line)
            else:
                for span in _CODE_SPAN.finditer(line):
                    yield number, span.group(2)


def _commands(blocks: list[Block], cli: CliCommand, dev_commands: set[str]) -> Iterator[tuple[int, str]]:
    for number, code in _code(blocks):
        for match in _MLOPS.finditer(code):
            # Its words end where the shell starts another command.
            words = re.split(r"\s(?:\||&&|;|#)\s", match.group(2) + " ")[0].split()
            if match.group(1) == "./dev.sh":
                if not words or not words[0][0].isalpha() or words[0].isupper():
                    continue
                if words[0] not in dev_commands:
                    yield number, f"`./dev.sh {words[0]}`: dev.sh has no command {words[0]!r}"
                    continue
                if words[0] != "local":
                    continue
                words = ["local", *words[1:]]  # ./dev.sh local ARGS runs `mlops local ARGS`
            problem = _walk(cli, words)
            if problem:
                yield number, f"`{' '.join([match.group(1), *words])}`: {problem}"


def _walk(cli: CliCommand, words: list[str]) -> str | None:
    command, path = cli, ["mlops"]
    for raw in words:
        word = raw.strip("[](){},;:.'\"")
        if not word or word in ("|", "...", "…"):
            continue
        if word.isupper() or "<" in word:
            return None  # a placeholder (COMMAND, <network>): what follows is not named here
        if word.startswith("--"):
            option = word.split("=", 1)[0]
            if option not in _options(command):
                return f"{' '.join(path)} has no option {option}"
        elif hasattr(command, "commands") and not word.startswith("-"):  # a group
            subcommand = command.commands.get(word)
            if subcommand is None:
                return f"{' '.join(path)} has no command {word!r}"
            command, path = subcommand, [*path, word]
    return None


def _options(command: CliCommand) -> set[str]:
    names = {"--help"}
    for parameter in command.params:
        if parameter.param_type_name == "option":
            names.update(name for name in (*parameter.opts, *parameter.secondary_opts) if name.startswith("--"))
    return names


def _links(blocks: list[Block], path: Path, root: Path) -> Iterator[tuple[int, str]]:
    for block in blocks:
        if block.code:
            continue
        for number, line in block.lines:
            for match in _LINK.finditer(_CODE_SPAN.sub("", line)):
                target = match.group(1)
                if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
                    continue
                file_part, _, fragment = target.partition("#")
                resolved = (path.parent / file_part).resolve() if file_part else path.resolve()
                if not resolved.exists():
                    yield number, f"link to {target}: {os.path.relpath(resolved, root.resolve())} does not exist"
                elif fragment and resolved.suffix == ".md" and fragment not in _anchors(resolved):
                    yield number, f"link to {target}: no heading #{fragment} in {resolved.name}"


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for the page's headings."""
    anchors = set()
    for block in _blocks(path.read_text()):
        if block.code:
            continue
        for _, line in block.lines:
            heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
            if heading:
                text = _CODE_SPAN.sub(lambda span: span.group(2), heading.group(1)).lower()
                anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def _undated_figures(blocks: list[Block]) -> Iterator[tuple[int, str]]:
    for index, block in enumerate(blocks):
        context = block.text + ("\n" + blocks[index - 1].text if index else "")
        if DATE.search(context):
            continue
        for number, line in block.lines:
            readable = line if block.code else _CODE_SPAN.sub("", line)
            for figure in FIGURE.finditer(readable):
                yield (
                    number,
                    f"figure {figure.group(0)!r} has no date in its block or the one before "
                    f"(date it, or give it a section of {BENCHMARKS} with its date, CPU and command)",
                )


def _benchmark_sections(blocks: list[Block]) -> Iterator[tuple[int, str]]:
    sections: list[list[Block]] = []
    for block in blocks:
        if (not block.code and block.text.startswith("## ")) or not sections:
            sections.append([])
        sections[-1].append(block)
    for section in sections:
        text = "\n".join(block.text if block.code else _CODE_SPAN.sub(r"\2", block.text) for block in section)
        figures = any(FIGURE.search(block.text if block.code else _CODE_SPAN.sub("", block.text)) for block in section)
        if not figures:
            continue
        missing = [
            what for what, pattern in (("date", DATE), ("CPU", CPU), ("command", COMMAND)) if not pattern.search(text)
        ]
        if missing:
            yield section[0].lines[0][0], f"a section with figures names no {', no '.join(missing)}"
