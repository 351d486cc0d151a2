"""What the studio's form says, as nst understands it: the validated Config of a run, the
`nst stylize …` command line that makes the same run, and the advanced keys, generated from
the config models (every key a config file may set, its meaning and default)."""

from __future__ import annotations

import shlex
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel

from nst_cli.config.docs import leaf_fields
from nst_cli.config.flags import STYLIZE, SWEEP, flag_for
from nst_cli.config.models import Config
from nst_cli.config.resolve import input_files, resolve_config
from nst_cli.errors import ConfigError

#: The keys the studio's main controls set (the command line's flags for them come from the
#: flag table); the advanced fold holds every other key.
MAIN_KEYS = ("preset", "weights.style", "color", "resolution", "style_scale")

#: Keys that name only files or folders: the studio sets them itself (uploads, samples, its
#: output folder). `init` and `model.weights` stay in the fold for their keywords; a path
#: typed there must lie in a folder the studio reads (check_inside).
PATH_KEYS = ("content", "style", "masks", "output", "video.output")

#: Output formats the studio offers: the extension of the `-o` image, None = final.png only.
FORMATS: dict[str, str | None] = {"PNG": None, "16-bit TIFF": ".tif"}


@dataclass(frozen=True)
class AdvancedKey:
    """One advanced key: how the form shows it and what it starts at."""

    key: str
    description: str
    default: str
    #: The values a dropdown offers (a key with a fixed set of values), else None: a text box
    #: whose text is read as YAML, as `--set key=value` reads it.
    choices: tuple[str, ...] | None = None


def advanced_fields() -> list[AdvancedKey]:
    """Every config key but the main controls' and the paths, from the models."""
    defaults = Config().model_dump(mode="json")
    fields = []
    for key, description in leaf_fields(Config):
        if key in MAIN_KEYS or key in PATH_KEYS:
            continue
        value: Any = defaults
        for part in key.split("."):
            value = value[part]
        fields.append(AdvancedKey(key, description, _yaml(value), _choices(_annotation(key))))
    return fields


def _annotation(key: str) -> Any:
    model: type[BaseModel] = Config
    *sections, name = key.split(".")
    for section in sections:
        model = model.model_fields[section].annotation  # type: ignore[assignment]
    return model.model_fields[name].annotation


def _choices(annotation: Any) -> tuple[str, ...] | None:
    """The values of a key that takes one of a fixed set (a Literal, or a bool)."""
    if annotation is bool:
        return ("true", "false")
    if typing.get_origin(annotation) is Literal:
        return tuple(_yaml(value) for value in typing.get_args(annotation))
    return None


def _yaml(value: Any) -> str:
    """A value as `--set` reads it: YAML on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True).strip()
    return text.removesuffix("...").strip()


@dataclass
class Request:
    """One run as the form asks for it."""

    content: Path
    style: Path
    output: Path
    main: dict[str, Any] = field(default_factory=dict)
    #: Advanced keys the form changed, as `key=value` (value in YAML).
    sets: list[str] = field(default_factory=list)

    @property
    def overrides(self) -> dict[str, Any]:
        return {"content": str(self.content), "style": str(self.style), **self.main,
                "output": str(self.output)}  # fmt: skip

    def config(self, readable: Sequence[Path]) -> Config:
        """The run's validated Config; ConfigError in one line names the key at fault. Every
        file it reads must lie in one of the `readable` folders."""
        config = resolve_config(None, self.sets, self.overrides)
        check_inside(config, readable)
        return config

    def command_line(self) -> str:
        """The `nst stylize` command that makes this run (a terminal's copy of it)."""
        words = ["nst", "stylize", str(self.content), str(self.style)]
        for key, value in self.main.items():
            if value != _default(key):
                words += _flag_words(key, value, STYLIZE)
        words += ["-o", str(self.output)]
        for item in self.sets:
            words += ["--set", item]
        return shlex.join(words)

    def sweep_command_line(self, key: str, values: str, root: Path) -> str:
        """The `nst sweep` command that compares this run over `values` of `key`."""
        words = ["nst", "sweep", "--content", str(self.content), "--style", str(self.style)]
        for name, value in self.main.items():
            if value == _default(name):
                continue
            words += _flag_words(name, value, SWEEP)
        for item in self.sets:
            words += ["--set", item]
        words += ["--param", f"{key}={values}", "--score", "-o", str(root)]
        return shlex.join(words)


def _default(key: str) -> Any:
    value: Any = Config().model_dump(mode="json")
    for part in key.split("."):
        value = value[part]
    return value


def changed_sets(values: Mapping[str, Any]) -> list[str]:
    """`key=value` for each advanced key whose value is not its default (the form's text)."""
    defaults = {f.key: f.default for f in advanced_fields()}
    sets = []
    for key, value in values.items():
        if key not in defaults:
            raise ConfigError(f"{key}: not a config key the studio sets")
        text = value if isinstance(value, str) else _yaml(value)
        if text.strip() != defaults[key]:
            sets.append(f"{key}={text.strip()}")
    return sets


def check_inside(config: Config, readable: Sequence[Path]) -> None:
    """Every file the run reads lies in a `readable` folder (links followed), and its run
    folder in the first one (the studio's output folder)."""
    roots = [Path(r).resolve() for r in readable]
    for path in input_files(config):
        if not any(Path(path).resolve().is_relative_to(root) for root in roots):
            raise ConfigError(
                f"{path}: the studio reads only its uploads, the samples and its output "
                "folder; upload the file instead"
            )
    if not config.output_dir.resolve().is_relative_to(roots[0]):
        raise ConfigError(f"{config.output_dir}: the studio writes only into {roots[0]}")


#: The Video tab's settings and the `nst video` flags that set them.
VIDEO_FLAGS: dict[str, str] = {
    "preset": "--preset",
    "resolution": "--resolution",
    "video.max_frames": "--max-frames",
    "weights.style": "--style-weight",
}


def video_command_line(clip: Path, style: Path, main: Mapping[str, Any], folder: Path) -> str:
    """The `nst video` command that makes the Video tab's run."""
    words = ["nst", "video", str(clip), str(style)]
    for key, value in main.items():
        if value is not None and value != _default(key):
            words += [VIDEO_FLAGS[key], _yaml(value)]
    return shlex.join([*words, "-o", str(folder)])


def _flag_words(key: str, value: Any, command: str) -> list[str]:
    """`--style-weight 5` where `command` has a flag for `key`, else `--set key=5`."""
    flag = flag_for(key, command)
    return [flag, _yaml(value)] if flag else ["--set", f"{key}={_yaml(value)}"]
