"""The config's JSON Schema (`nst schema`), for editors: pydantic's schema of the models,
tightened where the models check more than their types say, so that a config validates
against it exactly when nst accepts it (layer names, weights ≥ 0, non-empty lists, style lists
that mix paths and entries, the `sweep:` section)."""

from __future__ import annotations

import copy
from typing import Any

from nst_cli.config.models import Config
from nst_cli.core.layers import LAYER_NAMES

_WEIGHT = {"type": "number", "minimum": 0}
_POSITIVE = {"type": "number", "exclusiveMinimum": 0}


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a config file.

    Returns:
        A JSON Schema (draft 2020-12) dict.
    """
    schema = copy.deepcopy(Config.model_json_schema())
    props, defs = schema["properties"], schema["$defs"]
    # A style list may mix plain paths and {path, weight, scale} entries, and is never empty.
    props["style"]["anyOf"] = [
        {"type": "string"},
        {
            "type": "array",
            "minItems": 1,
            "items": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/StyleImage"}]},
        },
        {"type": "null"},
    ]
    for branch in props["scales"]["anyOf"]:
        if branch.get("type") == "array":
            branch["minItems"] = 1
    for branch in props["steps"].get("anyOf", []):
        if branch.get("type") == "array":
            branch["minItems"] = 1
    props["style_scale"].update(_POSITIVE)
    layers = defs["LayersConfig"]["properties"]
    for name in ("content", "style"):
        layers[name]["propertyNames"] = {"enum": list(LAYER_NAMES)}
        layers[name]["additionalProperties"] = dict(_WEIGHT)
    layers["style"]["minProperties"] = 1
    for name in ("content", "style", "tv"):
        defs["WeightsConfig"]["properties"][name].update(_WEIGHT)
    style_image = defs["StyleImage"]["properties"]
    style_image["weight"].update(_WEIGHT)
    for branch in style_image["scale"].get("anyOf", []):
        if branch.get("type") == "number":
            branch.update(_POSITIVE)
    # Sections nst reads beside the run's keys: `sweep:` (nst sweep) and the `run:` record
    # config.yaml carries (a run folder's config.yaml is a config too).
    props["sweep"] = {"type": "object", "description": "the swept values, for `nst sweep`"}
    props["run"] = {"type": "object", "description": "what nst recorded about a run (config.yaml)"}
    return schema
