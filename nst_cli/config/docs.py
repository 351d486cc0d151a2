"""The config reference, generated from the models: each key's meaning is its pydantic field
description (so `nst schema`, editors and docs/config.md all show the same words), and its
default is the model's, except where a default is better said in words."""

from __future__ import annotations

from collections.abc import Iterator

import yaml
from pydantic import BaseModel

#: Defaults that are not a value a user could write (required keys, derived paths, values
#: that depend on another key), in the words the reference shows.
DEFAULT_TEXT: dict[str, str] = {
    "content": "— (required)",
    "style": "— (required)",
    "output": "`outputs/<config name>` (`outputs/<content>_<style>` without a config file)",
    "steps": "`160` (from the preset)",
    "layers.style": "`{relu1_1: 1, relu2_1: 1, relu3_1: 1, relu4_1: 1, relu5_1: 1}`",
    "optimizer.lr": "`null` = 1.0 for lbfgs, 0.02 for adam",
}


def leaf_fields(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, description) for every key a config file may set, sections expanded."""
    for name, info in model.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            yield from leaf_fields(section, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", info.description or ""


def default_text(defaults: dict, key: str) -> str:
    """The reference's default column for one key: its words, or the model's value as YAML."""
    if key in DEFAULT_TEXT:
        return DEFAULT_TEXT[key]
    value = defaults
    for part in key.split("."):
        value = value[part]
    return (
        "`"
        + yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
        + "`"
    )


def config_table() -> str:
    """The config reference table (markdown) that docs/config.md holds."""
    from nst_cli.config.models import Config  # here: models import nothing from this module

    defaults = Config().model_dump(mode="json")
    rows = ["| key | default | meaning |", "| --- | --- | --- |"]
    rows += [
        f"| `{key}` | {default_text(defaults, key)} | {meaning} |"
        for key, meaning in leaf_fields(Config)
    ]
    return "\n".join(rows)
