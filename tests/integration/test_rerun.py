"""Running a command again replaces only the finished run that command made: the same kind of
run, of the same photo and painting, its config.yaml as nst wrote it. Any other run or file at
the output is refused in one line naming --overwrite (run.resume.unlike_the_finished_run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import make_image
from typer.testing import CliRunner

from nst_cli.cli import app

pytestmark = pytest.mark.slow

runner = CliRunner()
TINY = ["--resolution", "48", "--steps", "2", "--device", "cpu", "-q"]


@pytest.fixture
def images(tmp_path: Path) -> dict[str, Path]:
    return {
        "photo": make_image(tmp_path / "photo.png", (64, 48), seed=1),
        "other": make_image(tmp_path / "other.png", (64, 48), seed=3),
        "painting": make_image(tmp_path / "painting.png", (40, 40), seed=7),
    }


def _stylize(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["stylize", *args, *TINY])
    return result.exit_code, result.output


def _video_run(images: dict[str, Path], tmp_path: Path, run: Path, frames: int = 2) -> list[str]:
    """A finished `nst video` run of a small folder clip in `run`; its command's arguments."""
    clip = tmp_path / "clip"
    clip.mkdir(exist_ok=True)
    for index in range(frames):
        make_image(clip / f"f{index}.png", (64, 48), seed=index)
    video = ["video", str(clip), str(images["painting"]), "--frame-steps", "1", *TINY]
    assert runner.invoke(app, [*video, "-o", str(run)]).exit_code == 0
    return video


def _refused(code: int, output: str, what: str) -> None:
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and what in lines[0] and "--overwrite" in lines[0], output


def test_a_finished_run_of_another_photo_is_not_replaced(images, tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert _stylize(str(images["photo"]), str(images["painting"]), "-o", str(out))[0] == 0
    before = (out / "final.png").read_bytes()
    code, output = _stylize(str(images["other"]), str(images["painting"]), "-o", str(out))
    _refused(code, output, "a finished run of another photo")
    assert (out / "final.png").read_bytes() == before
    # the same command again still replaces its own run, no flag needed
    assert _stylize(str(images["photo"]), str(images["painting"]), "-o", str(out))[0] == 0


def test_a_run_whose_config_yaml_the_user_annotated_is_not_replaced(images, tmp_path) -> None:
    out = tmp_path / "run"
    assert _stylize(str(images["photo"]), str(images["painting"]), "-o", str(out))[0] == 0
    config = out / "config.yaml"
    config.write_text("# the one I sent to the printer\n" + config.read_text())
    code, output = _stylize(str(images["photo"]), str(images["painting"]), "-o", str(out))
    _refused(code, output, "config.yaml was edited")
    assert config.read_text().startswith("# the one I sent to the printer")


def test_a_kept_copy_of_a_result_is_not_replaced_by_another_run(images, tmp_path: Path) -> None:
    """`cp run/final.png keeper.png; nst stylize other.png painting.png -o keeper.png`."""
    run = tmp_path / "run"
    assert _stylize(str(images["photo"]), str(images["painting"]), "-o", str(run))[0] == 0
    keeper = tmp_path / "keeper.png"
    shutil.copy(run / "final.png", keeper)
    before = keeper.read_bytes()
    code, output = _stylize(str(images["other"]), str(images["painting"]), "-o", str(keeper))
    assert code == 2 and "--overwrite" in output and keeper.read_bytes() == before, output


def test_an_image_run_and_a_video_run_never_replace_each_other(images, tmp_path: Path) -> None:
    video_run, still_run = tmp_path / "video_run", tmp_path / "still_run"
    video = _video_run(images, tmp_path, video_run, frames=3)
    before = sorted(p.relative_to(video_run) for p in video_run.rglob("*"))

    code, output = _stylize(str(images["photo"]), str(images["painting"]), "-o", str(video_run))
    _refused(code, output, "a finished video run")
    assert "nst video --resume" in output
    assert sorted(p.relative_to(video_run) for p in video_run.rglob("*")) == before

    assert _stylize(str(images["photo"]), str(images["painting"]), "-o", str(still_run))[0] == 0
    result = runner.invoke(app, [*video, "-o", str(still_run)])
    _refused(result.exit_code, result.output, "a finished image run")
    assert (still_run / "final.png").is_file() and (still_run / "checkpoint.pt").is_file()
    assert not (still_run / "video.mp4").exists()


def test_each_kind_of_run_names_the_command_that_continues_it(images, tmp_path: Path) -> None:
    """`nst video --resume STILL_RUN` said "a still image, not a clip"; `nst stylize --resume
    VIDEO_RUN` and `nst score VIDEO_RUN/frames/000000.png` said the clip was "not an image
    Pillow can read"."""
    video_run, still_run = tmp_path / "video_run", tmp_path / "still_run"
    _video_run(images, tmp_path, video_run)
    assert _stylize(str(images["photo"]), str(images["painting"]), "-o", str(still_run))[0] == 0

    result = runner.invoke(app, ["stylize", "--resume", str(video_run), "-q"])
    assert result.exit_code == 2, result.output
    assert (
        f"a video run (the frames of a clip); continue it with nst video --resume {video_run}"
        in result.output
    )
    result = runner.invoke(app, ["video", "--resume", str(still_run), "-q"])
    assert result.exit_code == 2, result.output
    assert f"an image run; continue it with nst stylize --resume {still_run}" in result.output
    result = runner.invoke(app, ["score", str(video_run / "frames" / "000000.png")])
    assert result.exit_code == 2 and "a frame of a video run" in result.output, result.output
    assert "--content" in result.output


def test_nst_gif_on_a_video_run_names_its_clip(images, tmp_path: Path) -> None:
    """It wrote optimization.gif of the clip's frames and advised --save-every."""
    run = tmp_path / "video_run"
    _video_run(images, tmp_path, run)
    result = runner.invoke(app, ["gif", str(run)])
    assert result.exit_code == 2 and "a video run" in result.output, result.output
    assert "video.mp4" in result.output and "--save-every" not in result.output
    assert not (run / "optimization.gif").exists()
