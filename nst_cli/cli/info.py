"""`nst schema` and `nst layers`: what a config may say."""

from __future__ import annotations

import typer

from nst_cli.cli.base import app, out_console
from nst_cli.cli.options import DEFAULTS
from nst_cli.config.schema import config_schema
from nst_cli.core.layers import LAYER_NAMES, downsampling_factor


@app.command()
def schema() -> None:
    """Print the config's JSON Schema (for editors: the YAML language server completes and
    checks config files with it, e.g. `# yaml-language-server: $schema=nst.schema.json`)."""
    import json

    typer.echo(json.dumps(config_schema(), indent=2))


@app.command()
def layers() -> None:
    """List the VGG19 layer names a config may use (layers.content, layers.style)."""
    content, style = DEFAULTS["layers"]["content"], DEFAULTS["layers"]["style"]
    out_console.print("[bold]layer     stride  default use[/]", highlight=False)
    for name in LAYER_NAMES:
        use = ", ".join(
            f"{role} (weight {table[name]:g})"
            for role, table in (("content", content), ("style", style))
            if name in table
        )
        out_console.print(
            f"{name:<10}{downsampling_factor([name]):>6}  {use}".rstrip(), highlight=False
        )
