"""Texture, not objects (core.objects): a painting's block-5 layers are weighed by how
stationary its features are there, so a portrait's face is not painted into a landscape."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from nst_cli.config.resolve import resolve_config
from nst_cli.core.features import FeatureExtractor
from nst_cli.core.layers import layer_block
from nst_cli.core.losses.total import WeightedSum
from nst_cli.core.objects import OBJECTS, TEXTURE, nonstationarity, texture_share
from nst_cli.errors import ConfigError
from nst_cli.run.cache import ModelCache
from nst_cli.run.inputs import load_inputs, stage_images, stage_masks
from nst_cli.run.losses import build_loss

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


def test_a_texture_is_stationary_and_an_object_is_not() -> None:
    generator = torch.Generator().manual_seed(0)
    texture = torch.rand(1, 16, 24, 24, generator=generator)
    thing = torch.full((1, 16, 24, 24), 0.05)
    thing[..., 2:10, 3:11] = torch.rand(1, 16, 8, 8, generator=generator) + 1.0  # one place
    assert nonstationarity(texture) < 0.05
    assert nonstationarity(thing) > 1.0


def test_the_share_is_whole_below_texture_none_above_objects_and_linear_between() -> None:
    assert texture_share(0.0) == texture_share(TEXTURE) == 1.0
    assert texture_share(OBJECTS) == texture_share(5.0) == 0.0
    assert texture_share((TEXTURE + OBJECTS) / 2) == pytest.approx(0.5)


def test_layer_blocks() -> None:
    assert [layer_block(n) for n in ("relu1_1", "conv3_4", "pool4", "relu5_1", "relu5_4")] == [
        1,
        3,
        4,
        5,
        5,
    ]


def _loss(
    style: str | list[str], *sets: str, masks: dict[str, int] | None = None
) -> tuple[WeightedSum, torch.Tensor, FeatureExtractor]:
    """The loss of a 64 px run over the rocket, with its content image and network."""
    styles = [style] if isinstance(style, str) else style
    config = resolve_config(
        None,
        [*sets],
        {
            "content": str(SAMPLES / "rocket.jpg"),
            "style": [{"path": str(SAMPLES / s)} for s in styles]
            if len(styles) > 1
            else str(SAMPLES / styles[0]),
            "masks": masks or {},
            "resolution": 64,
            "device": "cpu",
        },
    )
    cache = ModelCache()
    extractor = cache.extractor(config, config.network_layers, torch.device("cpu"), "fp32")
    inputs = load_inputs(config)
    content, paintings = stage_images(config, inputs, 64)
    staged = stage_masks(inputs, content)
    loss = build_loss(
        config, extractor, content, paintings, cache, 64, staged, measured=inputs.measured_styles
    )
    return loss, content, extractor


def _style_weights(style: str | list[str], *sets: str) -> dict[str, float]:
    return _loss(style, *sets)[0].term("style").layers


def test_a_portraits_deepest_layer_is_turned_off_and_a_textures_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        portrait = _style_weights("astronaut.png")
    assert portrait["relu5_1"] == 0.0
    assert all(portrait[n] == 1.0 for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1"))
    assert "relu5_1 at 0.00 of its weight" in caplog.text and "loss.objects: allow" in caplog.text
    for painting in ("fluid.png", "swirls.png", "strokes.png"):
        assert _style_weights(painting)["relu5_1"] == 1.0, painting


def test_allow_keeps_every_layer_and_a_blend_turns_down_by_share() -> None:
    assert _style_weights("astronaut.png", "loss.objects=allow")["relu5_1"] == 1.0
    blend = _style_weights(["astronaut.png", "fluid.png"])
    assert blend["relu5_1"] == pytest.approx(0.5)
    tripled = _style_weights("astronaut.png", "layers.style.relu5_1=3")
    assert tripled["relu5_1"] == 0.0 and tripled["relu1_1"] == 1.0


def test_with_masks_each_region_keeps_its_own_paintings_share(tmp_path: Path) -> None:
    # A portrait's region loses its deepest layer; a texture's region beside it keeps it whole
    # (a blend's mean would give both half).
    from PIL import Image

    rocket = Image.open(SAMPLES / "rocket.jpg")
    left = Image.new("L", rocket.size, 0)
    left.paste(255, (0, 0, rocket.width // 2, rocket.height))
    left.save(tmp_path / "left.png")
    Image.eval(left, lambda v: 255 - v).save(tmp_path / "right.png")
    masks = {str(tmp_path / "left.png"): 0, str(tmp_path / "right.png"): 1}
    loss, content, extractor = _loss(["astronaut.png", "fluid.png"], masks=masks)
    portrait, texture = loss.term("style").regions
    assert portrait.layer_shares["relu5_1"] == 0.0 and texture.layer_shares["relu5_1"] == 1.0
    assert loss.term("style").layers["relu5_1"] == 1.0
    features = extractor(content, ["relu5_1"])
    assert float(portrait.distance("relu5_1", features["relu5_1"])) == 0.0
    assert float(texture.distance("relu5_1", features["relu5_1"])) > 0.0


def test_an_unknown_objects_mode_is_one_line() -> None:
    with pytest.raises(ConfigError, match="loss.objects"):
        resolve_config(None, ["loss.objects=never"], {"content": "a.png", "style": "b.png"})
