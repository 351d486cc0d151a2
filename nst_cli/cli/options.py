"""The options the commands share, their help panels and shell completion; the override dict the flags make."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from nst_cli.config.flags import INPUTS, OUTPUT, RAY, RUN
from nst_cli.config.models import Config
from nst_cli.core.layers import LAYER_NAMES
from nst_cli.errors import ConfigError

DEFAULTS = Config().model_dump(mode="json")


def default_help(key: str) -> str:
    """' [default: X]' from the config model, for options whose own default means 'unset'."""
    value: Any = DEFAULTS
    for part in key.split("."):
        value = value[part]
    if value is None:
        value = "the optimiser's own" if key == "optimizer.lr" else "none"
    return f" [dim]\\[default: {value}][/]"


def complete_from(choices: tuple[str, ...]) -> Callable[[str], list[str]]:
    return lambda incomplete: [c for c in choices if c.startswith(incomplete)]


def _complete_set(incomplete: str) -> list[str]:
    """--set completion: config keys, and layer names after layers.content= / layers.style=."""
    if incomplete.startswith(("layers.content=", "layers.style=")):
        head, _, tail = incomplete.partition("=")
        return [f"{head}={n}" for n in LAYER_NAMES if n.startswith(tail.lstrip("{"))]
    return [f"{k}=" for k in _config_keys(DEFAULTS) if k.startswith(incomplete)]


def _config_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict) and key not in ("layers",):
            keys += _config_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML config (or a PNG written by nst, to re-run its settings).",
        rich_help_panel=INPUTS,
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override any key: --set weights.style=5 (repeatable).",
        metavar="KEY.PATH=VALUE",
        autocompletion=_complete_set,
        rich_help_panel=INPUTS,
    ),
]
StyleBlendOpt = Annotated[
    str | None,
    typer.Option(
        "--style-blend",
        help="Weights of the --style images, e.g. 0.7,0.3 (default: equal).",
        metavar="W1,W2,...",
        rich_help_panel=INPUTS,
    ),
]


AllowLargeOpt = Annotated[
    bool,
    typer.Option(
        "--allow-large", help="Accept images over the 100-megapixel limit.", rich_help_panel=RUN
    ),
]
DebugOpt = Annotated[
    bool,
    typer.Option("--debug", help="Show full tracebacks (for bug reports).", rich_help_panel=RUN),
]
QuietOpt = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="No progress bar or summary.", rich_help_panel=RUN),
]
ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        metavar="local|ray",
        help="Where the runs of a sweep or folder run execute: local (here, one after another or as a --batch) or "
        "ray (one Ray task each; needs the \\[ray] extra).",
        autocompletion=complete_from(("local", "ray")),
        rich_help_panel=RAY,
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="With --executor ray: auto (the cluster `ray start` made on this machine) or "
        "HOST:PORT. [dim]\\[default: a local Ray instance for this command][/]",
        rich_help_panel=RAY,
    ),
]
TaskCpusOpt = Annotated[
    int,
    typer.Option(
        "--task-cpus",
        help="With --executor ray: CPUs (threads) each CPU run's task asks for; Ray runs as "
        "many at a time as fit.",
        min=1,
        rich_help_panel=RAY,
    ),
]
BatchOpt = Annotated[
    int | None,
    typer.Option(
        "--batch",
        help="Optimise up to N runs together, one network pass for all, where they share "
        "content, size, steps and model (they may differ in weights, layers, style, optimiser). "
        "Default: 4 on a GPU, 1 (one at a time) on a CPU, where it does not pay.",
        min=1,
        rich_help_panel=RUN,
    ),
]
LogEveryOpt = Annotated[
    int | None,
    typer.Option(
        "--log-every",
        help="Print a plain progress line every N steps instead of the bar (the default, every "
        "10 steps, when stderr is not a terminal: nohup, CI, > run.log).",
        min=1,
        rich_help_panel=RUN,
    ),
]


PrintConfigOpt = Annotated[
    bool,
    typer.Option(
        "--print-config", help="Print the resolved config as YAML and exit.", rich_help_panel=RUN
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="Replace a previous run in the output folder.", rich_help_panel=OUTPUT
    ),
]


def style_value(styles: list[Path] | None, blend: str | None) -> Any:
    """--style (repeatable) and --style-blend as the config's `style` value."""
    if not styles:
        if blend is not None:
            raise ConfigError("--style-blend needs the --style images it weights")
        return None
    for path in styles:
        parts = str(path).split(",")
        if len(parts) > 1 and not path.exists() and all(Path(p).exists() for p in parts):
            given = " ".join(f"--style {p}" for p in parts)
            raise ConfigError(f"--style {path}: one painting per --style; write {given}")
    if blend is None:
        return str(styles[0]) if len(styles) == 1 else [str(p) for p in styles]
    try:
        weights = [float(w) for w in blend.split(",")]
    except ValueError:
        raise ConfigError(f"--style-blend {blend!r}: expected numbers like 0.7,0.3") from None
    if len(weights) != len(styles):
        raise ConfigError(
            f"--style-blend: {len(weights)} weights for {len(styles)} --style images; give "
            "one weight per style"
        )
    return [{"path": str(p), "weight": w} for p, w in zip(styles, weights, strict=True)]
