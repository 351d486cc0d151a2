"""The README is executable: its `nst` commands and its Python snippet run, in order, as
written, in a scratch copy of the repository, shrunk to thumbnails by NST_TINY; and they
write nothing the README does not name."""

from __future__ import annotations

import os
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nst_cli.cli.base import app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def readme_examples() -> list[tuple[str, str]]:
    """('bash' | 'python', code) for every `nst …` line and every Python block using nst,
    in README order, up to the Development section (which lists developer tools)."""
    text = README.read_text(encoding="utf-8").split("\n## Development")[0]
    examples: list[tuple[str, str]] = []
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S):
        if lang == "python" and "nst_cli" in body:
            examples.append(("python", body))
        elif lang == "bash":
            for line in body.splitlines():
                if line.startswith("nst "):
                    examples.append(("bash", line))
    return examples


def test_readme_has_the_examples_this_test_runs() -> None:
    examples = readme_examples()
    commands = [code for kind, code in examples if kind == "bash"]
    assert commands[0].startswith("nst stylize --config configs/car_fluid.yaml")  # Quickstart
    assert any(c.startswith("nst gif") for c in commands)
    assert any(c.startswith("nst sweep") for c in commands)
    assert any(kind == "python" for kind, _ in examples)


def _run_command(line: str) -> tuple[int, str]:
    """One README shell line, in this process (torch is imported once for all of them):
    `nst ARGS [> FILE 2>&1]`, comments dropped."""
    tokens = shlex.split(line, comments=True)
    target = None
    if ">" in tokens:
        at = tokens.index(">")
        target = Path(tokens[at + 1])
        tokens = tokens[:at] + [t for t in tokens[at + 2 :] if t != "2>&1"]
    assert tokens[0] == "nst", line
    result = CliRunner().invoke(app, tokens[1:])
    if target is not None:
        target.write_text(result.output)
    return result.exit_code, result.output


def test_every_readme_example_runs_in_order_from_a_fresh_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "repo"
    scratch.mkdir()
    for folder in ("configs", "samples"):
        shutil.copytree(ROOT / folder, scratch / folder)
    before = set(os.listdir(scratch))
    monkeypatch.chdir(scratch)
    monkeypatch.setenv("NST_TINY", "1")
    for kind, code in readme_examples():
        if kind == "bash":
            exit_code, output = _run_command(code)
            assert exit_code == 0, f"README example failed: {code}\n{output[-1500:]}"
        else:
            exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the README's own snippet
    readme = README.read_text(encoding="utf-8")
    for name in sorted(set(os.listdir(scratch)) - before):
        assert name in readme, f"a README example wrote {name}, which the README never names"
    assert (scratch / "outputs" / "car_fluid" / "final.png").is_file()
    assert (scratch / "coffee.png").is_file() and (scratch / "coffee" / "final.png").is_file()
    assert "stylize step" in (scratch / "car.log").read_text()
