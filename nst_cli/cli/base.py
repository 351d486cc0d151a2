"""The `nst` Typer app: global options, logging to the console, and errors turned into exits.

Each command parses options, calls the library once, and turns domain errors into one
styled line and an exit code (2 = usage/config, 1 = runtime failure, 130 = interrupted)."""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

if TYPE_CHECKING:
    # Click's types as the installed typer has them: typer >= 0.26 carries its own copy of
    # Click (no `click` dependency), older ones use the package. Annotations only.
    from typer import _click as click

from nst_cli import __version__
from nst_cli.errors import NSTError

#: The spellings people bring from neural-style, neural-style-pt and style-transfer-pytorch,
#: and what nst calls them. A flag nst does not know is looked up here before Click answers.
FOREIGN_FLAGS: dict[str, str] = {
    "image_size": "--resolution",
    "image-size": "--resolution",
    "end_scale": "--resolution",
    "end-scale": "--resolution",
    "num_iterations": "--steps",
    "num-iterations": "--steps",
    "iterations": "--steps",
    "niter": "--steps",
    "original_colors": "--color luminance",
    "original-colors": "--color luminance",
    "colors": "--color",
    "content_image": "--content (or the first argument)",
    "content-image": "--content (or the first argument)",
    "style_image": "--style (or the arguments after the photo)",
    "style-image": "--style (or the arguments after the photo)",
    "style_weight": "--style-weight",
    "content_weight": "--content-weight",
    "tv_weight": "--tv-weight",
    "style_blend_weights": "--style-blend",
    "style-blend-weights": "--style-blend",
    "output_image": "--output/-o",
    "output-image": "--output/-o",
    "learning_rate": "--lr",
    "learning-rate": "--lr",
    "step-size": "--lr",
    "step_size": "--lr",
    "init_image": "--init PATH",
    "style_scale": "--style-scale",
    "style-scale-fac": "--style-scale",
    "style-size": "--style-scale",
    "gpu": "--device",
    "devices": "--device",
    "backend": "--device",
    "print_iter": "--log-every",
    "save_iter": "--save-every",
    "web": "--preview",
    "model_file": "--set model.weights=PATH.pth",
    "content_layers": "--set layers.content={relu4_2: 1}",
    "style_layers": "--set layers.style={relu1_1: 1, ...}",
    "init": "--init (content, noise, style or an image path)",
    "pooling": "--pooling",
    "seed": "--seed",
    "optimizer": "--optimizer",
    "tv-weight": "--tv-weight",
    # style-transfer-pytorch (crowsonkb)
    "min-scale": "--set scales=[SIZE, ...] (the scales' long sides; by default nst starts near 256 px)",
    "initial-iterations": "--set steps=[N, ...] (steps per scale, the first one first)",
    "avg-pool": "--pooling avg",
    "style-weights": "--style-blend",
    "content-weight": "--content-weight",
    "save-every": "--save-every",
    "pooling-type": "--pooling",
}


def foreign_flag_hints(args: list[str], known: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    """One line for each argument that is not an option of the command (`known`): another
    tool's spelling of an nst flag says ours; any other unknown option says so, with the
    nearest of ours. Every one at once, so a pasted command line takes one retry, not one
    per flag. Values that look like options (`-1`) and everything after `--` are left alone."""
    hints = []
    for arg in args:
        if arg == "--":
            break
        name = arg.split("=", 1)[0]
        if not name.startswith("-") or name in known or name == "-" or _is_number(name):
            continue
        bare = name.lstrip("-")
        ours = FOREIGN_FLAGS.get(bare) or FOREIGN_FLAGS.get(bare.replace("_", "-"))
        if ours is None and not name.startswith("--"):
            double = "--" + bare.replace("_", "-")
            if double in known:  # neural-style's single dash: `-seed` is our --seed
                ours = double
            elif name[:2] in known:  # a short option with its value attached: `-ofile.png`
                continue
        if ours is not None:
            hints.append(f"{name}: did you mean {ours}? nst calls it that")
        else:
            close = difflib.get_close_matches(
                name, sorted(k for k in known if k.startswith("--")), n=1
            )
            nearest = f" (did you mean {close[0]}?)" if close else ""
            hints.append(f"{name}: no such option{nearest}")
    return hints


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


HELP_OPTIONS = ("-h", "--help")


class _Group(TyperGroup):
    """The `nst` group: another tool's spelling of a flag gets a pointer to ours (one line,
    exit 2) before Click's generic "no such option" answer."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        at = next((i for i, a in enumerate(args) if not a.startswith("-")), None)
        command = super().get_command(ctx, args[at]) if at is not None else None
        if command is not None and at is not None:
            known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
            hints = foreign_flag_hints(args[at + 1 :], known | set(HELP_OPTIONS))
            if hints:
                for hint in hints:
                    err_console.print(f"[red]error:[/] {escape(hint)}", highlight=False)
                if len(hints) > 1:
                    err_console.print(
                        f"nst {args[at]} -h lists every option", highlight=False, style="dim"
                    )
                ctx.exit(2)
        return super().parse_args(ctx, args)

    def get_params(self, ctx: click.Context) -> list[Any]:
        return _plain_metavars(super().get_params(ctx))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            own = command.get_params
            command.get_params = lambda ctx: _plain_metavars(own(ctx))  # type: ignore[method-assign]
        return command


def _plain_metavars(params: list[Any]) -> list[Any]:
    for param in params:
        _plain_metavar(param)
    return params


def _plain_metavar(param: Any) -> None:
    """Help shows what to type, not Python types: a switch shows nothing after its name, and
    repeatable paths (`--style`, the positional images) PATH rather than `<list[Path]>`."""
    if getattr(param, "is_flag", False):
        param.metavar = ""
    elif "list[Path]" in str(getattr(param, "bare_type", lambda: "")()):
        if getattr(param, "param_type_name", "") == "argument":
            param.display_type_rich = lambda ctx: "PATH..."
        elif param.metavar is None:
            param.metavar = "PATH"


app = typer.Typer(
    cls=_Group,
    name="nst",
    help="Gatys-style neural style transfer: a photo's structure, a painting's texture.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": list(HELP_OPTIONS)},
    rich_markup_mode="rich",
)
err_console = Console(stderr=True, soft_wrap=True)
out_console = Console()
EXIT_INTERRUPTED = 130


class _ConsoleHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        style = {logging.WARNING: "yellow", logging.ERROR: "red"}.get(record.levelno, "dim")
        label = record.levelname.lower()
        err_console.print(
            f"[{style}]{label}:[/] {escape(record.getMessage())}", highlight=False, markup=True
        )


def setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("nst_cli")
    logger.handlers[:] = [_ConsoleHandler()]
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def loading_torch(quiet: bool) -> contextlib.AbstractContextManager[Any]:
    """A spinner while torch loads, in a terminal: seconds on a small CPU in which the
    command would otherwise show nothing."""
    if quiet or not err_console.is_terminal or "torch" in sys.modules:
        return contextlib.nullcontext()
    return err_console.status("starting: loading torch…", spinner="dots")


@contextmanager
def errors_to_exit(debug: bool) -> Iterator[None]:
    """The command boundary: NSTError -> one line + exit code; no traceback unless --debug."""
    try:
        yield
    except NSTError as exc:
        if debug:
            raise
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        if debug:
            raise
        err_console.print("[bold yellow]aborted[/] (files saved so far are kept)")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except typer.Exit:
        raise
    except Exception as exc:  # a bug: say so in one line, show the traceback with --debug
        if debug:
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
            "(run again with --debug for the traceback and report it)",
            highlight=False,
        )
        raise typer.Exit(1) from None


def _version(value: bool) -> None:
    if value:
        out_console.print(f"nst {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Gatys-style neural style transfer."""


#: When this process started, on time.perf_counter()'s clock: set by the console script, so a
#: command's summary can count the whole wall time (Python and its imports included); None
#: where the app is driven some other way (tests), and a command counts from its own start.
PROCESS_STARTED: float | None = None


def _process_started() -> float:
    """time.perf_counter()'s reading when this process began (Linux: /proc; elsewhere now)."""
    now = time.perf_counter()
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            # Field 22, after the command name in parentheses: start time in clock ticks.
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as uptime:
            age = float(uptime.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - age if 0 <= age < 60 else now


def command_started() -> float:
    """Where a command's wall time starts: the process's start under the console script."""
    return PROCESS_STARTED if PROCESS_STARTED is not None else time.perf_counter()


def main() -> None:
    """Console-script entry point."""
    global PROCESS_STARTED
    PROCESS_STARTED = _process_started()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
