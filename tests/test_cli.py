"""End-to-end: the real `nst stylize` command on tiny images with the real bundled weights."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from nst_cli import resolve_config, stylize
from nst_cli.cli import app

runner = CliRunner()


def run_cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def read_losses(run: Path) -> list[dict[str, float]]:
    with (run / "losses.csv").open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


def test_stylize_end_to_end(tiny_config: Path, tmp_path: Path, content_path: Path) -> None:
    out = tmp_path / "run"
    code, output = run_cli("stylize", "--config", str(tiny_config), "--output", str(out))
    assert code == 0, output
    frames = sorted(p.name for p in (out / "frames").iterdir())
    assert frames == ["step_000000.png", "step_000002.png", "step_000004.png", "step_000006.png"]
    final = Image.open(out / "final.png")
    assert final.size == (64, 48)  # long side = resolution, aspect kept
    rows = read_losses(out)
    assert [int(r["step"]) for r in rows] == list(range(7))
    assert set(rows[0]) == {"step", "scale", "elapsed_s", "total", "content", "style", "tv"}
    assert {int(r["scale"]) for r in rows} == {64}  # one scale at this size
    assert rows[-1]["total"] < rows[0]["total"]
    assert rows[-1]["style"] < rows[0]["style"]
    content = pixels(content_path)
    assert np.abs(pixels(out / "final.png") - content).mean() > 1.0  # it really changed
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["run"]["status"] == "completed"
    assert saved["run"]["nst_version"]
    assert saved["steps"] == 6 and saved["layers"]["content"] == {"relu4_2": 1.0}
    assert Path(saved["content"]).is_absolute()
    assert "status" in output and "final.png" in output


def test_set_overrides_and_adam(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "adam"
    code, output = run_cli(
        "stylize", "-c", str(tiny_config), "-o", str(out), "--quiet",
        "--set", "optimizer.name=adam", "--set", "steps=8", "--set", "layers.style={relu1_1: 1, relu3_1: 1}",
    )  # fmt: skip
    assert code == 0, output
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["optimizer"]["name"] == "adam"
    assert saved["layers"]["style"] == {"relu1_1": 1.0, "relu3_1": 1.0}
    rows = read_losses(out)
    assert len(rows) == 9
    assert rows[-1]["total"] < rows[0]["total"]


def test_no_config_file_needed(content_path: Path, style_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "flags"
    code, output = run_cli(
        "stylize", "--content", str(content_path), "--style", str(style_path), "-o", str(out),
        "--resolution", "48", "--steps", "2", "--device", "cpu", "--style-weight", "10", "-q",
    )  # fmt: skip
    assert code == 0, output
    assert Image.open(out / "final.png").size == (48, 36)


def test_print_config_shows_resolved_defaults(tiny_config: Path) -> None:
    code, output = run_cli("stylize", "-c", str(tiny_config), "--steps", "9", "--print-config")
    assert code == 0
    data = yaml.safe_load(output)
    assert data["steps"] == 9
    assert data["layers"]["style"]["relu5_1"] == 1.0
    assert data["optimizer"]["name"] == "lbfgs"


def test_same_seed_same_image_on_cpu(tiny_config: Path, tmp_path: Path) -> None:
    config = resolve_config(tiny_config, ["init=noise", "steps=3", "seed=5"])
    first = stylize(config.model_copy(update={"output": tmp_path / "a"}))
    second = stylize(config.model_copy(update={"output": tmp_path / "b"}))
    assert np.array_equal(pixels(first.final_image), pixels(second.final_image))
    other = stylize(config.model_copy(update={"output": tmp_path / "c", "seed": 6}))
    assert not np.array_equal(pixels(first.final_image), pixels(other.final_image))


def test_python_api_returns_result(tiny_config: Path, tmp_path: Path) -> None:
    result = stylize(resolve_config(tiny_config, ["steps=2"], {"output": str(tmp_path / "api")}))
    assert result.status == "completed"
    assert result.final_image == tmp_path / "api" / "final.png"
    assert result.steps == 2 and result.steps_run == 2
    assert {"total", "content", "style"} <= set(result.losses)
    assert result.seconds > 0


def test_save_every_larger_than_steps(tiny_config: Path, tmp_path: Path) -> None:
    out = tmp_path / "sparse"
    code, _ = run_cli(
        "stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--set", "save_every=100"
    )
    assert code == 0
    assert [p.name for p in (out / "frames").iterdir()] == ["step_000000.png"]
    assert (out / "final.png").is_file()


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["--set", "layers.style.relu9_1=1"], "unknown VGG19 layer 'relu9_1'", 2),
        (["--set", "weights.style=nan"], "weights.style: must be a finite number", 2),
        (["--steps", "0"], "steps: Input should be greater than 0", 2),
        (["--device", "cuda:7"], "cuda:7", 2),
        (["--resolution", "8"], "at least 16 px", 2),
        (["--set", "style_scale=0.05"], "Raise style_scale", 2),
        (["--device", "mps"], "mps (Apple GPU) is not available", 2),
        (["--set", "init=missing.png"], "neither content, noise, style nor an existing image", 2),
        (["--output", "result.png"], "output is the run folder", 2),
        (["--style", "/nonexistent/style.png"], "file not found", 2),
    ],
)
def test_bad_input_is_one_line_and_exit_code(
    tiny_config: Path, args: list[str], message: str, code: int
) -> None:
    exit_code, output = run_cli("stylize", "-c", str(tiny_config), "-q", *args)
    assert exit_code == code, output
    assert message in output
    assert "Traceback" not in output


def test_help_lists_the_three_commands() -> None:
    code, output = run_cli("--help")
    assert code == 0
    for command in ("stylize", "sweep", "gif"):
        assert command in output


def test_small_content_is_upscaled_with_a_warning(style_path: Path, tmp_path: Path) -> None:
    small = tmp_path / "small.png"
    Image.new("RGB", (12, 10), (90, 120, 200)).save(small)
    code, output = run_cli(
        "stylize", "--content", str(small), "--style", str(style_path), "--resolution", "48",
        "--steps", "1", "-o", str(tmp_path / "up"), "-q", "--device", "cpu",
    )  # fmt: skip
    assert code == 0, output
    assert "far smaller than resolution 48; upscaling" in output
    assert Image.open(tmp_path / "up" / "final.png").size == (48, 40)


def test_torchvision_weights_offline_is_one_clear_line(
    tiny_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from urllib.error import URLError

    from torchvision.models import VGG19_Weights

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("Name or service not known")

    monkeypatch.setattr(type(VGG19_Weights.IMAGENET1K_V1), "get_state_dict", offline)
    code, output = run_cli(
        "stylize", "-c", str(tiny_config), "-q", "--set", "model.weights=torchvision"
    )
    assert code == 2
    assert "could not download" in output and "model.weights=caffe" in output
    assert "Traceback" not in output


def test_existing_run_folder_is_never_overwritten_silently(
    tiny_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "keep"
    assert run_cli("stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--steps", "8")[0] == 0
    before = (out / "final.png").read_bytes()
    code, output = run_cli("stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--steps", "2")
    assert code == 2 and "already holds a run" in output and "--overwrite" in output
    assert (out / "final.png").read_bytes() == before
    (out / "notes.txt").write_text("mine")
    code, output = run_cli(
        "stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--steps", "2", "--overwrite"
    )
    assert code == 0, output
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        "step_000000.png",
        "step_000002.png",
    ]
    assert (out / "notes.txt").read_text() == "mine"  # only nst's own files are replaced


def test_debug_shows_the_traceback(tiny_config: Path) -> None:
    from nst_cli.errors import ConfigError

    result = runner.invoke(app, ["stylize", "-c", str(tiny_config), "--steps", "0", "--debug"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)  # re-raised, so Python prints the traceback
