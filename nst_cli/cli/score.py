"""`nst score`: a result measured against its photo and painting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from nst_cli.cli.base import app, errors_to_exit, loading_torch, out_console, setup_logging
from nst_cli.cli.options import AllowLargeOpt, DebugOpt, QuietOpt


@app.command(
    epilog="[bold]Examples[/]\n\n"
    "  nst score outputs/car_fluid/final.png\n\n"
    "  nst score result.png --content photo.jpg --style painting.jpg --json"
)
def score(
    result: Annotated[Path, typer.Argument(help="The stylised image.", metavar="RESULT")],
    content: Annotated[
        Path | None,
        typer.Option(help="The photo (default: the one RESULT's nst settings name)."),
    ] = None,
    style: Annotated[
        Path | None,
        typer.Option(help="The painting (default: the one RESULT's nst settings name)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the measures as JSON.")] = False,
    allow_large: AllowLargeOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Measure a result on what nst does not optimise: its texture's distance from the
    painting's (sliced Wasserstein of VGG19 features), its palette's (sliced Wasserstein of
    CIELAB colours, in ΔE), the photo's structure it keeps (SSIM of luminance at 1/4 size),
    and faces the painting put into the photo."""
    setup_logging(quiet)
    with errors_to_exit(debug):
        with loading_torch(quiet or as_json):
            from nst_cli.run.score import score_result

        measured = score_result(result, content, style, allow_large)
        if as_json:
            typer.echo(json.dumps({**measured.as_dict(), "style_layers": measured.style_layers}))
            return
        for name, value, meaning in measured.rows():
            out_console.print(f"{name:<17}{value:<14}[dim]{meaning}[/]", highlight=False)
