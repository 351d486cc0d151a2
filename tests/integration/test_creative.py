"""Creative controls: colour modes, the Wasserstein style loss and iterate averaging each do
what they claim, at every scale, with one-line errors for bad values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst_cli import stylize
from nst_cli.config.resolve import resolve_config
from nst_cli.core.color import match_color
from nst_cli.core.features import build_extractor
from nst_cli.core.losses.wasserstein import gaussian_target, wasserstein_loss
from nst_cli.core.pixels import to_tensor
from nst_cli.errors import NSTError


def _run(tiny_config: Path, output: Path, *sets: str, **overrides):
    config = resolve_config(tiny_config, list(sets), {"output": str(output), **overrides})
    return stylize(config)


def _chroma(path: Path, size: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as image:
        ycc = image.convert("RGB").resize(size).convert("YCbCr")
    return np.asarray(ycc, dtype=np.int16)[..., 1:]


@pytest.mark.slow
def test_luminance_keeps_the_contents_colours_and_the_default_does_not(
    tiny_config: Path, tmp_path: Path, content_path: Path
) -> None:
    # The painting's own light (match_luminance: false): the run is the default one.
    runs = {
        mode: _run(
            tiny_config, tmp_path / mode, f"color={mode}", "scales=[32,64]", "steps=[3,3]",
            "match_luminance=false",
        )
        for mode in ("style", "luminance")
    }  # fmt: skip
    with Image.open(runs["style"].final_image) as final:
        size = final.size
    content = _chroma(content_path, size)
    kept = np.abs(_chroma(runs["luminance"].final_image, size) - content)
    changed = np.abs(_chroma(runs["style"].final_image, size) - content)
    # Within a level or so on average; a few pixels whose new luminance puts the photo's
    # colour out of the RGB gamut are clipped further.
    assert kept.mean() < 1.5 and np.median(kept) <= 1, (kept.mean(), kept.max())
    assert changed.mean() > 3 * kept.mean() + 2
    # Every frame is colour-preserved too (so `nst gif` shows the run as saved).
    frame = tmp_path / "luminance" / "frames" / "step_000002.png"
    assert np.abs(_chroma(frame, size) - content).mean() < 1.5
    # The painting's texture is the default run's: the same optimisation, only the colours
    # put back, so the luminance of the two results is the same (to rounding, and to the
    # clipping of the few colours the new luminance puts out of gamut).
    lumas = [
        np.asarray(Image.open(runs[mode].final_image).convert("YCbCr"), dtype=np.int16)[..., 0]
        for mode in ("style", "luminance")
    ]
    # (The painting's palette, which the palette term pulls the run to, puts more of them out.)
    assert np.abs(lumas[0] - lumas[1]).mean() < 2.0 and np.median(np.abs(lumas[0] - lumas[1])) <= 1
    # The same optimisation, step for step: the same losses.
    assert runs["luminance"].losses == runs["style"].losses


SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _luma(path: Path, size: tuple[int, int] | None = None) -> float:
    with Image.open(path) as image:
        image = image.convert("RGB")
        return float(np.asarray((image.resize(size) if size else image).convert("L")).mean())


def test_luminance_keeps_a_dark_photo_dark(tmp_path: Path) -> None:
    # The Hubble Deep Field (mean luminance 19 of 255) under Hokusai's bright wave: the
    # painting's light is matched to the photo's first, so the night stays night; with the
    # painting's own light the result turns pale grey.
    means = {}
    for match in ("true", "false"):
        config = resolve_config(
            None,
            ["color=luminance", f"match_luminance={match}", "resolution=64", "steps=12"],
            {
                "content": str(SAMPLES / "hubble.jpg"),
                "style": str(SAMPLES / "paintings" / "wave.jpg"),
                "output": str(tmp_path / match),
                "device": "cpu",
            },
        )
        final = stylize(config).final_image
        with Image.open(final) as image:
            size = image.size
        means[match] = _luma(final)
        photo = _luma(SAMPLES / "hubble.jpg", size)
    assert abs(means["true"] - photo) < 20, (means, photo)
    assert means["false"] - photo > 40, (means, photo)


def test_a_failed_luminance_run_keeps_its_colours_in_the_image_it_leaves(
    tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest good image, saved as final.png when the loss turns NaN, is put through
    the same colour step as every frame."""
    import nst_cli.core.losses.total as losses

    real_tv, calls = losses.tv_loss, iter(range(100))
    monkeypatch.setattr(
        losses, "tv_loss", lambda image: real_tv(image) * (float("nan") if next(calls) >= 3 else 1)
    )
    with pytest.raises(NSTError, match="became nan"):
        _run(tiny_config, tmp_path / "lum", "color=luminance", "weights.tv=1", "save_every=1")
    with (
        Image.open(tmp_path / "lum" / "final.png") as final,
        Image.open(tmp_path / "lum" / "frames" / "step_000002.png") as frame,
    ):
        assert np.array_equal(np.asarray(final), np.asarray(frame))


def test_histogram_matching_gives_the_style_the_contents_colour_statistics() -> None:
    generator = torch.Generator().manual_seed(0)
    style = torch.rand(1, 3, 40, 40, generator=generator) * torch.tensor([1.0, 0.3, 0.1]).view(
        1, 3, 1, 1
    )
    content = torch.rand(1, 3, 30, 50, generator=generator) * 0.5 + 0.25
    matched = match_color(style, content)
    flat, ref = matched[0].reshape(3, -1), content[0].reshape(3, -1)
    torch.testing.assert_close(flat.mean(1), ref.mean(1), atol=2e-3, rtol=0)
    torch.testing.assert_close(torch.cov(flat), torch.cov(ref), atol=2e-3, rtol=0)


def test_histogram_run_completes(tiny_config: Path, tmp_path: Path) -> None:
    result = _run(tiny_config, tmp_path / "h", "color=histogram")
    assert result.status == "completed"


def _w2(path: Path, style_path: Path, layer: str = "relu3_1") -> float:
    net = build_extractor("caffe", [layer])
    with Image.open(path) as image, torch.no_grad():
        out = net(to_tensor(image.convert("RGB")), [layer])[layer]
        style = net(to_tensor(Image.open(style_path).convert("RGB")), [layer])[layer]
        return float(wasserstein_loss(out, gaussian_target(style)))


@pytest.mark.slow
def test_wasserstein_lowers_the_mean_covariance_distance_more_than_gram(
    tiny_config: Path, tmp_path: Path, style_path: Path
) -> None:
    distances = {}
    for statistic in ("gram", "wasserstein"):
        # The statistics alone: the palette term pulls both runs' colours the same way.
        sets = (f"loss.style={statistic}", "weights.palette=0")
        result = _run(tiny_config, tmp_path / statistic, *sets, steps=10)
        assert result.status == "completed"
        distances[statistic] = _w2(result.final_image, style_path)
    assert distances["wasserstein"] < distances["gram"], distances


def test_wasserstein_is_zero_on_its_own_target_and_has_finite_gradients() -> None:
    features = torch.rand(1, 8, 6, 7, dtype=torch.float64).float().requires_grad_(True)
    target = gaussian_target(features)
    assert float(wasserstein_loss(features.detach(), target)) < 1e-4
    other = (features * 1.5 + 0.2).detach().requires_grad_(True)
    wasserstein_loss(other, target).backward()
    assert other.grad is not None and torch.isfinite(other.grad).all()


@pytest.mark.slow
def test_averaging_changes_the_saved_image_and_resumes_exactly(
    tiny_config: Path, tmp_path: Path
) -> None:
    sets = ("optimizer.name=adam", "checkpoint=exact")
    plain = _run(tiny_config, tmp_path / "plain", *sets, seed=1)
    averaged = _run(tiny_config, tmp_path / "avg", *sets, "average=0.8", seed=1)
    a, b = (np.asarray(Image.open(r.final_image), dtype=np.int16) for r in (plain, averaged))
    assert np.abs(a - b).mean() > 0.5  # the average is what is saved

    seen: list[int] = []
    config = resolve_config(
        tiny_config, [*sets, "average=0.8"], {"output": str(tmp_path / "split"), "seed": 1}
    )
    first = stylize(
        config, callbacks=[lambda e: seen.append(e.step)], should_stop=lambda: 2 in seen
    )
    assert first.status == "interrupted"
    second = stylize(config, resume=True)
    c = np.asarray(Image.open(second.final_image), dtype=np.int16)
    assert np.abs(b - c).max() <= 1  # the average continues where it stopped


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("average=1.0", "average: Input should be less than 1"),
        ("average=-0.5", "average: Input should be greater than or equal to 0"),
        ("color=sepia", "color: Input should be 'style', 'luminance' or 'histogram'"),
        ("loss.style=swd", "loss.style: Input should be 'gram' or 'wasserstein'"),
    ],
)
def test_bad_creative_values_are_one_line_errors(tiny_config: Path, setting: str, message: str):
    with pytest.raises(Exception, match=message):
        resolve_config(tiny_config, [setting])


@pytest.mark.slow
def test_two_styles_weighted_one_to_zero_equal_the_single_style(
    tiny_config: Path, tmp_path: Path, style_path: Path, content_path: Path
) -> None:
    single = _run(tiny_config, tmp_path / "single", "scales=[32,64]", "steps=[2,2]")
    blend = [{"path": str(style_path), "weight": 1.0}, {"path": str(content_path), "weight": 0.0}]
    both = _run(tiny_config, tmp_path / "both", "scales=[32,64]", "steps=[2,2]", style=blend)
    a, b = (np.asarray(Image.open(r.final_image), dtype=np.int16) for r in (single, both))
    assert np.abs(a - b).max() <= 1
    half = [{"path": str(style_path)}, {"path": str(content_path)}]
    other = _run(tiny_config, tmp_path / "half", "scales=[32,64]", "steps=[2,2]", style=half)
    c = np.asarray(Image.open(other.final_image), dtype=np.int16)
    assert np.abs(a - c).mean() > 1  # a real blend changes the picture


def test_style_flags_repeat_and_blend(tiny_config: Path, style_path: Path, content_path: Path):
    from typer.testing import CliRunner

    from nst_cli.cli.base import app

    args = ["stylize", "-c", str(tiny_config), "--print-config", "--style", str(style_path)]
    args += ["--style", str(content_path), "--style-blend", "0.7,0.3"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    import yaml

    styles = yaml.safe_load(result.output)["style"]
    assert [s["weight"] for s in styles] == [0.7, 0.3]
    assert styles[1]["path"].endswith(content_path.name)
    bad = CliRunner().invoke(app, [*args[:-1], "0.5,0.3,0.2"])
    assert bad.exit_code == 2 and "--style-blend: 3 weights for 2 --style images" in bad.output


@pytest.mark.parametrize(
    ("style", "message"),
    [
        (
            [{"path": "style.png", "weight": 0}, {"path": "content.png", "weight": 0}],
            "style weights sum to 0",
        ),
        ([{"path": "style.png", "weight": -1}], "weight: must be >= 0"),
        ([], "give at least one style image"),
        (["style.png", "missing.png"], "missing.png: file not found"),
    ],
)
def test_bad_style_blends_are_one_line_errors(tiny_config: Path, tmp_path: Path, style, message):
    with pytest.raises(Exception, match=message):
        config = resolve_config(tiny_config, [], {"output": str(tmp_path / "run")})
        config = resolve_config(
            tiny_config, [], {"output": str(tmp_path / "run"), "style": [
                item if isinstance(item, dict) else str(tiny_config.parent / item) for item in style
            ]},
        )  # fmt: skip
        stylize(config)


def _two_masks(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Left half → style 0, right half → style 1; a second style of flat blue."""
    left = np.zeros((48, 64), dtype=np.uint8)
    left[:, :32] = 255
    Image.fromarray(left).save(tmp_path / "left.png")
    Image.fromarray(255 - left).save(tmp_path / "right.png")
    Image.new("RGB", (40, 40), (20, 40, 220)).save(tmp_path / "blue.png")
    return tmp_path / "left.png", tmp_path / "right.png", tmp_path / "blue.png"


@pytest.mark.slow
def test_masks_confine_each_style_to_its_region(
    tiny_config: Path, tmp_path: Path, style_path: Path
) -> None:
    left, right, blue = _two_masks(tmp_path)
    result = _run(
        tiny_config, tmp_path / "masked", steps=12,
        style=[str(style_path), str(blue)], masks={str(left): 0, str(right): 1},
    )  # fmt: skip
    assert result.status == "completed"
    # Measured on the Gram statistics: inside each mask the result's guided Gram is nearer
    # to that mask's style than to the other one.
    from nst_cli.core.losses.gram import gram_matrix
    from nst_cli.core.losses.guided import masked_gram

    layer = "relu2_1"
    net = build_extractor("caffe", [layer])
    with torch.no_grad():
        out = net(to_tensor(Image.open(result.final_image).convert("RGB")), [layer])[layer]
        grams = [
            gram_matrix(net(to_tensor(Image.open(p).convert("RGB")), [layer])[layer])
            for p in (style_path, blue)
        ]
        size = out.shape[-2:]
        regions = [
            torch.nn.functional.interpolate(
                to_tensor(Image.open(m).convert("RGB"))[:, :1], size=tuple(size), mode="area"
            )
            for m in (left, right)
        ]

        def distance(region: int, style: int) -> float:
            return float(torch.mean((masked_gram(out, regions[region]) - grams[style]) ** 2))

    assert distance(0, 0) < distance(0, 1) and distance(1, 1) < distance(1, 0)
    assert distance(0, 0) < 0.5 * distance(1, 0)  # style 0 lives on the left, not the right


def test_bad_masks_are_one_line_errors(tiny_config: Path, tmp_path: Path, style_path: Path):
    left, right, blue = _two_masks(tmp_path)
    square = tmp_path / "square.png"
    Image.new("L", (40, 40), 255).save(square)
    cases = [
        ({str(tmp_path / "nope.png"): 0}, "masks: mask image .*nope.png not found"),
        ({str(square): 0}, "masks: .*square.png is 40×40 but the content is 64×48"),
        ({str(left): 2}, "maps to style 2, but there are 2 style image"),
    ]
    for masks, message in cases:
        with pytest.raises(Exception, match=message):
            config = resolve_config(
                tiny_config, [],
                {"output": str(tmp_path / "run"), "style": [str(style_path), str(blue)], "masks": masks},
            )  # fmt: skip
            stylize(config)
