"""The options the commands share, their help panels and shell completion; the override dict the flags make."""

from __future__ import annotations

import enum
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from nst_cli.config.choices import COLOR_MODES, DEVICE_NAMES, FLAG_KEYS, PRESETS
from nst_cli.config.models import Config
from nst_cli.core.layers import LAYER_NAMES
from nst_cli.errors import ConfigError

PRESET_NAMES = tuple(PRESETS)


PANELS = INPUTS, WEIGHTS, OPTIMISATION, OUTPUT, RUN, RAY = (
    "Inputs", "Weights", "Optimisation", "Output", "Run control", "Ray (folder runs and sweeps)",
)  # fmt: skip
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
ContentOpt = Annotated[
    Path | None,
    typer.Option(
        help="Content image (the photo); a folder or a quoted glob ('photos/*.jpg') stylises "
        "each image in it.",
        rich_help_panel=INPUTS,
    ),
]
StyleOpt = Annotated[
    list[Path] | None,
    typer.Option(
        help="Style image (the painting); repeat it to blend several.", rich_help_panel=INPUTS
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


ResolutionOpt = Annotated[
    int | None,
    typer.Option(
        help="Long side of the output, px." + default_help("resolution"), rich_help_panel=OUTPUT
    ),
]
TileOpt = Annotated[
    str | None,
    typer.Option(
        help="Run the network in tiles of about N px (exact: the same loss and gradient); "
        "auto tiles only what would not fit in memory." + default_help("tile"),
        metavar="auto|off|N",
        rich_help_panel=OUTPUT,
    ),
]
OutputDepthOpt = Annotated[
    str | None,
    typer.Option(
        help="Bits per channel of the -o image: 16 writes 16-bit PNG/TIFF from the float "
        "image." + default_help("output_depth"),
        metavar="auto|8|16",
        rich_help_panel=OUTPUT,
    ),
]
StepsOpt = Annotated[
    int | None,
    typer.Option(
        help="Optimisation steps in all (shared among the scales). [dim]\\[default: from --preset: "
        + ", ".join(f"{name} {values['steps']}" for name, values in PRESETS.items())
        + "][/]",
        rich_help_panel=OPTIMISATION,
    ),
]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        help="fast, balanced or quality: the steps (60, 160, 500); --steps wins."
        + default_help("preset"),
        metavar="fast|balanced|quality",
        autocompletion=complete_from(PRESET_NAMES),
        rich_help_panel=OPTIMISATION,
    ),
]
DeviceOpt = Annotated[
    str | None,
    typer.Option(
        help="auto, cpu, cuda, cuda:N or mps." + default_help("device"),
        metavar="auto|cpu|cuda|cuda:N|mps",
        autocompletion=complete_from(DEVICE_NAMES),
        rich_help_panel=RUN,
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


StyleWeightOpt = Annotated[
    float | None,
    typer.Option(
        help="β, the style loss weight." + default_help("weights.style"), rich_help_panel=WEIGHTS
    ),
]
ContentWeightOpt = Annotated[
    float | None,
    typer.Option(
        help="α, the content loss weight." + default_help("weights.content"),
        rich_help_panel=WEIGHTS,
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
SeedOpt = Annotated[
    int | None,
    typer.Option(help="Random seed." + default_help("seed"), rich_help_panel=OPTIMISATION),
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


def flag_overrides(**flags: Any) -> dict[str, Any]:
    """Map CLI flags to dotted config keys; None means 'not given'."""
    return {
        FLAG_KEYS[name]: (str(v) if isinstance(v, Path) else v)
        for name, v in flags.items()
        if v is not None
    }


#: `--color`'s choices, shown in the help and completed by the shell.
ColorMode = enum.Enum("ColorMode", {mode: mode for mode in COLOR_MODES}, type=str)  # type: ignore[misc]
#: `--optimizer` and `--pooling`'s choices.
OptimizerName = enum.Enum("OptimizerName", {n: n for n in ("lbfgs", "adam")}, type=str)  # type: ignore[misc]
Pooling = enum.Enum("Pooling", {n: n for n in ("max", "avg")}, type=str)  # type: ignore[misc]
