"""Config documentation has one source: each key's pydantic field description, shown by
`nst schema` and in the docs' config table, with the model's own defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from nst_cli.config.docs import DEFAULT_TEXT, config_table, leaf_fields
from nst_cli.config.models import Config

CONFIG_PAGE = Path(__file__).resolve().parents[3] / "docs" / "config.md"


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, info in model.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            keys += _leaf_keys(section, f"{prefix}{name}.")
        else:
            keys.append(f"{prefix}{name}")
    return keys


def test_every_config_key_has_a_description_and_a_row_in_the_table() -> None:
    keys = _leaf_keys(Config)
    described = dict(leaf_fields(Config))
    assert sorted(described) == sorted(keys) and len(keys) >= 35
    table = config_table()
    for key in keys:
        assert described[key].strip(), key
        assert f"| `{key}` |" in table, key
    assert set(DEFAULT_TEXT) <= set(keys)  # no words kept for a key that no longer exists


def test_every_field_carries_its_description_into_the_schema() -> None:
    schema = Config.model_json_schema()

    def described(properties: dict[str, Any]) -> None:
        for name, prop in properties.items():
            if "$ref" in prop:
                continue  # a section: its own fields are checked through $defs
            assert prop.get("description"), name

    described(schema["properties"])
    for definition in schema["$defs"].values():
        described(definition["properties"])
    assert "bfloat16" in schema["properties"]["precision"]["description"]


def test_the_table_shows_the_models_defaults() -> None:
    table = config_table()
    assert "| `resolution` | `512` |" in table
    assert "| `weights.style` | `2.0` |" in table
    assert "| `optimizer.history_size` | `20` |" in table
    assert "| `content` | — (required) |" in table


def test_the_config_page_holds_the_generated_config_table() -> None:
    assert config_table() in CONFIG_PAGE.read_text(encoding="utf-8"), (
        "docs/config.md's table is out of date: paste nst_cli.config.docs.config_table() there"
    )


# Configs nst accepts and configs it refuses (each as the YAML a user writes); the schema
# must say the same of every one.
ACCEPTED = [
    "content: a.png\nstyle: b.png\n",
    "content: a.png\nstyle: [b.png, {path: c.png, weight: 2}]\n",
    "content: a.png\nstyle: b.png\nsweep: {weights.style: [1, 2]}\n",
    "content: a.png\nstyle: b.png\nresolution: 256\nscales: [128, 256]\nsteps: [10, 5]\n",
    "content: a.png\nstyle: b.png\nlayers: {style: {relu1_1: 1, relu5_1: 0.5}}\n",
    "content: a.png\nstyle: b.png\nweights: {style: 0, tv: 0.1}\n",
    "content: a.png\nstyle: b.png\nsave_every: auto\ncolor: luminance\n",
]
REFUSED = [
    "content: a.png\nstyle: []\n",
    "content: a.png\nstyle: b.png\nscales: []\n",
    "content: a.png\nstyle: b.png\nlayers: {style: {relu9_9: 1}}\n",
    "content: a.png\nstyle: b.png\nlayers: {style: {}}\n",
    "content: a.png\nstyle: b.png\nweights: {style: -1}\n",
    "content: a.png\nstyle: [b.png, {path: c.png, weight: -2}]\n",
    "content: a.png\nstyle: b.png\nstyle_scale: 0\n",
    "content: a.png\nstyle: b.png\nstyle_weight: 5\n",
    "content: a.png\nstyle: b.png\ncolor: sepia\n",
]


def _tool_accepts(text: str, tmp_path: Path) -> bool:
    from nst_cli.config.resolve import resolve_config
    from nst_cli.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text(text)
    try:
        resolve_config(path)
    except ConfigError:
        return False
    return True


def test_the_schema_accepts_a_config_exactly_when_nst_does(tmp_path: Path) -> None:
    import jsonschema

    from nst_cli.config.schema import config_schema

    validator = jsonschema.Draft202012Validator(config_schema())
    for text, expected in [*((t, True) for t in ACCEPTED), *((t, False) for t in REFUSED)]:
        assert _tool_accepts(text, tmp_path) is expected, text  # the cases are what they claim
        assert validator.is_valid(yaml.safe_load(text)) is expected, text
