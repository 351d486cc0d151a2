"""The palette term (losses.palette): the painting's colours as a distribution."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nst_cli.config.resolve import resolve_config
from nst_cli.core.losses.palette import PaletteTerm, pooled_colours, pooling_for
from nst_cli.run.cache import ModelCache
from nst_cli.run.inputs import load_inputs, stage_images
from nst_cli.run.losses import build_loss


def _image(colours: torch.Tensor, side: int = 32) -> torch.Tensor:
    return colours[: side * side].T.reshape(1, 3, side, side)


def test_zero_on_the_paintings_own_colours_and_one_on_the_photo() -> None:
    generator = torch.Generator().manual_seed(0)
    painting = 0.2 + 0.2 * torch.rand(4096, 3, generator=generator)  # dark and muted
    photo = torch.rand(1, 3, 32, 32, generator=generator)
    term = PaletteTerm(painting).normalise_by(photo)
    assert float(term(photo)) == pytest.approx(1.0)
    assert float(term(_image(painting))) < 0.01


def test_it_ignores_where_the_colours_are_only_which() -> None:
    generator = torch.Generator().manual_seed(1)
    colours = torch.rand(1024, 3, generator=generator)
    term = PaletteTerm(colours)
    shuffled = colours[torch.randperm(1024, generator=generator)]
    assert float(term(_image(shuffled))) == pytest.approx(float(term(_image(colours))), abs=1e-7)


def test_its_gradient_moves_the_colours_towards_the_painting() -> None:
    painting = torch.full((2048, 3), 0.25) + 0.05 * torch.rand(2048, 3)
    image = torch.full((1, 3, 16, 16), 0.9, requires_grad=True)
    term = PaletteTerm(painting)
    term(image).backward()
    assert image.grad is not None and bool((image.grad > 0).all())  # descent darkens it


def test_a_blends_shares_weigh_its_paintings_colours() -> None:
    dark, light = torch.zeros(1000, 3), torch.ones(1000, 3)
    mostly_dark = PaletteTerm(torch.cat([dark, light]), torch.tensor([0.9] * 1000 + [0.1] * 1000))
    grey = torch.full((1, 3, 10, 10), 0.1)
    assert float(mostly_dark(grey)) < float(PaletteTerm(torch.cat([dark, light]))(grey))


def test_large_images_are_pooled_to_a_bounded_count_and_keep_their_palette() -> None:
    assert pooling_for((256, 256)) == 1
    assert pooling_for((341, 512)) == 2
    assert pooling_for((2731, 4096)) == 14
    # Smooth images' palettes are the same pooled or not; every pixel, edges included, moves.
    ramp = torch.linspace(0, 1, 301)
    image = torch.stack(
        [
            ramp[:, None].expand(301, 301),
            ramp[None, :].expand(301, 301),
            0.5 * ramp[:, None].expand(301, 301),
        ]
    )[None]
    blocks = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(2)) * 0.5
    painting = torch.nn.functional.interpolate(blocks, size=(301, 301), mode="nearest")
    whole = PaletteTerm(pooled_colours(painting, 1))
    pooled = PaletteTerm(pooled_colours(painting, 2), pooling=2)
    assert float(pooled(image)) == pytest.approx(float(whole(image)), rel=0.05)
    image.requires_grad_(True)
    pooled(image).backward()
    assert image.grad is not None and bool((image.grad[..., -1, :] != 0).any())
    assert bool((image.grad[..., :, -1] != 0).any())


@pytest.mark.parametrize(
    ("sets", "on"),
    [
        ([], True),
        (["color=luminance"], True),
        (["color=histogram"], False),
        (["weights.palette=0"], False),
    ],
)
def test_the_term_runs_where_the_runs_colours_are_the_paintings(sets: list[str], on: bool) -> None:
    samples = Path(__file__).resolve().parents[3] / "samples"
    config = resolve_config(
        None,
        sets,
        {
            "content": str(samples / "car.png"),
            "style": str(samples / "fluid.png"),
            "resolution": 64,
        },
    )
    cache = ModelCache()
    extractor = cache.extractor(config, config.network_layers, torch.device("cpu"), "fp32")
    content, paintings = stage_images(config, load_inputs(config), 64)
    loss = build_loss(config, extractor, content, paintings, cache, 64)
    assert any(term.name == "palette" for term in loss.terms) is on
