"""The documentation against the code, so neither can drift (after sqlite-utils' test that
every command is documented).

Every `ocrq ...` command line in README.md and docs/*.md, in a fenced code block or in
inline code, must name a real command and only options that command has (walked in the
real click CLI, `producer.cli.cli`); every ocrq command, `ocrq models` subcommands
included, must appear somewhere in those files. Failures name the file and line. Also:
README.md stays a short page for a new user, `make` targets and repository paths the docs
cite exist, and relative links (with their #anchors) resolve.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

from producer.cli import cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_FILES = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 150

FENCE = re.compile(r"^\s*(```+|~~~+)")
# An inline code span: backticks, text that does not cross a blank line, the same backticks.
INLINE = re.compile(r"(?<!`)(`+)(?!`)((?:(?!\n[ \t]*\n).)+?)(?<!`)\1(?!`)", re.S)
# Shell tokens that end a command (pipes, lists, redirections).
SHELL_STOPS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>&1", "2>", "&>"}
# Tokens that stand for "any arguments" in prose.
PLACEHOLDERS = {"...", "…"}
# Backticked repository paths the docs cite (`worker/pipeline.py`, `models/ppocr/`).
REPO_PATH = re.compile(
    r"^(?:ocrq|worker|producer|models|bench|scripts|tests|docs|samples|\.ci)/[\w./-]*$"
)


@dataclass(frozen=True)
class Snippet:
    """One piece of code in a doc: a fenced block's logical line or an inline span."""

    path: Path
    line: int
    text: str
    fenced: bool

    @property
    def where(self) -> str:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{shown}:{self.line}"

    def tokens(self) -> list[str]:
        try:
            return shlex.split(self.text, comments=self.fenced)
        except ValueError:  # an unbalanced quote in prose: plain words will do
            return self.text.split()


def snippets(path: Path) -> list[Snippet]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Snippet] = []
    prose: list[str] = []  # the file with fenced blocks blanked out, line numbers kept
    fence: str | None = None
    held: tuple[int, str] | None = None  # a fenced line continued with a backslash
    for number, line in enumerate(lines, 1):
        opening = FENCE.match(line)
        if fence is None:
            if opening:
                fence = opening.group(1)
                prose.append("")
            else:
                prose.append(line)
            continue
        prose.append("")
        if opening and opening.group(1).startswith(fence[0]) and line.strip() == opening.group(1):
            fence = None
            if held:
                found.append(Snippet(path, held[0], held[1], True))
                held = None
            continue
        start, text = held if held else (number, "")
        text = f"{text} {line}" if text else line
        if text.rstrip().endswith("\\"):
            held = (start, text.rstrip()[:-1])
        else:
            held = None
            found.append(Snippet(path, start, text, True))
    text = "\n".join(prose)
    for match in INLINE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append(Snippet(path, line, " ".join(match.group(2).split()), False))
    return sorted(found, key=lambda s: s.line)


def ocrq_commands(snippet: Snippet) -> list[list[str]]:
    """The argument lists that follow each `ocrq` token in the snippet."""
    tokens = snippet.tokens()
    commands = []
    for index, token in enumerate(tokens):
        if token != "ocrq":
            continue
        args = []
        for arg in tokens[index + 1 :]:
            if arg in SHELL_STOPS or arg.startswith((">", "2>")):
                break
            args.append(arg)
        commands.append(args)
    return commands


def _find_option(ctx: click.Context, name: str) -> click.Parameter | None:
    for param in ctx.command.get_params(ctx):  # ctx.command.params plus --help / -h
        if isinstance(param, click.Option) and name in (*param.opts, *param.secondary_opts):
            return param
    return None


def _takes_value(param: click.Parameter) -> bool:
    return isinstance(param, click.Option) and not param.is_flag and not param.count


def _bad_choice(param: click.Parameter, value: str) -> str | None:
    """A documented value outside a click.Choice (`a|b` in prose names several)."""
    if not isinstance(param.type, click.Choice) or value in PLACEHOLDERS:
        return None
    if value.isupper() or value.startswith(("$", "<", "{")):  # a placeholder: NAME, $VAR
        return None
    wrong = [part for part in value.split("|") if part not in param.type.choices]
    return ", ".join(wrong) or None


def check_command(args: list[str], where: str, seen: set[tuple[str, ...]]) -> list[str]:
    """Problems with one `ocrq ARGS` line; the command paths it names are added to seen."""
    ctx = click.Context(cli, info_name="ocrq")
    path: tuple[str, ...] = ()
    problems = []
    shown = " ".join(["ocrq", *args])
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        name = " ".join(["ocrq", *path])
        if arg in PLACEHOLDERS:
            continue
        if arg.startswith("-") and arg != "-":
            option, equals, value = arg.partition("=")
            param = _find_option(ctx, option)
            if param is None:
                problems.append(f"{where}: `{shown}`: `{name}` has no option {option}")
                continue
            if not _takes_value(param):
                continue
            if not equals:
                if index >= len(args):
                    continue  # the option alone, as prose names it
                value = args[index]
                index += param.nargs
            wrong = _bad_choice(param, value)
            if wrong:
                choices = ", ".join(param.type.choices)
                problems.append(
                    f"{where}: `{shown}`: {option} of `{name}` takes {choices}, not {wrong}"
                )
            continue
        if isinstance(ctx.command, click.Group):
            command = ctx.command.get_command(ctx, arg)
            if command is None:
                problems.append(f"{where}: `{shown}`: `{name}` has no command {arg!r}")
                break
            ctx = click.Context(command, info_name=arg, parent=ctx)
            path = (*path, arg)
            seen.add(path)
        # else: an argument of the command (a folder, a model name, a placeholder)
    return problems


def check_doc(path: Path, seen: set[tuple[str, ...]] | None = None) -> list[str]:
    seen = set() if seen is None else seen
    problems = []
    for snippet in snippets(path):
        for args in ocrq_commands(snippet):
            problems += check_command(args, snippet.where, seen)
    return problems


def all_command_paths(group: click.Group = cli, ctx: click.Context | None = None, prefix=()):
    ctx = ctx or click.Context(group, info_name="ocrq")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        yield (*prefix, name)
        if isinstance(command, click.Group):
            sub = click.Context(command, info_name=name, parent=ctx)
            yield from all_command_paths(command, sub, (*prefix, name))


def _ids(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---- commands and options ----------------------------------------------------------


@pytest.mark.parametrize("doc", DOC_FILES, ids=_ids)
def test_documented_commands_and_options_exist(doc):
    problems = check_doc(doc)
    assert not problems, "commands or options that the CLI does not have:\n" + "\n".join(problems)


def test_every_command_is_documented():
    seen: set[tuple[str, ...]] = set()
    for doc in DOC_FILES:
        check_doc(doc, seen)
    missing = [" ".join(["ocrq", *p]) for p in all_command_paths() if p not in seen]
    assert not missing, (
        "commands named nowhere in README.md or docs/*.md (as `ocrq ...` in code): "
        + ", ".join(missing)
    )


def test_the_check_catches_drift(tmp_path):
    """The checker itself: a bogus option, command or choice is reported with file:line."""
    doc = tmp_path / "doc.md"
    doc.write_text(
        "Intro with `ocrq run --pattern '*.png' --bogus-option`.\n"
        "\n"
        "```sh\n"
        "ocrq export --format csv \\\n"
        "  --per region -o out.csv   # fine\n"
        "ocrq models no-such-command\n"
        "ocrq run scans/ --precision int4 | tee log\n"
        "```\n",
        encoding="utf-8",
    )
    problems = [p.split(": ", 1)[1] for p in check_doc(doc)]
    assert problems == [
        "`ocrq run --pattern *.png --bogus-option`: `ocrq run` has no option --bogus-option",
        "`ocrq models no-such-command`: `ocrq models` has no command 'no-such-command'",
        "`ocrq run scans/ --precision int4`: --precision of `ocrq run` takes auto, fp32, "
        "int8, not int4",
    ]
    assert [p.split(": ", 1)[0].rsplit(":", 1)[1] for p in check_doc(doc)] == ["1", "6", "7"]


# ---- the README --------------------------------------------------------------------


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, at most {README_MAX_LINES}: it is the page for "
        "a new user; move details into docs/"
    )


def test_readme_first_commands():
    """`make demo` and `make test` are the README's first two commands; CI (.ci/run) runs
    `make test` as the README's test command."""
    fenced = [s.text.split("#")[0].strip() for s in snippets(README) if s.fenced]
    assert "make demo" in fenced and "make test" in fenced
    assert fenced.index("make demo") < fenced.index("make test")
    assert "make test" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


# ---- make targets, paths and links -------------------------------------------------


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.M))


@pytest.mark.parametrize("doc", DOC_FILES, ids=_ids)
def test_make_targets_exist(doc):
    targets = _make_targets()
    problems = []
    for snippet in snippets(doc):
        tokens = snippet.tokens()
        for token, target in zip(tokens, tokens[1:], strict=False):
            named = token == "make" and not target.startswith("-") and "=" not in target
            if named and target not in targets:
                problems.append(f"{snippet.where}: `make {target}`: no such Makefile target")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOC_FILES, ids=_ids)
def test_cited_paths_exist(doc):
    problems = []
    for snippet in snippets(doc):
        if snippet.fenced:
            continue
        cited = re.split(r"[\s:]", snippet.text, maxsplit=1)[0]
        if REPO_PATH.match(cited) and not (ROOT / cited).exists():
            problems.append(f"{snippet.where}: `{snippet.text}`: {cited} does not exist")
    assert not problems, "\n".join(problems)


def _slugs(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    slugs: set[str] = set()
    counts: dict[str, int] = {}
    fence = None
    for line in path.read_text(encoding="utf-8").splitlines():
        opening = FENCE.match(line)
        if opening:
            fence = None if fence else opening.group(1)
            continue
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fence or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-")
        seen = counts.get(slug, 0)
        counts[slug] = seen + 1
        slugs.add(slug if not seen else f"{slug}-{seen}")
    return slugs


@pytest.mark.parametrize("doc", DOC_FILES, ids=_ids)
def test_links_resolve(doc):
    text = doc.read_text(encoding="utf-8")
    problems = []
    for match in re.finditer(r"\]\(([^)\s]+)\)", text):
        target = match.group(1)
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (doc.parent / file_part).resolve() if file_part else doc
        line = text.count("\n", 0, match.start()) + 1
        where = f"{doc.relative_to(ROOT)}:{line}"
        if not linked.exists():
            problems.append(f"{where}: link to {target}: {file_part} does not exist")
        elif anchor and linked.suffix == ".md" and anchor not in _slugs(linked):
            problems.append(f"{where}: link to {target}: no heading #{anchor} there")
    assert not problems, "\n".join(problems)
