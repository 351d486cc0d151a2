"""The `nst` command: thin Typer commands over the Python API, one module per command.

Importing this package registers every command on `app`; `main` is the console script."""

from __future__ import annotations

from nst_cli.cli import gif, info, score, studio, stylize, sweep, video  # noqa: F401 - each registers
from nst_cli.cli.base import app, main

__all__ = ["app", "main"]
