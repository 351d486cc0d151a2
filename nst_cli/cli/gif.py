"""`nst gif`: a run's frames as an animation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nst_cli.cli.base import app, errors_to_exit, out_console, setup_logging
from nst_cli.cli.options import DebugOpt, QuietOpt

#: Below this many saved images an animation is a slideshow: say how to get more.
FEW_FRAMES = 20


@app.command(
    epilog="[bold]Examples[/]\n\n"
    "  nst gif outputs/car_fluid\n\n"
    "  nst gif outputs/car_fluid -o car.mp4 --fps 15 --hold-last 2\n\n"
    "  nst gif outputs/car_fluid/frames --label --size 384"
)
def gif(
    source: Annotated[
        Path,
        typer.Argument(
            help="A run folder (uses its frames/) or a folder of frames.", metavar="RUN_OR_FRAMES"
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Default RUN_DIR/optimization.gif; .mp4/.webm write video."
        ),
    ] = None,
    fps: Annotated[float, typer.Option(help="Frames per second.")] = 10.0,
    duration: Annotated[
        float | None,
        typer.Option(help="Length of the whole animation in seconds (overrides --fps)."),
    ] = None,
    hold_last: Annotated[
        float, typer.Option("--hold-last", help="Seconds the last image stays on screen.")
    ] = 1.0,
    size: Annotated[int | None, typer.Option(help="Long side in px (aspect kept).")] = None,
    loop: Annotated[int, typer.Option(help="GIF loop count, 0 = forever.")] = 0,
    label: Annotated[
        bool, typer.Option("--label/--no-label", help="Write the step number in a corner.")
    ] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Turn a run's saved frames into an animation of the optimisation."""
    from nst_cli.io.animation import make_animation

    setup_logging(quiet)
    with errors_to_exit(debug):
        result = make_animation(
            source,
            output,
            fps=fps,
            duration=duration,
            hold_last=hold_last,
            size=size,
            loop=loop,
            label=label,
        )
        if not quiet:
            out_console.print(
                f"wrote {result.output} ({result.frames} frames from {result.source_frames} images, "
                f"{result.size[0]}×{result.size[1]}, {result.bytes / 1024:.0f} KiB)",
                soft_wrap=True,
                highlight=False,
            )
            if result.source_frames < FEW_FRAMES:
                out_console.print(
                    f"only {result.source_frames} frames were saved; for a smoother animation run "
                    "again with --save-every N (a frame every N steps) or leave save_every: auto",
                    soft_wrap=True,
                    highlight=False,
                )
