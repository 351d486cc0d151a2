"""The command-line flags that set a config key: each declared once, with its key, its help
and the commands that have it.

The CLI makes its Typer options from this table (`cli.flags.config_flags`), the studio reads
from it which flag sets a key (to write the equivalent command line), and a config that spells
a key the flag's way (`style_weight: 5`) is answered with the key it meant. A flag whose
meaning differs between commands (`--output`: an image or run folder, a clip, a sweep folder)
stays with its command, as do flags that set no key (`--overwrite`, `--quiet`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nst_cli.config.choices import (
    COLOR_MODES,
    DEVICE_NAMES,
    INIT_MODES,
    OPTIMIZER_NAMES,
    POOLINGS,
    PRESETS,
)

#: The help screen's panels.
PANELS = INPUTS, WEIGHTS, OPTIMISATION, OUTPUT, RUN, RAY, VIDEO = (
    "Inputs", "Weights", "Optimisation", "Output", "Run control", "Ray (folder runs and sweeps)",
    "Video",
)  # fmt: skip

STYLIZE, VIDEO_COMMAND, SWEEP = "stylize", "video", "sweep"
_ALL = (STYLIZE, VIDEO_COMMAND, SWEEP)


@dataclass(frozen=True)
class Flag:
    """One flag: `--name` (its Python name with dashes), the key it sets, how it reads."""

    key: str
    type: Any
    help: str
    panel: str
    commands: tuple[str, ...] = (STYLIZE,)
    #: The values it takes, shown and completed (a closed list is checked by Typer too).
    choices: tuple[str, ...] = ()
    #: Only completed and shown: the config checks the value (`cuda:1`, an image path).
    open_choices: bool = False
    metavar: str | None = None
    #: Its own spellings where `--name` is not all of them (`-o`, `--long-term/--short-term`).
    decls: tuple[str, ...] = ()
    #: Append the model's default to the help ("[default: 1.0]").
    show_default: bool = True


_STEPS_BY_PRESET = ", ".join(f"{name} {values['steps']}" for name, values in PRESETS.items())

#: Every flag that sets a config key, by its Python name.
FLAGS: dict[str, Flag] = {
    # Inputs
    "content": Flag(
        "content", Path,
        "Content image (the photo); a folder or a quoted glob ('photos/*.jpg') stylises each "
        "image in it.", INPUTS, (STYLIZE, SWEEP), show_default=False,
    ),
    "style": Flag(
        "style", list[Path], "Style image (the painting); repeat it to blend several.", INPUTS,
        _ALL, show_default=False,
    ),
    # Weights
    "style_weight": Flag("weights.style", float, "β, the style loss weight.", WEIGHTS,
                         (STYLIZE, VIDEO_COMMAND)),
    "content_weight": Flag("weights.content", float, "α, the content loss weight.", WEIGHTS,
                           (STYLIZE, VIDEO_COMMAND)),
    "tv_weight": Flag("weights.tv", float, "Total-variation weight (smoothness).", WEIGHTS),
    "style_scale": Flag(
        "style_scale", float,
        "Style image size relative to the output (bigger = larger brush strokes).", WEIGHTS,
    ),
    "color": Flag(
        "color", str,
        "style: the painting's palette; luminance: keep the photo's (a clip's) colours exactly; "
        "histogram: the painting's texture in the photo's palette.", WEIGHTS,
        (STYLIZE, VIDEO_COMMAND), choices=COLOR_MODES,
    ),
    # Optimisation
    "preset": Flag(
        "preset", str, "fast, balanced or quality: the steps (60, 160, 500); --steps wins.",
        OPTIMISATION, _ALL, choices=tuple(PRESETS), open_choices=True,
        metavar="fast|balanced|quality",
    ),
    "steps": Flag(
        "steps", int,
        "Optimisation steps in all (shared among the scales). "
        f"[dim]\\[default: from --preset: {_STEPS_BY_PRESET}][/]", OPTIMISATION, _ALL,
        show_default=False,
    ),
    "optimizer": Flag("optimizer.name", str, "lbfgs or adam (each with its own default lr).",
                      OPTIMISATION, choices=OPTIMIZER_NAMES),
    "lr": Flag("optimizer.lr", float, "Learning rate.", OPTIMISATION),
    "init": Flag(
        "init", str, "Start image: content, noise, style or an image path.", OPTIMISATION,
        choices=INIT_MODES, open_choices=True, metavar="content|noise|style|PATH",
    ),
    "pooling": Flag("model.pooling", str, "max or avg pooling in VGG19.", OPTIMISATION,
                    choices=POOLINGS),
    "seed": Flag("seed", int, "Random seed.", OPTIMISATION, (STYLIZE, VIDEO_COMMAND)),
    # Output
    "output": Flag(
        "output", Path,
        "Run folder, or an image (result.png/.jpg/.tif): the final image goes there and the run "
        "folder beside it (result/). [dim]\\[default: outputs/<content>_<style>][/]", OUTPUT,
        decls=("--output", "-o"), show_default=False,
    ),
    "resolution": Flag("resolution", int, "Long side of the output, px.", OUTPUT, _ALL),
    "tile": Flag(
        "tile", str,
        "Run the network in tiles of about N px (exact: the same loss and gradient); auto tiles "
        "only what would not fit in memory.", OUTPUT, metavar="auto|off|N",
    ),
    "output_depth": Flag(
        "output_depth", str,
        "Bits per channel of the -o image: 16 writes 16-bit PNG/TIFF from the float image.",
        OUTPUT, metavar="auto|8|16",
    ),
    "save_every": Flag("save_every", int, "A frame (and checkpoint) every N steps.", OUTPUT),
    # Run control
    "device": Flag(
        "device", str, "auto, cpu, cuda, cuda:N or mps.", RUN, _ALL, choices=DEVICE_NAMES,
        open_choices=True, metavar="auto|cpu|cuda|cuda:N|mps",
    ),
    # nst video's own
    "temporal_weight": Flag(
        "video.temporal_weight", float,
        "How strongly each frame keeps the previous one where the motion is known (0: off).",
        VIDEO, (VIDEO_COMMAND,),
    ),
    "frame_steps": Flag("video.steps", int, "Steps for each frame after the first.", VIDEO,
                        (VIDEO_COMMAND,)),
    "long_term": Flag(
        "video.long_term", bool,
        "Also hold each frame to frames t-2 and t-4 (steadier behind moving objects).", VIDEO,
        (VIDEO_COMMAND,), decls=("--long-term/--short-term",),
    ),
    "max_frames": Flag("video.max_frames", int, "Stylise only the first N frames.", VIDEO,
                       (VIDEO_COMMAND,), show_default=False),
    "fps": Flag(
        "video.fps", float,
        "Frame rate for a folder of frames [dim]\\[default: 25][/]; a video keeps its own.",
        VIDEO, (VIDEO_COMMAND,), show_default=False,
    ),
}  # fmt: skip

#: The config key each flag sets, by the flag's Python name.
FLAG_KEYS: dict[str, str] = {name: flag.key for name, flag in FLAGS.items()}


def flags_of(command: str) -> list[str]:
    """The table's flags `command` has, in the table's order."""
    return [name for name, flag in FLAGS.items() if command in flag.commands]


def flag_for(key: str, command: str) -> str | None:
    """`--style-weight` for `weights.style` on `command`; None where it has no flag for it."""
    for name in flags_of(command):
        if FLAGS[name].key == key:
            return "--" + name.replace("_", "-")
    return None
