"""Config documentation has one source: each key's pydantic field description, shown by
`nst schema` and in the docs' config table, with the model's own defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from nst_cli.config.docs import DEFAULT_TEXT, config_table, leaf_fields
from nst_cli.config.models import Config

CONFIG_PAGE = Path(__file__).resolve().parents[2] / "docs" / "config.md"


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
