"""Reading configs: bounded YAML files, the settings embedded in a PNG nst wrote, the sweep section."""

from __future__ import annotations

import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import yaml

from nst_cli.config.choices import (
    MAX_CONFIG_BYTES,
    MAX_EMBEDDED_CONFIG,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    METADATA_KEYS,
    fill_introduced,
)
from nst_cli.core.pillow import embedded_text, no_pixel_limit
from nst_cli.errors import ConfigError

# --------------------------------------------------------------------------- loading


def _read_text(path: Path) -> str:
    """A config file's text: a regular file of bounded size (a FIFO or /dev/zero would hang
    or fill the memory)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is a directory, expected a YAML config file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: not a regular file; give a YAML config file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {info.st_size:,} bytes is too large for a config (limit "
            f"{MAX_CONFIG_BYTES:,}); is it the right file?"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; expected a YAML config") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None


class YamlSyntaxError(ConfigError):
    """Text that is not YAML at all (callers may fall back to the plain string)."""


def safe_yaml(text: str, source: str) -> Any:
    """yaml.safe_load, bounded: nesting at most MAX_YAML_DEPTH deep, and at most
    MAX_YAML_NODES values once aliases are expanded (a "billion laughs" document of a few
    hundred bytes expands to gigabytes when the settings are walked)."""
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise ConfigError(f"{source}: YAML nested over {MAX_YAML_DEPTH} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None and _refers_to_itself(root):
            raise ConfigError(
                f"{source}: a YAML alias (*name) refers to the value it is inside, which "
                "never ends; write the value out"
            )
        if root is not None and _expanded_size(root, {}) > MAX_YAML_NODES:
            raise ConfigError(
                f"{source}: the YAML expands to over {MAX_YAML_NODES:,} values through its "
                "aliases (*name); a config is far smaller. Write the values out"
            )
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlSyntaxError(f"{source}: not valid YAML{where}: {problem}") from None


def _refers_to_itself(node: yaml.Node) -> bool:
    """Whether an alias inside `node` points back to a collection that holds it (`a: &a [*a]`
    loads as a list that contains itself, and walking it never ends). Depth-first without
    recursion: a chain of aliases may be far deeper than Python's stack."""
    inside: set[int] = set()
    done: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(node, False)]
    while stack:
        current, leaving = stack.pop()
        key = id(current)
        if leaving:
            inside.discard(key)
            done.add(key)
            continue
        if key in inside:
            return True
        if key in done or not isinstance(current, yaml.CollectionNode):
            continue
        inside.add(key)
        stack.append((current, True))
        children = (
            current.value
            if isinstance(current, yaml.SequenceNode)
            else [child for pair in current.value for child in pair]
        )
        stack.extend((child, False) for child in children)
    return False


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values the node becomes with every alias copied out (memoised: linear time)."""
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a cycle counts once instead of recursing forever
        if isinstance(node, yaml.SequenceNode):
            memo[key] = 1 + sum(_expanded_size(child, memo) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[key] = 1 + sum(
                _expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value
            )
    return memo[key]


def read_yaml(path: Path) -> dict[str, Any]:
    data = safe_yaml(_read_text(path), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys (content:, style:, …), "
            f"not a {type(data).__name__}"
        )
    if isinstance(data.get("run"), dict) and "nst_version" in data["run"]:
        fill_introduced(data)  # a run folder's config.yaml
    for key in METADATA_KEYS:
        data.pop(key, None)
    return data


def read_sweep_section(path: Path) -> object | None:
    """The `sweep:` section of a YAML config file, if any (validated by the sweep module)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        return None
    data = safe_yaml(_read_text(path), str(path)) if path.exists() else None
    return data.get("sweep") if isinstance(data, dict) else None


def read_png_config(path: Path) -> dict[str, Any]:
    """Settings nst embedded in an image it wrote (PNG text, JPEG comment, TIFF description)."""
    from PIL import Image, UnidentifiedImageError

    # Only the text chunks are read (nst writes them before the pixels), never the pixels, so
    # Pillow's decompression-bomb check (a warning from 89 MP, an error from 179 MP) is off.
    with no_pixel_limit():
        try:
            with Image.open(path) as image:
                info = cast("dict[str, Any]", image.info)  # Pillow 12 types its keys wider
                text = embedded_text(info, getattr(image, "tag_v2", None)).get("nst:config")
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise ConfigError(f"{path}: cannot read the image ({exc})") from None
    if not text:
        raise ConfigError(f"{path}: this image carries no nst settings (only images nst wrote do)")
    if len(text) > MAX_EMBEDDED_CONFIG:
        raise ConfigError(f"{path}: the embedded nst settings are implausibly large; not read")
    try:
        data = safe_yaml(text, f"{path} (embedded nst settings)")
    except ConfigError:
        data = None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the embedded nst settings are damaged")
    fill_introduced(data)
    for key in METADATA_KEYS:
        data.pop(key, None)
    # A shared image must not decide where files are written: the run goes where the command
    # line (or the default) says.
    data.pop("output", None)
    return data


def dump_yaml(data: Mapping[str, Any]) -> str:
    """YAML text in the key order of the model (readable, diffable)."""
    return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
