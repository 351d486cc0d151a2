"""One validation of defaults < config file < `--set` < flags; input paths; resumed and shrunk configs."""

from __future__ import annotations

import difflib
import glob
import os
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from nst_cli.config.choices import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_STYLE_LAYERS,
    IMAGE_SUFFIXES,
    INIT_MODES,
    WEIGHT_SOURCES,
)
from nst_cli.config.flags import FLAG_KEYS
from nst_cli.config.loading import read_png_config, read_yaml, safe_yaml
from nst_cli.config.models import Config
from nst_cli.config.overrides import has_path, parse_set_option, set_by_path
from nst_cli.core.schedule import split_steps
from nst_cli.errors import ConfigError


def map_input_paths(data: dict[str, Any], change: Callable[[str], str]) -> None:
    """Apply `change` to every input file a config dict names, in place: content, each style
    image, masks, an init image, a weights file (not the keywords those keys also take).

    The one list of which keys hold paths: rebasing a config file's relative paths, recording
    absolute ones, and shipping the files with a remote run all go through it."""

    def rebase(node: dict[str, Any], key: str, keywords: tuple[str, ...]) -> None:
        value = node.get(key)
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, str) and value and value not in keywords:
            node[key] = change(value)

    rebase(data, "content", ())
    rebase(data, "style", ())
    if isinstance(data.get("masks"), dict):
        masks = {}
        for key, value in data["masks"].items():
            holder = {"path": str(key)}
            rebase(holder, "path", ())
            masks[holder["path"]] = value
        data["masks"] = masks
    if isinstance(data.get("style"), list):
        items = [dict(i) if isinstance(i, dict) else {"path": i} for i in data["style"]]
        for item in items:
            rebase(item, "path", ())
        data["style"] = items
    rebase(data, "init", INIT_MODES)
    if isinstance(data.get("model"), dict):
        rebase(data["model"], "weights", WEIGHT_SOURCES)


def _resolve_relative(data: dict[str, Any], base: Path) -> None:
    """Paths in a config file are relative to the file's folder, not the working directory."""
    map_input_paths(
        data, lambda value: value if Path(value).expanduser().is_absolute() else str(base / value)
    )


def names_several_images(content: Path | str) -> bool:
    """`content` is a folder or a glob (photos/*.jpg) rather than one image: a batch. A file
    whose name only looks like a pattern (photo[1].jpg) is one image."""
    path = Path(str(content)).expanduser()
    return path.is_dir() or (glob.has_magic(str(content)) and not path.exists())


def input_files(config: Config) -> list[Path]:
    """Every input file the config names (see map_input_paths), each once."""
    found: dict[str, None] = {}

    def note(value: str) -> str:
        found[value] = None
        return value

    map_input_paths(config.to_yaml_dict(), note)
    return [Path(p) for p in found]


def resolve_config(
    path: Path | str | None = None,
    sets: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge a config file, `--set` items and flag overrides, and validate once.

    Precedence: defaults < file < `sets` < `overrides`, so a flag gets exactly the checks and
    messages the same key in a file gets.

    Args:
        path: a YAML config, or a PNG nst wrote (its embedded settings); None: defaults only.
        sets: `key.path=value` items, each value read as YAML (`--set`).
        overrides: dotted keys -> values from flags; None values are skipped.

    Returns:
        The validated Config (relative input paths resolved against the file's folder).

    Raises:
        ConfigError: one line naming the file, the key and what to do.
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        embedded = path.suffix.lower() in (".png", ".jpg", ".jpeg", ".tif", ".tiff")
        data = read_png_config(path) if embedded else read_yaml(path)
        _resolve_relative(data, path.resolve().parent)
    for item in sets:
        key, value = parse_set_option(item)
        _seed_table(data, key)
        set_by_path(data, key, value)
    for key, value in (overrides or {}).items():
        if value is not None:
            set_by_path(data, key, value, origin="option")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    if config.output is None:
        config.output = Path("outputs") / default_run_name(config, path)
    if os.environ.get(TINY_ENV):
        config = shrink(config)
    return config


#: Tables keyed by the user's own names (VGG layers) and their defaults: `--set
#: layers.style.relu5_1=0.25` changes one entry of the table in force (the file's, else the
#: default), where setting it into an absent table would leave that one layer alone.
TABLES = {"layers.style": DEFAULT_STYLE_LAYERS, "layers.content": DEFAULT_CONTENT_LAYERS}


def _seed_table(data: dict[str, Any], key: str) -> None:
    """Put the default table in before `key` sets one entry of it, if the config has none."""
    for table, default in TABLES.items():
        if key.startswith(table + ".") and not has_path(data, table):
            set_by_path(data, table, dict(default))


#: Set (to anything non-empty) to run every command at thumbnail size in a few steps: the
#: test that executes the README's and the docs' commands uses it. Same settings otherwise.
TINY_ENV = "NST_TINY"


def shrink(config: Config) -> Config:
    """The same run at thumbnail size: as many scales (32, 40, 48 … px), ≤ 2 steps each,
    a frame every 2 steps; a clip (`nst video`) cut to its first 4 frames, 1 step each after
    the first."""
    stages = config.schedule()
    sizes = [32 + 8 * i for i in range(len(stages))]
    steps: int | list[int] = (
        [min(2, n) for n in config.steps]
        if isinstance(config.steps, list)
        # per scale, as the full run splits them: a thumbnail is not "too few steps"
        else split_steps(min(config.steps, 2 * len(stages)), sizes)
    )
    return config.model_copy(
        update={
            "resolution": sizes[-1],
            "scales": sizes,
            "steps": steps,
            "save_every": min(config.frame_every, 2),
            "video": config.video.model_copy(
                update={"max_frames": min(config.video.max_frames or 4, 4), "steps": 1}
            ),
        }
    )


def resume_config(
    run_dir: Path,
    sets: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    kind: str = "image",
) -> Config:
    """The config that continues the run in `run_dir`: its own config.yaml, with changes.
    The one set of resume rules for both kinds of run.

    Args:
        run_dir: an nst run folder (holds config.yaml).
        sets: `key.path=value` items on top (an image run: only steps, save_every,
            checkpoint and device may change, stylize refuses others; a clip's run: only
            device).
        overrides: dotted keys -> values from flags, likewise.
        kind: "image" (`nst stylize --resume`) or "video" (`nst video --resume`); a run of
            the other kind is refused in one line naming the command that continues it.

    Returns:
        The run's config, its output pointing at `run_dir`.
    """
    output = (overrides or {}).get("output")
    if output is not None and Path(output).resolve() != Path(run_dir).resolve():
        raise ConfigError(
            f"--resume {run_dir} continues that folder; drop --output {output} "
            "(to branch off, copy the folder and resume the copy)"
        )
    if not (Path(run_dir) / "config.yaml").is_file():
        if (Path(run_dir) / "sweep.yaml").is_file():
            raise ConfigError(
                f"--resume {run_dir}: a sweep or folder-run folder; run the command that made it "
                f"again to continue it, or resume one of its runs (--resume {run_dir}/RUN)"
            )
        raise ConfigError(f"--resume {run_dir}: no config.yaml there; is it an nst run folder?")
    check_run_kind(run_dir, kind)
    if kind == "video":
        changed = [k for k in (overrides or {}) if k not in ("device", "output")]
        changed += [item.split("=")[0] for item in sets if not item.startswith("device=")]
        if changed:
            raise ConfigError(
                f"--resume {run_dir} continues the clip with its own settings; drop "
                + ", ".join(sorted(changed))
                + " (to change them, start a new run with --overwrite)"
            )
    output = _resumed_output(run_dir)
    config = resolve_config(
        Path(run_dir) / "config.yaml", sets, {**(overrides or {}), "output": output}
    )
    if config.scales == "auto" and kind == "image":
        # `scales: auto` takes fewer scales for fewer steps: a resumed run keeps the scales
        # its checkpoint was made at, whatever its new step count would pick.
        saved = resolve_config(Path(run_dir) / "config.yaml", (), {"output": output})
        if saved.scale_sizes() != config.scale_sizes():
            config = config.model_copy(update={"scales": saved.scale_sizes()})
    return config


#: Which command continues a run of each kind (config.yaml's `run: kind:`).
RESUMED_BY = {"image": "nst stylize --resume", "video": "nst video --resume"}


def check_run_kind(run_dir: Path, kind: str) -> None:
    """Refuse to resume a run of the other kind (an image run with nst video, a clip's run
    with nst stylize) in one line naming the command that continues it."""
    try:
        saved = safe_yaml((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"), "")
    except (OSError, UnicodeDecodeError, ConfigError):
        return  # unreadable: the config's own checks say so
    run = saved.get("run") if isinstance(saved, dict) else None
    other = str(run.get("kind") or "image") if isinstance(run, dict) else None
    if other is not None and other != kind and other in RESUMED_BY:
        what = "a video run (the frames of a clip)" if other == "video" else "an image run"
        raise ConfigError(
            f"--resume {run_dir}: {what}; continue it with {RESUMED_BY[other]} {run_dir}"
        )


def _resumed_output(run_dir: Path) -> str:
    """Where a resumed run writes: its folder, or, for a run made with `-o result.png`, that
    image again (it sits beside its folder, result/), so the image is not left stale."""
    try:
        saved = safe_yaml((Path(run_dir) / "config.yaml").read_text(encoding="utf-8"), "")
    except (OSError, UnicodeDecodeError, ConfigError):
        saved = None
    output = (
        Path(str(saved.get("output"))) if isinstance(saved, dict) and saved.get("output") else None
    )
    folder = Path(run_dir)
    if (
        output is not None
        and output.suffix.lower() in IMAGE_SUFFIXES
        and output.stem == folder.name
    ):
        return str(folder.parent / (folder.name + output.suffix))
    return str(run_dir)


def default_run_name(config: Config, path: Path | None) -> str:
    """outputs/<config name>, or <content>_<style> when there is no config file."""
    if path is not None and Path(path).suffix.lower() != ".png":
        return Path(path).stem
    content = config.content.stem if config.content else "content"
    style = "+".join(s.path.stem for s in config.style_images) or "style"
    return f"{content}_{style}"


def _suggest(loc: Sequence[str | int]) -> str:
    """Closest valid key for an unknown one, by walking the model tree along loc."""
    if not loc:
        return ""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        if str(part).isdigit():
            continue  # an entry of a list: the same model
        field = model.model_fields.get(str(part)) if model else None
        model = _model_in(field.annotation) if field else None
    if model is None:
        return ""
    name = str(loc[-1]).strip("'").replace("-", "_").lstrip("_")
    if len(loc) == 1 and FLAG_KEYS.get(name, name) != name:
        # The flag's spelling used as a key: `style_weight: 5` is `weights.style: 5`.
        dotted = FLAG_KEYS[name]
        return f" (did you mean '{dotted}'? --{name.replace('_', '-')} sets it)"
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    if not str(loc[-1]).strip("'"):
        close = []
    valid = ", ".join(model.model_fields)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {valid})"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field holds, directly or inside a list or a union (`style`: a path or a
    list of StyleImage entries)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _config_loc(loc: Sequence[str | int], *, user_key_last: bool = False) -> list[str]:
    """An error's location in the config's own words: pydantic's names for the forms of a
    union (`list[StyleImage]`, `lax-or-strict[...]`, `function-after[...]`) dropped. With
    user_key_last (an unknown key) the last part is the user's own key and always kept, even
    when it looks like a form's name (`[`)."""
    parts = [str(p) if str(p).isprintable() else repr(str(p)) for p in loc]
    last = parts[-1:] if user_key_last else []
    head = parts[:-1] if user_key_last else parts
    forms = ("constrained-", "lax-or-strict", "function-")  # `constrained-int`, with no `[`
    return [p for p in head if "[" not in p and "(" not in p and not p.startswith(forms)] + last


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: `source: key.path: message`, joined into one line."""
    problems = []
    errors = [
        (_config_loc(err["loc"], user_key_last=err["type"] == "extra_forbidden"), err)
        for err in exc.errors()
    ]
    said: set[tuple[str, ...]] = set()
    for loc, err in errors:
        if tuple(loc) in said and err["type"] != "extra_forbidden":
            continue  # another form of the same key (`1.5` is no count and no `auto`): one line
        said.add(tuple(loc))
        # A value that fits one form of a key but not another (`style`: a path, or a list of
        # entries) fails every form; the deepest errors are the ones that say what is wrong.
        if any(len(other) > len(loc) and other[: len(loc)] == loc for other, _ in errors):
            continue
        key = loc[0] + "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in loc[1:]) if loc else ""
        key = key or "(top level)"
        if err["type"] == "extra_forbidden":
            message = f"unknown key{_suggest(loc)}"
        else:
            message = (
                err["msg"].removeprefix("Value error, ").replace(" for <class 'pathlib.Path'>", "")
            )
            quoted = err["type"] not in ("missing", "value_error")
            if quoted and "input" in err and not isinstance(err["input"], dict | list):
                got = repr(err["input"])  # a pasted 300-digit number is not worth a screenful
                message += f" (got {got if len(got) <= 40 else got[:37] + '...'})"
        if not loc and re.match(r"^[a-z_.]+: ", message):
            problems.append(message)  # a whole-config check names its own key
        else:
            problems.append(f"{key}: {message}")
    return f"{source}: " + "; ".join(problems)
