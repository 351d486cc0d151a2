"""What people bring from other tools, through the real CLI: positional images, --color, the
flags of neural-style / neural-style-pt / style-transfer-pytorch, re-runs without --overwrite,
animations worth watching, settings in a JPEG, and help that shows choices and examples."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import yaml
from conftest import make_image
from PIL import Image
from typer.testing import CliRunner

from nst_cli.cli import app

runner = CliRunner()
TINY = ["--resolution", "48", "--steps", "3", "--device", "cpu", "-q"]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return make_image(tmp_path / "cat.png", (64, 48), seed=1), make_image(
        tmp_path / "starry.png", (40, 40), seed=7
    )


def _config(run: Path) -> dict:
    return yaml.safe_load((run / "config.yaml").read_text())


@pytest.mark.slow
def test_content_and_style_as_arguments_and_color_as_a_flag(pair, tmp_path: Path) -> None:
    cat, starry = pair
    out = tmp_path / "result.png"
    result = runner.invoke(
        app, ["stylize", str(cat), str(starry), "--color", "luminance", "-o", str(out), *TINY]
    )
    assert result.exit_code == 0, result.output
    saved = _config(tmp_path / "result")
    assert Path(saved["content"]).name == "cat.png" and Path(saved["style"]).name == "starry.png"
    assert saved["color"] == "luminance" and out.is_file()


def test_the_photo_given_twice_is_one_line(pair) -> None:
    cat, starry = pair
    result = runner.invoke(app, ["stylize", str(cat), str(starry), "--content", str(starry)])
    assert result.exit_code == 2
    assert "the photo is given twice" in result.output and "Traceback" not in result.output


def test_a_colour_mode_nst_lacks_lists_the_ones_it_has(pair) -> None:
    cat, starry = pair
    result = runner.invoke(app, ["stylize", str(cat), str(starry), "--color", "sepia"])
    assert result.exit_code == 2
    assert "luminance" in result.output and "histogram" in result.output


@pytest.mark.parametrize(
    ("flag", "ours"),
    [
        ("--image-size", "--resolution"),
        ("-image_size", "--resolution"),
        ("--colors", "--color"),
        ("--iterations", "--steps"),
        ("--num-iterations", "--steps"),
        ("-num_iterations", "--steps"),
        ("--original-colors", "--color luminance"),
        ("-original_colors", "--color luminance"),
        ("-content_image", "--content (or the first argument)"),
        ("-style_image", "--style (or the arguments after the photo)"),
        ("-style_weight", "--style-weight"),
        ("--step-size", "--lr"),
    ],
)
def test_another_tools_flag_gets_one_line_naming_ours(flag: str, ours: str) -> None:
    result = runner.invoke(app, ["stylize", flag, "256"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0] == f"error: {flag}: did you mean {ours}? nst calls it that"


def test_every_foreign_flag_of_a_pasted_command_line_is_named_at_once() -> None:
    """A neural-style line and crowsonkb's flags: one line each, all in one answer (a paste
    used to take one retry per flag, and `-init` got Click's "No such option: -i")."""
    result = runner.invoke(
        app,
        [
            "stylize", "-content_image", "cat.png", "-init", "random", "-seed", "3",
            "--min-scale", "128", "--initial-iterations", "500", "--avg-pool",
            "--style-weigth", "3", "--frobnicate", "--lr", "-1",
        ],
    )  # fmt: skip
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert lines == [
        "error: -content_image: did you mean --content (or the first argument)? nst calls it that",
        "error: -init: did you mean --init (content, noise, style or an image path)? nst calls it that",
        "error: -seed: did you mean --seed? nst calls it that",
        "error: --min-scale: did you mean --set scales=[SIZE, ...] (the scales' long sides; by default nst starts near 256 px)? nst calls it that",
        "error: --initial-iterations: did you mean --set steps=[N, ...] (steps per scale, the first one first)? nst calls it that",
        "error: --avg-pool: did you mean --pooling avg? nst calls it that",
        "error: --style-weigth: no such option (did you mean --style-weight?)",
        "error: --frobnicate: no such option",
    ], result.output
    assert "nst stylize -h lists every option" in result.output
    assert "Traceback" not in result.output


def test_a_short_option_with_its_value_attached_is_still_ours(pair, tmp_path: Path) -> None:
    cat, starry = pair
    out = tmp_path / "x.png"
    result = runner.invoke(app, ["stylize", str(cat), str(starry), f"-o{out}", "--print-config"])
    assert result.exit_code == 0, result.output
    assert f"output: {out}" in result.output


@pytest.mark.slow
def test_a_weight_on_another_tools_scale_runs_with_one_line_saying_ours(pair, tmp_path) -> None:
    cat, starry = pair
    args = ["stylize", str(cat), str(starry), "--style-weight", "1000", "-o", str(tmp_path / "r")]
    result = runner.invoke(app, [*args, "--resolution", "48", "--steps", "2", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "another tool's scale" in line]
    assert len(lines) == 1, result.output
    assert "weights.style=1000" in lines[0] and "--style-weight 5 is likely" in lines[0]
    assert (tmp_path / "r" / "final.png").is_file()


def test_a_comma_list_of_styles_says_to_repeat_the_flag(pair) -> None:
    cat, starry = pair
    result = runner.invoke(app, ["stylize", str(cat), "--style", f"{starry},{cat}"])
    assert result.exit_code == 2
    assert f"--style {starry} --style {cat}" in result.output


def test_a_config_key_spelt_like_its_flag_suggests_the_real_key(pair, tmp_path: Path) -> None:
    cat, starry = pair
    config = tmp_path / "mine.yaml"
    config.write_text(f"content: {cat}\nstyle: {starry}\nstyle_weight: 5\n")
    result = runner.invoke(app, ["stylize", "-c", str(config), "--print-config"])
    assert result.exit_code == 2
    assert "did you mean 'weights.style'?" in result.output


@pytest.mark.slow
def test_the_same_command_twice_replaces_its_own_image_and_leaves_no_lock(
    pair, tmp_path: Path
) -> None:
    cat, starry = pair
    out = tmp_path / "result.png"
    for weight in ("1", "8"):
        result = runner.invoke(
            app, ["stylize", str(cat), str(starry), "-o", str(out), "--style-weight", weight, *TINY]
        )
        assert result.exit_code == 0, result.output
        assert _config(tmp_path / "result")["weights"]["style"] == float(weight)
        assert not (tmp_path / "result" / ".nst.lock").exists()
    assert yaml.safe_load(Image.open(out).info["nst:config"])["weights"]["style"] == 8.0


def test_a_users_own_image_at_the_output_is_still_refused(pair, tmp_path: Path) -> None:
    cat, starry = pair
    mine = tmp_path / "result.png"
    Image.new("RGB", (10, 10), (1, 2, 3)).save(mine)
    result = runner.invoke(app, ["stylize", str(cat), str(starry), "-o", str(mine), *TINY])
    assert result.exit_code == 2 and "nst did not write it" in result.output
    assert Image.open(mine).getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.slow
def test_an_unfinished_run_is_not_replaced_without_overwrite(pair, tmp_path: Path) -> None:
    from nst_cli import stylize
    from nst_cli.config.resolve import resolve_config

    cat, starry = pair
    run = tmp_path / "run"
    config = resolve_config(
        None,
        ["resolution=48", "steps=6", "device=cpu"],
        {"content": str(cat), "style": str(starry), "output": str(run)},
    )
    assert stylize(config, should_stop=lambda: True).status == "interrupted"
    result = runner.invoke(app, ["stylize", str(cat), str(starry), "-o", str(run), *TINY])
    assert (
        result.exit_code == 2 and "did not finish" in result.output and "--resume" in result.output
    )


@pytest.mark.slow
def test_a_fast_preset_run_makes_an_animation_worth_watching(pair, tmp_path: Path) -> None:
    cat, starry = pair
    run = tmp_path / "fast"
    result = runner.invoke(
        app,
        [
            "stylize",
            str(cat),
            str(starry),
            "--preset",
            "fast",
            "--resolution",
            "40",
            "--device",
            "cpu",
            "-o",
            str(run),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["gif", str(run), "-q"]).exit_code == 0
    frames = iio.imread(run / "optimization.gif", index=None)
    distinct = {np.asarray(frame).tobytes() for frame in frames}
    assert len(distinct) >= 30


def test_gif_says_how_to_get_more_frames_when_a_run_saved_few(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for step in (0, 50):
        make_image(frames / f"step_{step:06d}.png", (20, 16), seed=step)
    result = runner.invoke(app, ["gif", str(frames)])
    assert result.exit_code == 0, result.output
    assert "only 2 frames were saved" in result.output and "--save-every" in result.output


@pytest.mark.slow
def test_a_jpeg_nst_wrote_re_runs_its_settings(pair, tmp_path: Path) -> None:
    cat, starry = pair
    first = tmp_path / "first.jpg"
    result = runner.invoke(
        app, ["stylize", str(cat), str(starry), "-o", str(first), "--style-weight", "3", *TINY]
    )
    assert result.exit_code == 0, result.output
    again = runner.invoke(
        app, ["stylize", "--config", str(first), "-o", str(tmp_path / "again"), "--print-config"]
    )
    assert again.exit_code == 0, again.output
    assert yaml.safe_load(again.output)["weights"]["style"] == 3.0


def test_help_shows_choices_and_every_command_has_examples() -> None:
    stylize = runner.invoke(app, ["stylize", "-h"], env={"COLUMNS": "200"})
    assert "style|luminance|histogram" in stylize.output
    assert "nst stylize photo.jpg painting.jpg" in stylize.output
    for command in ("gif", "sweep"):
        shown = runner.invoke(app, [command, "-h"], env={"COLUMNS": "200"})
        assert "Examples" in shown.output and f"nst {command} " in shown.output
