"""Texture, not objects (core.objects): the faces found in a painting are left out of its
block-5 Grams, and a painting whose deepest features are objects the detectors miss is
weighed by how stationary it is there, so a portrait's face is not painted into a landscape
while a composed painting keeps its deepest layer."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from nst_cli.config.resolve import resolve_config
from nst_cli.core.features import FeatureExtractor
from nst_cli.core.layers import layer_block
from nst_cli.core.losses.total import WeightedSum, target_sums, targets_from_sums
from nst_cli.core.objects import OBJECTS, TEXTURE, nonstationarity, object_mask, texture_share
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
    loss = build_loss(config, extractor, content, paintings, cache, 64, staged, inputs=inputs)
    return loss, content, extractor


def _style_weights(style: str | list[str], *sets: str) -> dict[str, float]:
    return _loss(style, *sets)[0].term("style").layers


def test_a_paintings_found_face_is_left_out_of_its_deepest_gram(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        loss = _loss("astronaut.png")[0]
    style = loss.term("style")
    assert style.layers["relu5_1"] == 1.0  # kept, guided round the face
    assert "a face at the upper centre" in caplog.text and "loss.objects: allow" in caplog.text
    plain = _loss("astronaut.png", "loss.objects=allow")[0].term("style")
    guided, whole = style.terms["relu5_1"].target, plain.terms["relu5_1"].target
    assert not torch.allclose(guided, whole)  # the face's features are not in it
    assert torch.allclose(style.terms["relu4_1"].target, plain.terms["relu4_1"].target)


def test_an_animal_the_detectors_miss_turns_the_layer_down_and_textures_keep_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        cat = _style_weights("chelsea.png")
    assert cat["relu5_1"] == 0.0
    assert all(cat[n] == 1.0 for n in ("relu1_1", "relu2_1", "relu3_1", "relu4_1"))
    assert "relu5_1 at 0.00 of its weight" in caplog.text
    for painting in ("fluid.png", "swirls.png", "strokes.png", "paintings/wave.jpg"):
        assert _style_weights(painting)["relu5_1"] == 1.0, painting


def test_a_close_portrait_turns_the_layer_off_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The Mona Lisa's face and its margin cover the painting: nothing of it is left to match.
    with caplog.at_level(logging.INFO):
        assert _style_weights("paintings/mona_lisa.jpg")["relu5_1"] == 0.0
    assert "cover most of the painting, so the deepest style layer is off" in caplog.text
    assert "leaves it out" not in caplog.text


def test_wasserstein_has_no_guided_statistic_so_a_paintings_face_turns_the_layer_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO):
        weights = _style_weights("astronaut.png", "loss.style=wasserstein")
    assert weights["relu5_1"] == 0.0 and weights["relu4_1"] == 1.0
    assert "loss.style: wasserstein cannot leave it out" in caplog.text


def test_allow_keeps_every_layer_and_a_blend_turns_down_by_share() -> None:
    assert _style_weights("chelsea.png", "loss.objects=allow")["relu5_1"] == 1.0
    blend = _style_weights(["chelsea.png", "fluid.png"])
    assert blend["relu5_1"] == pytest.approx(0.5)
    tripled = _style_weights("chelsea.png", "layers.style.relu5_1=3")
    assert tripled["relu5_1"] == 0.0 and tripled["relu1_1"] == 1.0


def test_the_mask_is_zero_over_a_box_and_its_margin_and_fades_out() -> None:
    mask = object_mask([(0.4, 0.4, 0.6, 0.6)], 100, 100)[0, 0]
    assert mask[50, 50] == 0.0 and mask[50, 31] == 0.0  # the box, and its margin (0.1)
    assert 0.0 < mask[50, 25] < 1.0  # the feather
    assert mask[50, 5] == 1.0 and mask[5, 5] == 1.0
    assert object_mask([], 8, 8).eq(1).all()


def test_a_guided_target_does_not_see_the_masked_positions() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(1, 8, 12, 12, generator=generator)
    mask = torch.ones(1, 1, 12, 12)
    mask[..., 3:7, 3:7] = 0.0
    changed = features.clone()
    changed[..., 3:7, 3:7] += 5.0  # a face there: bright, different features
    shapes = {"relu5_1": (8, 12, 12)}

    def target(f: torch.Tensor, m: dict[str, torch.Tensor] | None) -> torch.Tensor:
        return targets_from_sums(target_sums({"relu5_1": f}, ["relu5_1"], "gram", m), shapes)[
            "relu5_1"
        ]

    masks = {"relu5_1": mask}
    assert torch.allclose(target(features, masks), target(changed, masks))
    assert not torch.allclose(target(features, None), target(changed, None))
    # An all-ones mask is the plain Gram.
    assert torch.allclose(
        target(features, {"relu5_1": torch.ones(1, 1, 12, 12)}), target(features, None)
    )


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
    loss, content, extractor = _loss(["chelsea.png", "fluid.png"], masks=masks)
    portrait, texture = loss.term("style").regions
    assert portrait.layer_shares["relu5_1"] == 0.0 and texture.layer_shares["relu5_1"] == 1.0
    assert loss.term("style").layers["relu5_1"] == 1.0
    features = extractor(content, ["relu5_1"])
    assert float(portrait.distance("relu5_1", features["relu5_1"])) == 0.0
    assert float(texture.distance("relu5_1", features["relu5_1"])) > 0.0


def test_an_unknown_objects_mode_is_one_line() -> None:
    with pytest.raises(ConfigError, match="loss.objects"):
        resolve_config(None, ["loss.objects=never"], {"content": "a.png", "style": "b.png"})
