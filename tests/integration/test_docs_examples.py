"""The README and every docs page are executable: their `nst` commands and their Python
snippets run, in order (README first, then the site's pages in navigation order), as written,
in a scratch copy of the repository, shrunk to thumbnails by NST_TINY; and they write nothing
the README or the docs do not name."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from nst_cli.cli import app

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _nav_pages(nav: list) -> list[str]:
    pages: list[str] = []
    for entry in nav:
        for value in entry.values():
            pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def documents() -> list[Path]:
    """README.md, then every page of the docs site in its navigation order."""
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return [README, *(ROOT / "docs" / page for page in _nav_pages(config["nav"]))]


def examples(path: Path) -> list[tuple[str, str]]:
    """('bash' | 'python', code) for every `nst …` line and every Python block using nst, in
    order (the Development section's developer tools excluded)."""
    text = path.read_text(encoding="utf-8")
    if path.name in ("README.md", "development.md"):
        text = text.split("\n## Development")[0] if path == README else ""
    found: list[tuple[str, str]] = []
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S):
        if lang == "python" and "nst_cli" in body:
            found.append(("python", body))
        elif lang == "bash":
            found.extend(("bash", line) for line in body.splitlines() if line.startswith("nst "))
    return found


def test_the_documents_hold_the_examples_this_test_runs() -> None:
    readme = [code for kind, code in examples(README) if kind == "bash"]
    # The Quickstart's sample job first: the common tasks and the pages use its run folder.
    assert readme[0].startswith("nst stylize --config configs/car_fluid.yaml")
    every = [code for doc in documents() for kind, code in examples(doc) if kind == "bash"]
    for command in ("nst gif", "nst sweep", "nst stylize --resume", "nst layers", "nst schema"):
        assert any(c.startswith(command) for c in every), command
    assert sum(kind == "python" for doc in documents() for kind, _ in examples(doc)) >= 2


def _run_command(line: str) -> tuple[int, str]:
    """One shell line, in this process (torch is imported once for all of them):
    `nst ARGS [> FILE 2>&1]`, comments dropped."""
    tokens = shlex.split(line, comments=True)
    target = None
    if ">" in tokens:
        at = tokens.index(">")
        target = Path(tokens[at + 1])
        tokens = tokens[:at] + [t for t in tokens[at + 2 :] if t != "2>&1"]
    assert tokens[0] == "nst", line
    if tokens[1] == "studio":
        return _run_studio(tokens[1:])
    result = CliRunner().invoke(app, tokens[1:])
    if target is not None:
        target.write_text(result.output)
    return result.exit_code, result.output


def _run_studio(arguments: list[str]) -> tuple[int, str]:
    """`nst studio …` serves until Ctrl-C: start it, load the address it prints, then
    Ctrl-C; its exit status and what it said."""
    studio = subprocess.Popen(
        [sys.executable, "-m", "nst_cli", *arguments], stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    said: list[str] = []
    try:
        assert studio.stderr is not None
        for line in studio.stderr:
            said.append(line)
            found = re.search(r"(http://127\.0\.0\.1:\d+/)", line)
            if found:
                with urllib.request.urlopen(found.group(1), timeout=30) as page:
                    assert page.status == 200
                break
        studio.send_signal(signal.SIGINT)
        studio.wait(timeout=60)
    finally:
        if studio.poll() is None:
            studio.kill()
    return studio.returncode, "".join(said)


def test_every_example_runs_in_order_from_a_fresh_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "repo"
    scratch.mkdir()
    for folder in ("configs", "samples"):
        shutil.copytree(ROOT / folder, scratch / folder)
    before = set(os.listdir(scratch))
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("NST_TINY", "1")
    for document in documents():
        for kind, code in examples(document):
            if kind == "bash":
                exit_code, output = _run_command(code)
                assert exit_code == 0, f"{document.name} example failed: {code}\n{output[-1500:]}"
            else:
                exec(compile(code, str(document), "exec"), {})  # noqa: S102 - the docs' own snippet
    named = "\n".join(d.read_text(encoding="utf-8") for d in documents())
    for name in sorted(set(os.listdir(scratch)) - before):
        assert name in named, f"an example wrote {name}, which no document names"
    assert (scratch / "outputs" / "car_fluid" / "final.png").is_file()
    assert (scratch / "coffee.png").is_file() and (scratch / "coffee" / "final.png").is_file()
    assert (scratch / "outputs" / "car_fluid" / "optimization.gif").is_file()
