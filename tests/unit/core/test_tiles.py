"""Tiled passes (core.tiles) give the whole image's loss and gradient, exactly."""

from __future__ import annotations

import pytest
import torch

from nst_cli.core import tiles
from nst_cli.core.features import FeatureExtractor, build_extractor
from nst_cli.core.losses.guided import Region, region_norms
from nst_cli.core.losses.region_content import RegionContent
from nst_cli.core.losses.total import (
    ContentLoss,
    StyleLoss,
    Weighted,
    WeightedSum,
    blend_targets,
    style_norms,
    style_targets,
    style_transfer_loss,
    target_sums,
    targets_from_sums,
)
from nst_cli.core.objects import object_mask
from nst_cli.core.tiles import Tiler, halo, plan_tiles

STYLE = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
CONTENT = ["relu4_2"]
HEIGHT, WIDTH = 144, 176  # not multiples of the 64 px tiles: edge tiles are partial


@pytest.fixture(scope="module")
def net() -> FeatureExtractor:
    return build_extractor("caffe", STYLE + CONTENT)


def _images(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)

    def smooth(height: int, width: int) -> torch.Tensor:
        coarse = torch.rand(1, 3, height // 8, width // 8, generator=generator)
        detail = 0.3 * torch.rand(1, 3, height, width, generator=generator)
        up = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear")
        return (0.7 * up + detail).clamp(0, 1)

    return {
        "content": smooth(HEIGHT, WIDTH),
        "style": smooth(128, 144),
        "style2": smooth(96, 96),
        "image": smooth(HEIGHT, WIDTH),
    }


def _loss(net: FeatureExtractor, case: str) -> WeightedSum:
    images = _images()
    layers = {name: 1.0 for name in STYLE}
    statistic = "wasserstein" if case == "wasserstein" else "gram"
    with torch.no_grad():
        content = net(images["content"], STYLE + CONTENT)
        targets = style_targets(net(images["style"], STYLE), layers, statistic=statistic)
        if case == "styles":  # two paintings blended
            second = style_targets(net(images["style2"], STYLE), layers)
            targets = blend_targets([targets, second], [0.7, 0.3])
    tv = 0.5 if case in ("styles", "tv") else 0.0
    if case == "masks":
        regions = []
        for index, image in enumerate(("style", "style2")):
            with torch.no_grad():
                grams = style_targets(net(images[image], STYLE), layers)
            ramp = torch.linspace(0, 1, WIDTH).view(1, 1, 1, WIDTH).expand(1, 1, HEIGHT, WIDTH)
            mask = ramp if index == 0 else 1 - ramp
            masks = {
                n: torch.nn.functional.interpolate(mask, size=content[n].shape[-2:], mode="area")
                for n in STYLE
            }
            region = Region(grams, masks, weight=1.0)
            region.norms = region_norms(region, content)
            regions.append(region)
        return style_transfer_loss(
            ContentLoss({"relu4_2": content["relu4_2"]}, {"relu4_2": 1.0}, normalize=True),
            StyleLoss({}, layers, normalize=True, regions=regions),
            {"content": 1.0, "style": 2.0},
        )
    loss = style_transfer_loss(
        ContentLoss({"relu4_2": content["relu4_2"]}, {"relu4_2": 1.0}, normalize=True),
        StyleLoss(targets, layers, normalize=True, norms=style_norms(content, targets)),
        {"content": 1.0, "style": 2.0, "tv": tv},
    )
    if case == "faces":  # a face's box held harder (protect: faces), feathered
        held = dict.fromkeys(["relu3_1", "relu4_2"], 1.0)
        with torch.no_grad():
            targets = net(images["content"], list(held))
        box = 1 - object_mask([(0.3, 0.2, 0.6, 0.7)], HEIGHT, WIDTH, 0.1, 0.3)
        masks = {
            n: torch.nn.functional.interpolate(box, size=targets[n].shape[-2:], mode="area")
            for n in held
        }
        loss = loss.plus(Weighted("faces", 4.0, RegionContent(targets, masks, held), True))
    return loss


def _untiled(net: FeatureExtractor, loss: WeightedSum) -> tuple[float, torch.Tensor]:
    pixels = _images()["image"].requires_grad_(True)
    terms = loss(net(pixels, loss.layers), pixels)
    terms.total.backward()
    assert pixels.grad is not None
    return float(terms.total.detach()), pixels.grad


def _tiled(
    net: FeatureExtractor, loss: WeightedSum, seen: list[tuple[int, int, int]] | None = None
) -> tuple[float, torch.Tensor]:
    pixels = _images()["image"].requires_grad_(True)
    report = None if seen is None else lambda *args: seen.append(args)
    tiler = Tiler.plan(net, (HEIGHT, WIDTH), 64, loss.layers, report)
    assert len(tiler.tiles) == 9
    terms = tiler.evaluate(pixels, loss)
    assert pixels.grad is not None
    return float(terms.total), pixels.grad


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(
    "case",
    [
        "gram",
        "faces",
        pytest.param("masks", marks=pytest.mark.slow),
        pytest.param("wasserstein", marks=pytest.mark.slow),
        pytest.param("styles", marks=pytest.mark.slow),
        pytest.param("tv", marks=pytest.mark.slow),
    ],
)
def test_the_tiled_loss_and_gradient_are_the_untiled_ones(net, case: str) -> None:
    loss = _loss(net, case)
    whole, whole_grad = _untiled(net, loss)
    seen: list[tuple[int, int, int]] = []
    tiled, tiled_grad = _tiled(net, loss, seen)
    # Each tile once to add its sums, once to pull its gradient (the progress says which).
    assert seen == [(i, 9, 1) for i in range(1, 10)] + [(i, 9, 2) for i in range(1, 10)]
    assert tiled == pytest.approx(whole, rel=1e-4)
    assert _relative(tiled_grad, whole_grad) <= 1e-4
    # Pixel by pixel too: a seam would show as a few wrong pixels in a small norm.
    assert float((tiled_grad - whole_grad).abs().max()) <= 1e-4 * float(whole_grad.abs().max())


def test_without_the_halo_the_tiles_would_be_wrong(net, monkeypatch) -> None:
    """The halo is what makes it exact: tiles cut without it are stylised apart."""
    loss = _loss(net, "gram")
    _, whole_grad = _untiled(net, loss)
    monkeypatch.setattr(tiles, "halo", lambda names: 0)
    _, cut_grad = _tiled(net, loss)
    assert _relative(cut_grad, whole_grad) > 1e-2


def test_the_tiles_cover_every_pixel_once_on_the_pooling_grid() -> None:
    plan = plan_tiles(HEIGHT, WIDTH, 64, STYLE + CONTENT)
    owned = torch.zeros(HEIGHT, WIDTH)
    for tile in plan:
        owned[tile.top : tile.bottom, tile.left : tile.right] += 1
        assert tile.pad_top % 16 == 0 and tile.pad_left % 16 == 0
        assert tile.top - tile.pad_top == min(96, tile.top)
        assert tile.left - tile.pad_left == min(96, tile.left)
    assert bool((owned == 1).all())
    assert halo(STYLE) == 96  # relu5_1 reaches 85 px: on the 16 px grid, 96
    assert halo(["relu1_1"]) == 1 and halo(["relu2_1"]) == 6  # 5 px, on the 2 px grid


@pytest.mark.slow
def test_tiled_targets_are_the_untiled_ones(net) -> None:
    images = _images()
    tiler = Tiler.plan(net, (HEIGHT, WIDTH), 64, STYLE + CONTENT)
    with torch.no_grad():
        whole = net(images["content"], STYLE + CONTENT)
    kept, _, shapes = tiler.collect(images["content"], STYLE + CONTENT, keep=CONTENT)
    assert torch.allclose(kept["relu4_2"], whole["relu4_2"], rtol=1e-5, atol=1e-4)
    # A painting's guided object block (core.objects): its mask cut to each tile's window.
    guide = 1 - object_mask([(0.3, 0.2, 0.6, 0.7)], HEIGHT, WIDTH)
    masks = {
        "relu5_1": torch.nn.functional.interpolate(
            guide, size=whole["relu5_1"].shape[-2:], mode="area"
        )
    }
    for statistic, guided in (("gram", None), ("wasserstein", None), ("gram", masks)):
        sums, shapes = tiler.accumulate(
            images["content"],
            STYLE,
            lambda f, crops, s=statistic, m=guided: target_sums(f, STYLE, s, m, crops),
        )
        tiled = targets_from_sums(sums, shapes, statistic=statistic)
        untiled_sums = target_sums(whole, STYLE, statistic, guided)
        untiled = targets_from_sums(
            untiled_sums, {n: tuple(whole[n].shape[1:]) for n in STYLE}, statistic=statistic
        )
        for name in STYLE:
            a, b = (tiled[name], untiled[name])
            pairs = [(a, b)] if statistic == "gram" else [(a.mean, b.mean), (a.cov, b.cov)]
            for x, y in pairs:
                assert _relative(x, y) <= 1e-5


def test_an_evaluation_without_gradient_leaves_none(net) -> None:
    loss = _loss(net, "gram")
    whole, _ = _untiled(net, loss)
    pixels = _images()["image"]
    with torch.no_grad():
        terms = Tiler.plan(net, (HEIGHT, WIDTH), 64, loss.layers).evaluate(pixels, loss, False)
    assert float(terms.total) == pytest.approx(whole, rel=1e-4)
    assert pixels.grad is None
