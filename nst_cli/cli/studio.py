"""`nst studio`: the whole tool in a browser (the `[studio]` extra, built on Gradio)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from nst_cli.cli.base import app, err_console, errors_to_exit, loading_torch, setup_logging
from nst_cli.cli.options import DebugOpt, QuietOpt
from nst_cli.errors import ConfigError

#: Seconds Ctrl-C waits for the runs to save before the studio exits.
STOP_WAIT_S = 60.0


@app.command(
    epilog="[bold]Examples[/]\n\n"
    "  nst studio                      (opens on http://127.0.0.1:7860)\n\n"
    "  nst studio -o outputs --port 8000\n\n"
    "  NST_STUDIO_PASSWORD=… nst studio --host 0.0.0.0   (other machines, with a login)"
)
def studio(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The folder of runs the studio shows and writes.")
    ] = Path("outputs"),
    host: Annotated[
        str,
        typer.Option(help="Address to listen on; anything but loopback needs --password."),
    ] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port (default: the first free one from 7860).")
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            envvar="NST_STUDIO_PASSWORD",
            help="Ask for a login (user --user); needed with --host or --share.",
            show_default=False,
        ),
    ] = None,
    user: Annotated[str, typer.Option(help="The login's user name.")] = "nst",
    share: Annotated[
        bool, typer.Option(help="Also a public gradio.live link (needs --password).")
    ] = False,
    samples: Annotated[
        Path | None,
        typer.Option(help="A folder of images offered as samples (default: ./samples)."),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option(help="Runs at a time (default: 1 on a CPU; on a GPU, one per 8 GiB)."),
    ] = None,
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the page in the default browser.")
    ] = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """A local web page to stylise, compare and continue runs: the same runs and run folders
    as the command line. Ctrl-C stops it; running jobs save first, as with `nst stylize`."""
    from nst_cli.studio.server import PASSWORD_ENV, Access

    setup_logging(quiet)
    with errors_to_exit(debug):
        access = Access(host, password, user, share)
        access.check()  # before Gradio and torch load: one line, at once
        access.check_address()
        if jobs is not None and jobs < 1:
            raise ConfigError(f"--jobs {jobs}: give 1 or more")
        if output.exists() and not output.is_dir():
            raise ConfigError(f"--output {output}: is a file; give a folder")
        found = samples if samples is not None else Path("samples")
        if samples is not None and not samples.is_dir():
            raise ConfigError(f"--samples {samples}: not a folder")
        with loading_torch(quiet):
            page, studio_, launch, default_jobs = _load(output, found)
        url = launch(page, access, port, studio_.readable, jobs or default_jobs(),
                     open_browser=open_browser)  # fmt: skip
        if not quiet:
            err_console.print(f"nst studio on [bold]{escape(url)}[/]  (Ctrl-C stops it)")
            if access.password is None:
                err_console.print(f"[dim]only this machine can reach it; {PASSWORD_ENV} and --host open it to others[/]")  # fmt: skip
        try:
            while True:
                time.sleep(0.5)
        except KeyboardInterrupt:
            err_console.print("stopping: running jobs save their work…")
            studio_.jobs.stop_all()
            studio_.jobs.wait_all(STOP_WAIT_S)
            page.close()


def _load(output: Path, samples: Path) -> tuple:  # type: ignore[type-arg]
    """The studio's modules, or one line on how to install them."""
    from nst_cli.studio.server import offline

    offline()
    try:
        from nst_cli.studio.actions import Studio
        from nst_cli.studio.page import build
        from nst_cli.studio.server import default_jobs, launch
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("gradio", "pandas", "starlette"):
            raise ConfigError(
                f'nst studio needs the studio extra ({exc.name} is missing): pip install "nst-cli[studio]"'
            ) from None
        raise
    studio = Studio(output, samples if samples.is_dir() else None)
    return build(studio), studio, launch, default_jobs
