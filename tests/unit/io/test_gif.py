"""`nst gif`: frame order, formats, hold-last, sizes and errors."""

from __future__ import annotations

import os
import time
from pathlib import Path

import imageio.v3 as iio
import pytest
from PIL import Image
from typer.testing import CliRunner

from nst_cli.cli.base import app
from nst_cli.errors import ImageError
from nst_cli.io.animation import collect_frames, make_animation

runner = CliRunner()


def fake_run(
    root: Path, steps: list[int], size: tuple[int, int] = (40, 30), final: bool = True
) -> Path:
    frames = root / "frames"
    frames.mkdir(parents=True)
    for i, step in enumerate(steps):
        # unpadded names on purpose: order must be numeric, not lexicographic
        Image.new("RGB", size, (i * 20 % 256, 100, 200)).save(frames / f"step_{step}.png")
    if final:
        time.sleep(0.01)
        Image.new("RGB", size, (255, 255, 255)).save(root / "final.png")
        later = time.time() + 5
        os.utime(root / "final.png", (later, later))
    return root


def gif_frames(path: Path) -> int:
    with Image.open(path) as image:
        return image.n_frames


def test_frames_in_numeric_order_with_final(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", [10200, 900, 0, 50])
    frames, run_dir = collect_frames(run)
    assert [f.step for f in frames] == [0, 50, 900, 10200, None]
    assert run_dir == run
    frames_only, belongs = collect_frames(run / "frames")
    assert [f.step for f in frames_only] == [0, 50, 900, 10200, None]
    assert belongs == run


def test_a_folder_of_frames_keeps_its_animation(tmp_path: Path) -> None:
    """Not a run's frames/: the animation goes into that folder, not its parent."""
    renders = tmp_path / "renders"
    renders.mkdir()
    for step in (1, 2, 3):
        Image.new("RGB", (16, 12), (step * 60, 0, 0)).save(renders / f"frame{step:03d}.png")
    result = make_animation(renders, fps=10, hold_last=0)
    assert result.output == renders / "optimization.gif"
    assert gif_frames(result.output) == 3
    assert not (tmp_path / "optimization.gif").exists()


def test_gif_written_with_frame_count_and_hold_last(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", [0, 2, 4])
    result = make_animation(run, fps=10, hold_last=0)
    assert result.output == run / "optimization.gif"
    assert gif_frames(result.output) == 4 == result.frames
    held = make_animation(run, tmp_path / "held.gif", fps=10, hold_last=1.0)
    assert held.frames == 4 + 10
    timed = make_animation(run, tmp_path / "timed.gif", duration=3.0, hold_last=1.0)
    assert timed.frames == 4 + 2  # 4 frames in 2 s -> 2 fps, then 1 s of hold
    with pytest.raises(ImageError, match="longer than --hold-last"):
        make_animation(run, tmp_path / "bad.gif", duration=1.0, hold_last=1.0)


def test_cli_gif_size_label_and_mp4(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", [0, 1, 2, 3], size=(101, 51))
    result = runner.invoke(app, ["gif", str(run), "--size", "64", "--label", "--hold-last", "0"])
    assert result.exit_code == 0, result.output
    with Image.open(run / "optimization.gif") as image:
        assert image.size == (64, 32)
    video = tmp_path / "out.mp4"
    result = runner.invoke(
        app, ["gif", str(run), "-o", str(video), "--hold-last", "0", "--fps", "5"]
    )
    assert result.exit_code == 0, result.output
    frames = iio.imread(video)
    assert frames.shape[0] == 5 and frames.shape[1:3] == (52, 102)  # padded to even sizes


def test_mixed_sizes_are_resized_with_a_warning(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", [0, 1], size=(40, 30), final=False)
    Image.new("RGB", (80, 60)).save(run / "frames" / "step_2.png")
    result = runner.invoke(app, ["gif", str(run), "--hold-last", "0"])
    assert result.exit_code == 0
    assert "resized to 40×30" in result.output
    with Image.open(run / "optimization.gif") as image:
        assert image.size == (40, 30) and image.n_frames == 3


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing", "src: no such folder; pass a run folder or its frames/ folder"),
        ("empty", "src: no frames found (expected step_NNNNNN.png files from nst stylize)"),
        ("no_frames", "frames: no frames found (expected step_NNNNNN.png"),
        ("file", "src: not a folder; pass a run folder or its frames/ folder"),
    ],
)
def test_bad_sources_are_one_line(tmp_path: Path, case: str, message: str) -> None:
    source = tmp_path / "src"
    if case == "empty":
        source.mkdir()
    elif case == "no_frames":
        (source / "frames").mkdir(parents=True)
        (source / "frames" / "notes.txt").write_text("x")
    elif case == "file":
        source.write_text("x")
    with pytest.raises(ImageError) as info:
        make_animation(source)
    assert message in str(info.value)
    result = runner.invoke(app, ["gif", str(source)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert message.split(": ", 1)[1][:20] in result.output.replace("\n", " ")


def test_unwritable_output(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", [0, 1])
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    result = runner.invoke(app, ["gif", str(run), "-o", str(blocker / "a.gif")])
    assert result.exit_code == 1 and "cannot write here" in result.output
    result = runner.invoke(app, ["gif", str(run), "-o", str(tmp_path / "a.avi")])
    assert result.exit_code == 2 and "unknown format" in result.output


def test_final_identical_to_last_frame_is_not_repeated(tmp_path: Path) -> None:
    from nst_cli.io.files import save_png

    run = fake_run(tmp_path / "run", [0, 5, 10], final=False)
    save_png(Image.new("RGB", (40, 30)), run / "final.png", {"nst:step": "10"})
    later = time.time() + 5
    os.utime(run / "final.png", (later, later))
    frames, _ = collect_frames(run)
    assert [f.step for f in frames] == [0, 5, 10]
    save_png(Image.new("RGB", (40, 30)), run / "final.png", {"nst:step": "12"})
    os.utime(run / "final.png", (later, later))
    frames, _ = collect_frames(run)
    assert [f.step for f in frames] == [0, 5, 10, 12] and frames[-1].label == "step 12"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fps", "1e9"], "--fps 1e+09: use 0.01 to 100"),
        (["--fps", "nan"], "--fps nan: must be a finite number"),
        (["--fps", "inf"], "--fps inf: must be a finite number"),
        (["--fps", "1e-9"], "--fps 1e-09: use 0.01 to 100"),
        (["--hold-last", "1e7"], "over the 10,000-frame limit"),
        (["--duration", "1.0000001", "--hold-last", "1"], "over 100 frames per second"),
        (["--size", "100000"], "--size 100000: use 8 to 8192"),
        (["--loop", "70000"], "--loop 70000: GIF stores at most 65535"),
        (["--size", "8000", "--hold-last", "50", "--fps", "100"], "GiB to encode"),
    ],
)
def test_animation_requests_are_bounded_before_decoding(
    tmp_path: Path, args: list[str], message: str
) -> None:
    run = fake_run(tmp_path / "run", [0, 10, 20])
    result = runner.invoke(app, ["gif", str(run), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (run / "optimization.gif").exists()


def test_a_fifo_among_the_frames_is_refused_not_waited_on(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "run", [0, 10], final=False)
    os.mkfifo(run / "frames" / "step_20.png")
    result = runner.invoke(app, ["gif", str(run)])
    assert result.exit_code == 2 and "not a regular file" in result.output


def test_gif_reads_back_in_one_call_with_every_frame_alike(tmp_path: Path) -> None:
    """`imageio.v3.imread(gif, index=None)` with no mode: every frame decodes with one shape
    (no frame carries a transparency index, which Pillow would decode as RGBA beside an RGB
    first frame), and each shows the whole picture although only what changed is stored."""
    root = fake_run(tmp_path / "run", [0, 10, 20], final=False)
    # The third frame repeats the second's left half: only the right half need be stored.
    second = Image.open(root / "frames" / "step_10.png").convert("RGB")
    third = Image.new("RGB", (40, 30), (250, 0, 0))
    third.paste(second.crop((0, 0, 20, 30)), (0, 0))
    third.save(root / "frames" / "step_20.png")
    result = make_animation(root, None, fps=10, hold_last=0)
    frames = iio.imread(result.output, index=None)
    assert frames.shape == (3, 30, 40, 3)
    assert abs(int(frames[2, 15, 5, 0]) - second.getpixel((5, 15))[0]) <= 8  # kept half
    assert frames[2, 15, 35, 0] >= 240  # the changed half is red
