"""Overrides by key path (`--set key.path=value`) and the messages for invalid values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nst_cli.config.loading import YamlSyntaxError, safe_yaml
from nst_cli.errors import ConfigError


def has_path(data: Mapping[str, Any], key: str) -> bool:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [deep_copy(v) for v in value]
    return value


def parse_set_option(item: str) -> tuple[str, Any]:
    """Parse `key.path=value` (value read as YAML, so 1e4, true, [a, b] and {x: 1} work)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. --set weights.style=1e5")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: empty key; expected key.path=value")
    try:
        value = safe_yaml(raw, f"--set {key}") if raw.strip() else None
    except YamlSyntaxError:
        value = raw
    return key, value


def set_by_path(data: dict[str, Any], key: str, value: Any, origin: str = "--set") -> None:
    """Set data['a']['b'] for key 'a.b', creating mappings on the way."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"{origin} {key}: '{where}' is a single value, not a section")
        node = child
    node[parts[-1]] = value
