"""`protect: faces` (run.losses): a face found in the photo adds a content term inside its
box; no face, or `protect: off`, adds nothing."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from nst_cli.config.resolve import resolve_config
from nst_cli.core.losses.region_content import RegionContent
from nst_cli.core.losses.total import WeightedSum
from nst_cli.run.cache import ModelCache
from nst_cli.run.inputs import load_inputs, stage_images
from nst_cli.run.losses import build_loss

SAMPLES = Path(__file__).resolve().parents[3] / "samples"


def _loss(content: str, *sets: str) -> tuple[WeightedSum, torch.Tensor]:
    config = resolve_config(
        None,
        ["resolution=96", *sets],
        {"content": str(SAMPLES / content), "style": str(SAMPLES / "fluid.png"), "device": "cpu"},
    )
    cache = ModelCache()
    extractor = cache.extractor(config, config.network_layers, torch.device("cpu"), "fp32")
    inputs = load_inputs(config)
    image, paintings = stage_images(config, inputs, 96)
    return build_loss(config, extractor, image, paintings, cache, 96, inputs=inputs), image


def test_a_face_in_the_photo_is_held_inside_its_box(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        loss, image = _loss("astronaut.png")
    term = loss.term("faces")
    assert isinstance(term, RegionContent) and set(term.layers) == {"relu3_1", "relu4_2"}
    assert "a face at the upper centre" in caplog.text and "protect: off" in caplog.text
    # The mask covers the face (upper centre of the astronaut), not the rest of the picture.
    mask = term.masks["relu4_2"][0, 0]
    height, width = mask.shape
    assert mask[round(0.22 * height), round(0.44 * width)] == 1.0
    assert mask[round(0.9 * height), round(0.1 * width)] == 0.0
    # At the photo itself the term is 0; elsewhere it is not.
    names = loss.layers
    from nst_cli.core.features import build_extractor

    net = build_extractor("caffe", names)
    with torch.no_grad():
        at_photo = loss(net(image, names), image).terms["faces"]
        moved = (image + 0.2 * torch.rand_like(image)).clamp(0, 1)
        elsewhere = loss(net(moved, names), moved).terms["faces"]
    assert float(at_photo) == pytest.approx(0.0, abs=1e-6) and float(elsewhere) > 0.01


def test_no_face_or_protect_off_adds_nothing() -> None:
    for content, sets in (("coffee.png", ()), ("astronaut.png", ("protect=off",))):
        loss, _ = _loss(content, *sets)
        with pytest.raises(KeyError):
            loss.term("faces")


def test_faces_are_looked_for_in_each_image_and_said_once(caplog: pytest.LogCaptureFixture) -> None:
    # A clip's frames share a path: each frame gets its own faces, the line comes once.
    import numpy as np
    from PIL import Image

    from nst_cli.run.losses import PHOTO_FACES

    cache = ModelCache()
    face = np.asarray(Image.open(SAMPLES / "astronaut.png").convert("RGB"), np.float32) / 255
    blank = np.full_like(face, 0.5)
    with caplog.at_level(logging.INFO):
        first = cache.faces(face, ("clip.mp4", "photo"), PHOTO_FACES)
        second = cache.faces(blank, ("clip.mp4", "photo"), PHOTO_FACES)
        third = cache.faces(face, ("clip.mp4", "photo"), PHOTO_FACES)
    assert first and not second and third == first
    assert caplog.text.count("a face at") == 1


def test_two_faces_are_said_in_the_plural(caplog: pytest.LogCaptureFixture) -> None:
    import numpy as np
    from PIL import Image

    from nst_cli.run.losses import PHOTO_FACES

    face = np.asarray(Image.open(SAMPLES / "astronaut.png").convert("RGB"), np.float32) / 255
    with caplog.at_level(logging.INFO):
        found = ModelCache().faces(np.concatenate([face, face], axis=1), ("two.png",), PHOTO_FACES)
    assert len(found) == 2
    assert "so that they are still readable (protect: off paints them like" in caplog.text
