"""Config documentation has one source: every key described once (config_docs.FIELD_DOCS),
shown by `nst schema` and in the docs' config table, with defaults that match the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from nst_cli.config.docs import FIELD_DOCS, config_table
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


def test_every_config_key_is_documented_once() -> None:
    assert sorted(FIELD_DOCS) == sorted(_leaf_keys(Config))


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


def test_literal_defaults_in_the_docs_match_the_model() -> None:
    defaults = Config().model_dump(mode="json")
    checked = 0
    for key, (text, _) in FIELD_DOCS.items():
        if not (text.startswith("`") and text.endswith("`") and text.count("`") == 2):
            continue  # a default described in words ("— (required)", "`null` = …")
        value: Any = defaults
        for part in key.split("."):
            value = value[part]
        assert yaml.safe_load(text.strip("`")) == value, key
        checked += 1
    assert checked >= 20


def test_the_config_page_holds_the_generated_config_table() -> None:
    assert config_table() in CONFIG_PAGE.read_text(encoding="utf-8"), (
        "docs/config.md's table is out of date: paste nst_cli.config.docs.config_table() there"
    )
