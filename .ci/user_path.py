"""A new user's first five minutes, as CI's first step: a fresh virtual environment, the
README's Quickstart word for word (its `pip install .`, no extras), then `pip check`,
`nst --help`, `nst --version`, every command of the README's Quickstart and Common tasks and
its Python snippet (shrunk to thumbnails by NST_TINY), and a tiny real run that `nst gif`
and `nst score` read back.

The development install (the test extra) brings packages a user's install does not have
(click came in through Ray, mkdocs and import-linter and hid a missing dependency), so this
runs first, on the standard library alone, before that install.

    python .ci/user_path.py [--keep]    # --keep leaves the venv and scratch folder for a look
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_blocks() -> list[tuple[str, str]]:
    """('bash' | 'python', code) of every fenced block before the Development section."""
    text = README.read_text(encoding="utf-8").split("\n## Development")[0]
    return re.findall(r"```(\w+)\n(.*?)```", text, flags=re.S)


def install_lines() -> list[str]:
    """The Quickstart's install commands (the lines of its first block that run pip)."""
    bash = [body for lang, body in readme_blocks() if lang == "bash"]
    lines = [line for line in bash[0].splitlines() if line.startswith(("pip ", "pipx "))]
    assert lines, "the README's Quickstart has no pip install line"
    return lines


def nst_lines() -> list[str]:
    """Every `nst …` line of the README's Quickstart and Common tasks, in order."""
    return [
        line
        for lang, body in readme_blocks()
        if lang == "bash"
        for line in body.splitlines()
        if line.startswith("nst ")
    ]


def python_snippets() -> list[str]:
    return [body for lang, body in readme_blocks() if lang == "python" and "nst_cli" in body]


def needs_extra(line: str) -> str | None:
    """The extra a README line says it needs (`pip install ".[ray]"` in its comment)."""
    match = re.search(r'pip install "\.\[(\w+)\]"', line)
    return match.group(1) if match else None


class Checks:
    """Runs commands in the user's environment; prints one line per check and a tally."""

    def __init__(self, venv: Path, scratch: Path) -> None:
        self.env = {
            **os.environ,
            "VIRTUAL_ENV": str(venv),
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.env.pop("PYTHONPATH", None)  # the user's Python sees the installed package only
        self.scratch = scratch
        self.passed = 0
        self.failed = 0

    def run(
        self,
        what: str,
        command: str,
        cwd: Path | None = None,
        tiny: bool = False,
        expect_exit: int = 0,
        expect_text: str | None = None,
    ) -> str:
        env = {**self.env, **({"NST_TINY": "1"} if tiny else {})}
        started = time.monotonic()
        done = subprocess.run(
            ["bash", "-c", command],
            cwd=cwd or self.scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        seconds = time.monotonic() - started
        output = done.stdout + done.stderr
        ok = done.returncode == expect_exit and (expect_text is None or expect_text in output)
        if ok:
            self.passed += 1
            print(f"ok    {what} ({seconds:.0f} s)", flush=True)
        else:
            self.failed += 1
            print(f"FAIL  {what}: exit {done.returncode} (expected {expect_exit})", flush=True)
            if expect_text is not None and expect_text not in output:
                print(f"      expected the output to say {expect_text!r}")
            print("      " + output[-3000:].replace("\n", "\n      "), flush=True)
        return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the venv and scratch folder")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nst-user-path-"))
    venv, scratch = work / "venv", work / "scratch"
    print(f"the user's path in {work}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    scratch.mkdir()
    for folder in ("configs", "samples"):
        shutil.copytree(ROOT / folder, scratch / folder)
    checks = Checks(venv, scratch)
    try:
        for line in install_lines():
            command = line.split("#")[0].strip()
            checks.run(f"README install: {command}", command, cwd=ROOT)
        if checks.failed:
            return 1
        checks.run("pip check", "pip check")
        checks.run("nst --help", "nst --help", expect_text="stylize")
        version = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M)
        checks.run(
            "nst --version", "nst --version", expect_text=version.group(1) if version else None
        )
        for line in nst_lines():
            extra = needs_extra(line)
            if extra is None:
                checks.run(f"README: {line.split('  #')[0].strip()}", line, tiny=True)
            else:  # not installed by the Quickstart: one line saying how to get it, exit 2
                checks.run(
                    f"README (without the [{extra}] extra, says how to install it): "
                    + shlex.split(line, comments=True)[1],
                    line, tiny=True, expect_exit=2, expect_text=f"[{extra}]",
                )  # fmt: skip
        for number, snippet in enumerate(python_snippets(), 1):
            (work / f"snippet{number}.py").write_text(snippet, encoding="utf-8")
            checks.run(
                f"README Python snippet {number}", f"python {work}/snippet{number}.py", tiny=True
            )
        # A real run, not a thumbnail of one: a sample pair at 64 px, read back by gif and score.
        checks.run(
            "nst stylize at 64 px, 6 steps",
            "nst stylize samples/chelsea.png samples/cubist.png --resolution 64 --steps 6 "
            "--save-every 2 -o outputs/user_path",
        )
        checks.run(
            "nst gif", "nst gif outputs/user_path && test -s outputs/user_path/optimization.gif"
        )
        checks.run("nst score", "nst score outputs/user_path/final.png", expect_text="style")
    finally:
        print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
