"""Every command and option the README and the docs name exists: an `nst …` line's command
and its options are the command's own, and every `--option` the pages name in code is an
option of some nst command (or of a tool the page names with it)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import typer

from nst_cli.cli import app

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]

#: Options of other tools the pages name as such (pip, pytest, mkdocs, ffmpeg, Ray, git,
#: neural-style's and crowsonkb's own flags shown as what nst calls them).
FOREIGN = {
    "--help", "--version", "--strict", "--durations", "--change", "--keep", "--no-sandbox",
    "--headless", "--dump-dom", "--screenshot", "--user-data-dir", "--disable-gpu",
    "--address", "--num-cpus", "--head", "--block", "--port", "--dashboard-host",
    "--index-url", "--extra-index-url", "--upgrade", "--min-scale", "--initial-iterations",
    "--avg-pool", "--style-weights", "--content-weight", "--save-every", "--pooling-type",
    "--style-scale-fac", "--style-size", "--end-scale", "--image-size", "--num-iterations",
    "--learning-rate", "--step-size", "--iterations", "--check", "--strict-markers",
    "--install-completion", "--show-completion",
}  # fmt: skip


def _benchmark_options() -> set[str]:
    """The options of the benchmark scripts the performance and defaults pages run."""
    found: set[str] = set()
    for script in (ROOT / "benchmarks").glob("*.py"):
        found |= set(re.findall(r"add_argument\(\s*\"(--[a-z0-9-]+)\"", script.read_text()))
    return found


def _commands() -> dict[str, set[str]]:
    group = typer.main.get_command(app)
    options: dict[str, set[str]] = {}
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        options[name] = {
            o for p in command.params for o in (*p.opts, *getattr(p, "secondary_opts", ()))
        }
    return options


def _nst_lines(text: str) -> list[str]:
    blocks = re.findall(r"```(?:bash|console|sh)?\n(.*?)```", text, flags=re.S)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith("nst ")]
    lines += [code for code in re.findall(r"`([^`\n]+)`", text) if code.startswith("nst ")]
    return lines


def test_every_nst_line_names_a_command_and_its_own_options() -> None:
    commands = _commands()
    problems = []
    for page in PAGES:
        for line in _nst_lines(page.read_text(encoding="utf-8")):
            try:
                tokens = shlex.split(line, comments=True)
            except ValueError:
                continue  # an inline fragment with an open quote: not a whole command
            if len(tokens) < 2 or tokens[1].startswith("-") or tokens[1].isupper():
                continue  # `nst --version`, or a placeholder (`nst COMMAND -h`)
            name = tokens[1]
            if name not in commands:
                problems.append(f"{page.name}: `{line}`: no command {name!r}")
                continue
            for token in tokens[2:]:
                flag = token.split("=", 1)[0]
                if flag.startswith("--") and flag != "--" and flag not in commands[name]:
                    problems.append(f"{page.name}: `{line}`: nst {name} has no {flag}")
    assert not problems, "\n".join(problems)


def test_every_option_the_pages_name_is_an_option_of_nst() -> None:
    every = set().union(*_commands().values()) | FOREIGN | _benchmark_options()
    problems = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for code in re.findall(r"`([^`\n]+)`", text):
            for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", code):
                if flag not in every:
                    problems.append(f"{page.relative_to(ROOT)}: {flag} (in `{code}`)")
    assert not problems, "\n".join(sorted(set(problems)))
