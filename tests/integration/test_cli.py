"""End-to-end: the real `nst stylize` command on tiny images with the real bundled weights."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from nst_cli import stylize
from nst_cli.cli.base import app
from nst_cli.config.resolve import resolve_config

runner = CliRunner()


def run_cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def read_losses(run: Path) -> list[dict[str, float]]:
    with (run / "losses.csv").open() as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)


@pytest.mark.slow
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
    # The summary says what `precision: auto` chose, as config.yaml's run section does.
    assert f"on cpu ({saved['run']['precision']})" in output


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
        (["--device", "cuda:7"], "device: cuda:7 requested but", 2),
        (["--resolution", "8"], "at least 16 px", 2),
        (["--set", "style_scale=0.05"], "Raise style_scale", 2),
        (["--device", "mps"], "mps (Apple GPU) is not available", 2),
        (["--set", "init=missing.png"], "neither content, noise, style nor an existing image", 2),
        (
            ["--set", "precision=fp16"],
            "precision: Input should be 'auto', 'tf32', 'fp32' or 'bf16'",
            2,
        ),
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


@pytest.mark.slow
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


@pytest.mark.subprocess
@pytest.mark.slow
def test_commands_import_only_what_they_need(tiny_config: Path, tmp_path: Path) -> None:
    """Start-up is seconds of every command: stylize imports neither torchvision.models (~3 s)
    nor torch._dynamo (~2 s, what torch.optim.Optimizer pulls in) nor sympy (~0.6 s, what
    materialising a meta-device layer pulls in), and gif no torch at all."""
    import subprocess
    import sys

    out = tmp_path / "run"
    probe = (
        "import sys\n"
        "from nst_cli.cli import main\n"
        "sys.argv = ['nst', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "heavy = ('torch', 'torchvision', 'torch._dynamo', 'sympy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )

    def imported(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True
        )
        return done.stdout.strip().splitlines()[-1]

    stylize_args = ("stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--steps", "2")
    assert imported(*stylize_args) == "['torch']"
    assert imported("gif", str(out)) == "[]"


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize(
    "param, says",
    [
        ("weights.styel=1,2", "weights.styel"),  # an unknown key
        ("weights.style=1,lots", "weights.style"),  # a value of the wrong type
        ("steps=4,,8", "no empty values"),
    ],
)
def test_a_sweep_typo_is_reported_before_torch_loads(
    param: str, says: str, tiny_config: Path, tmp_path: Path
) -> None:
    """Loading torch takes seconds on a small CPU; a mistyped --param should not wait for it."""
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from nst_cli.cli import main\n"
        "sys.argv = ['nst', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('exit', e.code)\n"
        "print('torch' in sys.modules)"
    )
    args = ("sweep", "-c", str(tiny_config), "-o", str(tmp_path / "sw"), "--param", param)
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True)
    assert done.stdout.split() == ["exit", "2", "False"], done.stdout + done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "sw").exists()


def test_a_spinner_covers_loading_torch_in_a_terminal_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import sys

    from rich.console import Console

    from nst_cli.cli import base as cli

    def shown(terminal: bool, quiet: bool = False) -> str:
        out = io.StringIO()
        monkeypatch.setattr(cli, "err_console", Console(file=out, force_terminal=terminal))
        with cli.loading_torch(quiet):
            pass
        return out.getvalue()

    monkeypatch.delitem(sys.modules, "torch")  # as in a fresh process; restored afterwards
    assert "loading torch" in shown(terminal=True)
    assert shown(terminal=False) == "" and shown(terminal=True, quiet=True) == ""
    monkeypatch.undo()
    assert shown(terminal=True) == ""  # already loaded: nothing to wait for


@pytest.mark.slow
def test_a_finished_run_is_replaced_by_the_same_command_but_never_a_users_file(
    tiny_config: Path, tmp_path: Path
) -> None:
    out = tmp_path / "keep"
    assert run_cli("stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--steps", "8")[0] == 0
    code, output = run_cli("stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--steps", "4")
    assert code == 0, output  # the same command again: its finished run is replaced
    assert yaml.safe_load((out / "config.yaml").read_text())["steps"] == 4
    (out / "notes.txt").write_text("mine")
    (out / "frames" / "step_1.png").write_bytes(b"my own frame")  # not one of nst's names
    code, output = run_cli("stylize", "-c", str(tiny_config), "-o", str(out), "-q", "--steps", "2")
    assert code == 0, output
    assert sorted(p.name for p in (out / "frames").iterdir()) == [
        "step_000000.png",
        "step_000002.png",
        "step_1.png",
    ]
    assert (out / "notes.txt").read_text() == "mine"  # only nst's own files are replaced
    assert (out / "frames" / "step_1.png").read_bytes() == b"my own frame"


def test_debug_shows_the_traceback(tiny_config: Path) -> None:
    from nst_cli.errors import ConfigError

    result = runner.invoke(app, ["stylize", "-c", str(tiny_config), "--steps", "0", "--debug"])
    assert result.exit_code != 0
    assert isinstance(result.exception, ConfigError)  # re-raised, so Python prints the traceback


def test_help_has_panels_defaults_examples_and_short_flag() -> None:
    result = runner.invoke(app, ["stylize", "-h"], env={"COLUMNS": "200"})
    code, output = result.exit_code, result.output
    assert code == 0, output
    for text in ("Inputs", "Weights", "Optimisation", "Output", "Run control", "Examples"):
        assert text in output, text
    for flag in ("--tv-weight", "--init", "--style-scale", "--optimizer", "--save-every",
                 "--pooling", "--preset", "--log-every"):  # fmt: skip
        assert flag in output, flag
    assert "default: 512" in output and "default: balanced" in output


@pytest.mark.subprocess
def test_help_and_print_config_do_not_import_torch(tiny_config: Path) -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from nst_cli.cli import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    for args in (["stylize", "--help"], ["stylize", "-c", str(tiny_config), "--print-config"]):
        done = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120
        )
        assert done.stdout.strip().endswith("NO-TORCH"), (
            args,
            done.stdout[-200:],
            done.stderr[-300:],
        )


def test_common_keys_have_their_own_flags(tiny_config: Path) -> None:
    code, output = run_cli(
        "stylize", "-c", str(tiny_config), "--print-config", "--tv-weight", "0.5",
        "--init", "noise", "--style-scale", "0.5", "--optimizer", "adam",
        "--save-every", "7", "--pooling", "avg",
    )  # fmt: skip
    assert code == 0, output
    config = yaml.safe_load(output)
    assert config["weights"]["tv"] == 0.5 and config["init"] == "noise"
    assert config["style_scale"] == 0.5 and config["optimizer"]["name"] == "adam"
    assert config["save_every"] == 7 and config["model"]["pooling"] == "avg"


def test_layers_command_lists_every_layer_and_the_defaults() -> None:
    code, output = run_cli("layers")
    assert code == 0, output
    lines = {line.split()[0]: line for line in output.splitlines()[1:] if line.strip()}
    assert len(lines) == 37 and "content" in lines["relu4_2"] and "style" in lines["relu5_1"]
    assert lines["pool5"].split()[1] == "32"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["result.png", "result.jpg"])
def test_output_image_path_writes_it_and_keeps_the_run_folder_beside(
    tiny_config: Path, tmp_path: Path, name: str
) -> None:
    target = tmp_path / "out" / name
    code, output = run_cli("stylize", "-c", str(tiny_config), "-q", "-o", str(target))
    assert code == 0, output
    run_dir = tmp_path / "out" / "result"
    assert (run_dir / "final.png").is_file() and (run_dir / "config.yaml").is_file()
    with Image.open(target) as image:
        assert image.format == ("PNG" if name.endswith("png") else "JPEG")
        assert image.size == Image.open(run_dir / "final.png").size
    # The same command again replaces the image its finished run wrote...
    code, output = run_cli(
        "stylize", "-c", str(tiny_config), "-q", "-o", str(target), "--seed", "3"
    )
    assert code == 0, output
    assert (run_dir / "config.yaml").read_text().count("seed: 3") == 1
    # ...but an image nst did not write is the user's: never replaced unasked.
    Image.new("RGB", (8, 8)).save(target, format="PNG" if name.endswith("png") else "JPEG")
    code, output = run_cli("stylize", "-c", str(tiny_config), "-q", "-o", str(target))
    assert code == 2 and "nst did not write it" in output and "--overwrite" in output


def test_plain_progress_lines_when_not_a_terminal(tiny_config: Path, tmp_path: Path) -> None:
    code, output = run_cli(
        "stylize", "-c", str(tiny_config), "-o", str(tmp_path / "run"), "--log-every", "2"
    )
    assert code == 0, output
    lines = [line for line in output.splitlines() if line.startswith("stylize step")]
    assert [line.split()[2] for line in lines] == ["0/6", "2/6", "4/6", "6/6"]
    assert "it/s" in lines[-1] and "ETA" in lines[-1] and "total" in lines[-1]


def test_an_lr_meant_for_the_other_optimiser_is_warned_about(
    tiny_config: Path, tmp_path: Path
) -> None:
    code, output = run_cli(
        "stylize", "-c", str(tiny_config), "-o", str(tmp_path / "run"), "--steps", "1",
        "--optimizer", "adam", "--lr", "1.0",
    )  # fmt: skip
    assert code == 0, output
    assert "optimizer.lr=1 is outside adam's usual range" in output


def test_schema_is_json_schema_of_every_config_key() -> None:
    import json

    code, output = run_cli("schema")
    assert code == 0, output
    schema = json.loads(output)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    for key in ("content", "style", "resolution", "scales", "steps", "layers", "weights",
                "optimizer", "checkpoint", "precision", "memory", "compile"):  # fmt: skip
        assert key in schema["properties"], key
    assert schema["properties"]["precision"]["enum"] == ["auto", "tf32", "fp32", "bf16"]
