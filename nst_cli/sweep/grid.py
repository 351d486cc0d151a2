"""What a sweep's runs are: `--param` values and the `sweep:` section, their grid (cartesian
product), each run's folder name and resolved config.

Torch-free on purpose: `nst sweep` checks all of it before torch loads (seconds on a small
CPU), so a typo in a key or a value is one line at once, not after the wait.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nst_cli.config.loading import YamlSyntaxError, read_sweep_section, safe_yaml
from nst_cli.config.models import Config
from nst_cli.config.overrides import parse_set_option
from nst_cli.config.resolve import default_run_name, resolve_config
from nst_cli.errors import ConfigError, NSTError

log = logging.getLogger(__name__)

#: Short folder names for the most swept keys.
ALIASES = {
    "weights.style": "style_weight",
    "weights.content": "content_weight",
    "weights.tv": "tv_weight",
}


@dataclass
class Param:
    key: str
    values: list[Any]
    labels: list[str]


@dataclass
class GridRun:
    """One point of the grid: its folder name, its values (and their labels as typed) and
    the config it resolves to."""

    name: str
    values: dict[str, Any]
    labels: dict[str, str]
    config: Config


def split_values(text: str) -> list[str]:
    """Split 'a,b,{x: 1, y: 2}' on top-level commas only."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_param(item: str) -> Param:
    """'key.path=v1,v2,...' -> Param (values read as YAML, labels kept as typed)."""
    key, raw = parse_set_option(item)[0], item.partition("=")[2]
    labels = split_values(raw)
    if not raw.strip() or any(not label for label in labels):
        raise ConfigError(f"--param {item!r}: expected key.path=v1,v2,... with no empty values")
    values = []
    for label in labels:
        try:
            values.append(safe_yaml(label, f"--param {key}"))
        except YamlSyntaxError:
            values.append(label)
    return Param(key, values, labels)


def params_from_section(section: object, source: str) -> list[Param]:
    """The YAML `sweep:` section: {key.path: [v1, v2], ...}."""
    if not isinstance(section, dict) or not section:
        raise ConfigError(
            f"{source}: sweep: must map keys to lists, e.g. sweep: {{weights.style: [0.1, 1, 10]}}"
        )
    params = []
    for key, values in section.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: sweep.{key}: needs a non-empty list of values")
        params.append(Param(str(key), list(values), [_label(v) for v in values]))
    return params


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}".replace("e+0", "e").replace("e+", "e").replace("e-0", "e-")
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def safe_name(text: str) -> str:
    """A folder name from a label; letters of any script stay (Ünï.png gives Ünï). It is
    always one plain name inside its parent: never empty, `.`, `..` or hidden (a photo named
    `...png` must not become the folder above)."""
    name = re.sub(r"[^\w.=,+-]+", "-", text).strip("-").lstrip(".")
    return name if name.strip(".") else "x"


def unique_name(name: str, taken: Sequence[str]) -> str:
    """Different values can make one folder name (sub/dir/img and sub-dir-img): number them."""
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}~{n}", n + 1
    return candidate


#: Swept keys whose values are files: the folder name uses the file's stem.
_PATH_KEYS = ("content", "style", "init", "model.weights")


def _folder_label(key: str, label: str) -> str:
    if key in _PATH_KEYS and ("/" in label or "." in Path(label).name):
        return Path(label).stem or label
    return label


def run_config(
    config_path: Path | None,
    sets: Sequence[str],
    overrides: Mapping[str, Any] | None,
    output: Path,
    values: Mapping[str, Any],
) -> Config:
    """The base config with this run's values (as --set items) and its own folder."""
    run_sets = [*sets, *(f"{k}={json.dumps(v)}" for k, v in values.items())]
    return resolve_config(config_path, run_sets, {**(overrides or {}), "output": str(output)})


def sweep_grid(
    config_path: Path | None,
    params: Sequence[Param],
    sets: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    output: Path | None = None,
) -> tuple[Path, list[GridRun]]:
    """The sweep's folder and every run of its grid, each config resolved and validated
    (keys, values, combinations); the files they name are checked later (sweep.plan_sweep)."""
    base = resolve_config(config_path, sets, overrides)
    if not params and config_path is not None:
        section = read_sweep_section(config_path)
        params = params_from_section(section, str(config_path)) if section is not None else []
    if not params:
        raise ConfigError(
            "nothing to sweep: give --style-weights, --param key=v1,v2 or a sweep: section in the config"
        )
    keys = [p.key for p in params]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"--param: key swept twice ({', '.join(keys)})")
    _check_flags_leave_swept_keys(keys, overrides or {})
    root = (
        Path(output) if output else Path("outputs") / f"sweep_{default_run_name(base, config_path)}"
    )
    runs: list[GridRun] = []
    seen: dict[str, str] = {}
    for combo in itertools.product(*(range(len(p.values)) for p in params)):
        values = {p.key: p.values[i] for p, i in zip(params, combo, strict=True)}
        labels = {p.key: p.labels[i] for p, i in zip(params, combo, strict=True)}
        identity = json.dumps(values, sort_keys=True, default=str)
        if identity in seen:
            log.warning("sweep: %s repeats run %s; running it once", labels, seen[identity])
            continue
        name = unique_name(
            "__".join(
                safe_name(f"{ALIASES.get(k, k)}={_folder_label(k, labels[k])}") for k in keys
            ),
            [run.name for run in runs],
        )
        seen[identity] = name
        try:
            config = run_config(config_path, sets, overrides, root / name, values)
        except NSTError as exc:
            raise type(exc)(f"sweep run {name}: {exc}") from None
        runs.append(GridRun(name, values, labels, config))
    return root, runs


def _check_flags_leave_swept_keys(keys: Sequence[str], overrides: Mapping[str, Any]) -> None:
    """A flag outranks --set, so `--style a.png --param style=b.png,c.png` would run a.png
    every time, silently: refused, naming both."""
    for key in keys:
        for flag in overrides:
            if flag == key or key.startswith(flag + "."):
                raise ConfigError(
                    f"--param {key}: a flag also sets {flag} (and would win in every run); "
                    "drop the flag or the swept key"
                )
