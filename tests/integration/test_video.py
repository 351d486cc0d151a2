"""`nst video`: a clip in, a steady stylised clip out; resume per frame; one line per bad input.

Clips are the synthetic pan of samples/make_clip.py at 64×48, a handful of frames, a few steps."""

from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from nst_cli.cli import app
from nst_cli.config.resolve import resolve_config
from nst_cli.core.flow import clip_temporal_errors
from nst_cli.errors import ImageError, NSTError, OutputError
from nst_cli.run.video import stylize_video
from samples.make_clip import pan_frames, write_clip_with_audio

runner = CliRunner()
SIZE = (64, 48)
TINY = ["resolution=64", "steps=6", "device=cpu", "video.steps=3"]


def _frames(count: int = 5) -> list[Image.Image]:
    return list(pan_frames(Image.open("samples/coffee.png"), SIZE, count, pan=1, ball=4))


@pytest.fixture
def clip_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "clip"
    folder.mkdir()
    for index, frame in enumerate(_frames()):
        frame.save(folder / f"f{index}.png")  # f10 after f9: natural order
    return folder


@pytest.fixture
def clip_file(tmp_path: Path) -> Path:
    path = tmp_path / "clip.mp4"
    write_clip_with_audio(_frames(5), path, fps=12.0, audio=True)
    return path


def _config(clip: Path, style: Path, out: Path, *sets: str):  # type: ignore[no-untyped-def]
    return resolve_config(
        None, [*TINY, *sets], {"content": str(clip), "style": str(style), "output": str(out)}
    )


def _pixels(folder: Path) -> list[np.ndarray]:
    return [np.asarray(Image.open(p)) for p in sorted((folder / "frames").glob("*.png"))]


def test_a_clip_keeps_its_frame_count_rate_and_audio(
    clip_file: Path, style_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.mp4"
    result = runner.invoke(app, ["video", str(clip_file), str(style_path), "-o", str(out)] + [
        a for s in TINY for a in ("--set", s)
    ] + ["-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    reader = imageio_ffmpeg.read_frames(str(out))
    meta = next(reader)
    reader.close()
    assert meta["fps"] == pytest.approx(12.0) and "audio_codec" in meta
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == 5
    run = tmp_path / "out"  # the run folder beside the clip
    assert len(list((run / "frames").glob("*.png"))) == 5
    rows = (run / "video.csv").read_text().splitlines()
    assert rows[0].split(",")[-1] == "temporal_error" and len(rows) == 6
    assert rows[1].split(",")[-1] == ""  # the first frame has nothing before it
    assert all(float(r.split(",")[-1]) >= 0 for r in rows[2:])


@pytest.mark.parametrize("suffix", [".gif", ".webm"])
def test_gif_and_webm_read_back_frame_for_frame(
    clip_folder: Path, style_path: Path, tmp_path: Path, suffix: str
) -> None:
    import imageio.v3 as iio

    out = tmp_path / f"out{suffix}"
    config = _config(
        clip_folder, style_path, tmp_path / "run", f"video.output={out}", "video.fps=10"
    )
    result = stylize_video(config)
    assert result.status == "completed" and result.clip == out
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 5 and frames.shape[1:3] == (48, 64)


def test_later_frames_start_close_and_take_fewer_steps(
    clip_folder: Path, style_path: Path, tmp_path: Path
) -> None:
    config = _config(clip_folder, style_path, tmp_path / "run", "video.steps=auto", "steps=15")
    result = stylize_video(config)
    assert result.first_steps == 15 and result.later_steps == 3  # a fifth
    rows = (tmp_path / "run" / "video.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[1]) for r in rows] == [15, 3, 3, 3, 3]


@pytest.mark.slow
def test_the_clip_flickers_far_less_than_frames_stylised_apart(
    clip_folder: Path, style_path: Path, tmp_path: Path
) -> None:
    from nst_cli import stylize

    steady = stylize_video(_config(clip_folder, style_path, tmp_path / "video", "steps=12"))
    apart = []
    for index in range(5):
        config = resolve_config(
            None, [*TINY, "steps=12"],
            {"content": str(clip_folder / f"f{index}.png"), "style": str(style_path),
             "output": str(tmp_path / f"apart{index}")},
        )  # fmt: skip
        apart.append(Image.open(stylize(config).final_image).convert("RGB"))
    photos = [Image.open(clip_folder / f"f{i}.png") for i in range(5)]
    video_frames = [Image.fromarray(a) for a in _pixels(tmp_path / "video")]
    ours = np.mean(clip_temporal_errors(video_frames, photos))
    theirs = np.mean(clip_temporal_errors(apart, photos))
    assert steady.temporal_error == pytest.approx(ours, rel=1e-3)  # the CSV's figure is this one
    assert ours < theirs / 3


def test_an_interrupted_clip_resumes_to_the_same_frames(
    clip_folder: Path, style_path: Path, tmp_path: Path
) -> None:
    whole = stylize_video(_config(clip_folder, style_path, tmp_path / "whole"))
    assert whole.status == "completed"

    steps = {"n": 0}

    def stop_in_frame_three() -> bool:  # frame 0: 6 steps; 1, 2: 3 each; then frame 3
        steps["n"] += 1
        return steps["n"] > 6 + 3 + 3 + 1

    out = tmp_path / "cut"
    cut = stylize_video(_config(clip_folder, style_path, out), should_stop=stop_in_frame_three)
    assert cut.status == "interrupted" and cut.frames == 3 and cut.clip is None
    before = {p: p.stat().st_mtime_ns for p in (out / "frames").glob("*.png")}
    resumed = stylize_video(out, resume=True)
    assert resumed.status == "completed" and resumed.frames_run == 2
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())  # untouched
    for a, b in zip(_pixels(out), _pixels(tmp_path / "whole"), strict=True):
        assert np.array_equal(a, b)
    # a finished run resumed: the clip assembled again, nothing stylised again
    clip = out / "video.mp4"
    clip.unlink()
    again = stylize_video(out, resume=True)
    assert again.frames_run == 0 and clip.is_file()


def test_luminance_keeps_the_clips_colours_and_chains_the_raw_frames(
    clip_folder: Path, style_path: Path, tmp_path: Path
) -> None:
    stylize_video(_config(clip_folder, style_path, tmp_path / "run", "color=luminance"))
    raw = sorted((tmp_path / "run" / "raw").glob("*.png"))
    shown = sorted((tmp_path / "run" / "frames").glob("*.png"))
    assert len(raw) == len(shown) == 5
    photo = Image.open(clip_folder / "f2.png").convert("YCbCr")
    frame = Image.open(shown[2]).convert("YCbCr")
    chroma = np.abs(np.asarray(frame, float)[..., 1:] - np.asarray(photo, float)[..., 1:])
    assert chroma.mean() < 3


def test_an_unfinished_run_is_not_replaced_without_being_asked(
    clip_folder: Path, style_path: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    stylize_video(_config(clip_folder, style_path, out), should_stop=lambda: True)
    with pytest.raises(
        OutputError, match="unfinished video run; continue it with nst video --resume"
    ):
        stylize_video(_config(clip_folder, style_path, out))
    assert (
        stylize_video(_config(clip_folder, style_path, out), overwrite=True).status == "completed"
    )
    # a finished run of the same command is replaced without a flag, like nst stylize's
    assert stylize_video(_config(clip_folder, style_path, out)).status == "completed"


def _garbage(path: Path) -> Path:
    path.write_bytes(b"not a video at all" * 50)
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _no_frames(path: Path) -> Path:
    folder = path.with_suffix("")
    folder.mkdir()
    (folder / "notes.txt").write_text("no frames here")
    return folder


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_garbage, "not a video ffmpeg can read"),
        (_empty, "file is empty"),
        (_no_frames, "a folder with no frames"),
        (lambda p: p.with_name("missing.mp4"), "file not found"),
        (
            lambda p: Image.new("RGB", (8, 8)).save(p.with_suffix(".png")) or p.with_suffix(".png"),
            "a still image, not a clip",
        ),
    ],
)
def test_bad_clips_are_one_line(
    tmp_path: Path,
    style_path: Path,
    make,
    message: str,  # type: ignore[no-untyped-def]
) -> None:
    clip = make(tmp_path / "bad.mp4")
    with pytest.raises(ImageError, match=message):
        stylize_video(_config(clip, style_path, tmp_path / "run"))
    result = runner.invoke(app, ["video", str(clip), str(style_path), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


def test_frames_of_different_sizes_are_refused(
    clip_folder: Path, style_path: Path, tmp_path: Path
) -> None:
    Image.new("RGB", (30, 30)).save(clip_folder / "f9.png")
    with pytest.raises(ImageError, match="f9.png is 30×30 but f0.png is 64×48"):
        stylize_video(_config(clip_folder, style_path, tmp_path / "run"))


def test_a_clip_the_disk_cannot_hold_is_refused_before_work(
    clip_folder: Path, style_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from nst_cli.run import video_checks

    monkeypatch.setattr(
        video_checks.shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(1, 1, 1000)
    )  # type: ignore[attr-defined]
    with pytest.raises(
        OutputError,
        match=r"5 frames at 64×48 need about \d+.\d kiB in .*, and 1000 B is free.*--allow-large",
    ):
        stylize_video(_config(clip_folder, style_path, tmp_path / "run"))
    assert not list((tmp_path / "run" / "frames").glob("*.png"))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "out.mov"], "nst video writes .mp4, .webm, .gif clips"),
        (["--set", "video.output=x.avi"], "nst video writes .mp4, .webm, .gif, not '.avi'"),
        (
            ["--frame-steps", "0"],
            "error: config: video.steps: Input should be greater than 0 (got 0)\n",
        ),
        (["--temporal-weight", "-1"], "video.temporal_weight: must be >= 0"),
    ],
)
def test_bad_video_settings_are_one_line(
    clip_folder: Path,
    style_path: Path,
    tmp_path: Path,
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["video", str(clip_folder), str(style_path), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_clip_without_a_painting_says_so(clip_folder: Path) -> None:
    with pytest.raises(NSTError, match="no style image"):
        stylize_video(resolve_config(None, TINY, {"content": str(clip_folder)}))


def test_the_clip_never_replaces_a_file_nst_did_not_write(
    clip_folder: Path, clip_file: Path, style_path: Path, tmp_path: Path
) -> None:
    mine = tmp_path / "holiday.mp4"
    mine.write_bytes(b"the user's own video")
    config = _config(clip_folder, style_path, tmp_path / "run", f"video.output={mine}")
    with pytest.raises(OutputError, match="already exists and no nst run here wrote it"):
        stylize_video(config)
    assert mine.read_bytes() == b"the user's own video"
    inplace = _config(clip_file, style_path, tmp_path / "run2", f"video.output={clip_file}")
    with pytest.raises(NSTError, match="that is the input clip"):
        stylize_video(inplace, overwrite=True)


def test_the_preview_follows_the_clip_frame_by_frame(
    clip_folder: Path, style_path: Path, tmp_path: Path
) -> None:
    import json
    import urllib.request

    from nst_cli.cli.preview import Preview
    from nst_cli.io.videodir import VIDEO_FRAME, VideoDir

    out = tmp_path / "run"
    preview = Preview(VideoDir(out), frame_pattern=VIDEO_FRAME).start()
    seen: list[dict] = []

    def look(done) -> None:  # type: ignore[no-untyped-def]
        with urllib.request.urlopen(preview.url + "state.json") as response:
            seen.append(json.load(response))

    try:
        stylize_video(_config(clip_folder, style_path, out), callbacks=[preview], on_frame=[look])
        with urllib.request.urlopen(preview.url + "frames/000004.png") as response:
            assert response.read()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        preview.stop()
    assert [len(s["frames"]) for s in seen] == [1, 2, 3, 4, 5]
    assert seen[1]["total"] == 3  # a later frame's own steps, its own curve
    assert all(p[0] <= 3 for p in seen[1]["points"])


@pytest.mark.slow
@pytest.mark.subprocess
def test_a_killed_clip_resumes_to_the_frames_of_an_uninterrupted_one(
    clip_folder: Path, style_path: Path, tmp_path: Path
) -> None:
    import signal
    import subprocess
    import sys
    import time

    whole = tmp_path / "whole"
    stylize_video(_config(clip_folder, style_path, whole))
    out = tmp_path / "killed"
    command = [
        sys.executable, "-m", "nst_cli", "video", str(clip_folder), str(style_path),
        "-o", str(out), "-q", *(a for s in TINY for a in ("--set", s)),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (out / "frames" / "000002.png").exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = sorted((out / "frames").glob("*.png"))
    assert 3 <= len(done) < 5
    before = {p: p.stat().st_mtime_ns for p in done}
    result = runner.invoke(app, ["video", "--resume", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert all(p.stat().st_mtime_ns == t for p, t in before.items())
    for a, b in zip(_pixels(out), _pixels(whole), strict=True):
        assert np.array_equal(a, b)
    assert (out / "video.mp4").is_file() and not list(out.rglob("*.tmp"))


def _ffmpeg(*args: str) -> None:
    import subprocess

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", *args], check=True)


def test_a_gif_declaring_a_huge_screen_is_refused_before_decoding(
    style_path: Path, tmp_path: Path
) -> None:
    """An 85-byte GIF whose header declares 12000×12000 was decoded at that size (2.8 GB, a
    minute for 2 frames) without --allow-large; the same file as a still was refused."""
    gif = tmp_path / "bomb.gif"
    Image.new("P", (2, 2)).save(gif)
    data = bytearray(gif.read_bytes())
    data[6:10] = (12000).to_bytes(2, "little") * 2  # the logical screen's width and height
    gif.write_bytes(bytes(data))
    assert len(data) < 200
    with pytest.raises(ImageError, match="12000×12000, over the 100,000,000-pixel limit"):
        stylize_video(_config(gif, style_path, tmp_path / "run"))
    result = runner.invoke(app, ["video", str(gif), str(style_path), "-o", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--allow-large" in result.output


def test_a_clip_with_no_picture_says_it_has_no_frames(style_path: Path, tmp_path: Path) -> None:
    """An audio-only file and a clip whose video stream is empty got ffmpeg's "Error opening
    output files"; the message says what is wrong with them."""
    audio = tmp_path / "voice.m4a"
    _ffmpeg("-f", "lavfi", "-i", "anullsrc=r=22050:cl=mono", "-t", "0.5", str(audio))
    with pytest.raises(ImageError, match="has no frames \\(no video stream in it"):
        stylize_video(_config(audio, style_path, tmp_path / "run"))


def test_an_output_that_is_a_folder_is_refused_before_any_frame(
    clip_folder: Path, style_path: Path, tmp_path: Path
) -> None:
    (tmp_path / "adir.mp4").mkdir()
    config = _config(
        clip_folder, style_path, tmp_path / "run", f"video.output={tmp_path / 'adir.mp4'}"
    )
    with pytest.raises(OutputError, match="a folder is there"):
        stylize_video(config)
    assert not list((tmp_path / "run").glob("frames/*.png"))


@pytest.mark.parametrize("fps", ["1e-300", "1e9"])
def test_an_extreme_frame_rate_is_one_line(
    clip_folder: Path, style_path: Path, tmp_path: Path, fps: str
) -> None:
    """Such a rate gave a 0-byte or zero-length clip reported as `completed`."""
    result = runner.invoke(
        app, ["video", str(clip_folder), str(style_path), "--set", f"video.fps={fps}",
              "-o", str(tmp_path / "r")],
    )  # fmt: skip
    assert result.exit_code == 2 and "frames per second is outside 0.01–1000" in result.output


def test_a_clip_ffmpeg_did_not_finish_is_not_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ffmpeg can fail while closing the file (a full disk refusing the mp4's index) and exit
    quietly, leaving 4 kB that does not play: the good clip there before must stay. Here the
    encoder writes such a stub."""
    from nst_cli.io import video

    good = tmp_path / "run.mp4"
    video.write_clip(_frames(3), good, fps=12.0)
    before = good.read_bytes()

    def truncating(path: str, *args, **kwargs):  # type: ignore[no-untyped-def]
        Path(path).write_bytes(before[:4096])  # header written, the rest lost
        yield
        while True:
            yield

    monkeypatch.setattr(imageio_ffmpeg, "write_frames", truncating)
    with pytest.raises(OutputError, match="ffmpeg did not finish the clip.*earlier clip is kept"):
        video.write_clip(_frames(3), good, fps=12.0)
    assert good.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["run.mp4"]  # no partial file left


def test_a_killed_writes_partial_clip_is_removed_by_the_next_write(tmp_path: Path) -> None:
    from nst_cli.io import video

    output = tmp_path / "run.mp4"
    stale = tmp_path / ".run.k2j_8xq1.mp4"  # what mkstemp named the write that was killed
    stale.write_bytes(b"\0" * 10_000)
    other = tmp_path / ".run.notours.mp4"
    other.write_bytes(b"someone else's")
    video.write_clip(_frames(3), output, fps=12.0)
    assert output.is_file() and not stale.exists() and other.exists()


def test_a_resume_after_the_clip_changed_is_one_line_and_a_planted_frame_is_redone(
    clip_folder: Path, style_path: Path, tmp_path: Path
) -> None:
    """Frames of another size gave "The size of tensor a (64) must match … (48)"; a shorter
    clip finished as `completed` with fewer frames; a PNG placed at frames/000003.png was
    taken as a finished frame."""
    out = tmp_path / "cut"
    steps = {"n": 0}

    def stop_in_frame_two() -> bool:  # frame 0: 6 steps; frame 1: 3; then frame 2
        steps["n"] += 1
        return steps["n"] > 6 + 3 + 1

    cut = stylize_video(_config(clip_folder, style_path, out), should_stop=stop_in_frame_two)
    assert cut.status == "interrupted" and cut.frames == 2
    Image.new("RGB", (64, 48), (255, 0, 0)).save(out / "frames" / "000002.png")  # not nst's

    saved = {p.name: p.read_bytes() for p in clip_folder.iterdir()}
    for name in saved:  # the same clip, frames of another size
        Image.open(clip_folder / name).resize((48, 48)).save(clip_folder / name)
    with pytest.raises(
        NSTError,
        match=r"the clip .* changed since the run began \(its frames come out 64×64 now, 64×48 then\)",
    ):
        stylize_video(out, resume=True)
    for name, data in saved.items():
        (clip_folder / name).write_bytes(data)
    (clip_folder / "f4.png").unlink()  # a shorter clip
    with pytest.raises(NSTError, match="has 4 frames now, 5 when the run began"):
        stylize_video(out, resume=True)
    (clip_folder / "f4.png").write_bytes(saved["f4.png"])
    resumed = stylize_video(out, resume=True)
    assert resumed.status == "completed" and resumed.frames_run == 3  # 2, 3 and 4
    with Image.open(out / "frames" / "000002.png") as frame:
        assert "nst:version" in frame.info  # the planted frame was stylised over


def test_a_folder_of_exif_rotated_frames_keeps_their_upright_shape(
    style_path: Path, tmp_path: Path
) -> None:
    """Each frame is 96×48 as stored, 48×96 upright (EXIF orientation 6): the clip's size came
    from the raw header, and every upright frame was squeezed back into 96×48."""
    folder = tmp_path / "portrait"
    folder.mkdir()
    for index, frame in enumerate(_frames(3)):
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90° clockwise to view
        frame.resize((96, 48)).save(folder / f"f{index}.jpg", exif=exif)
    result = stylize_video(_config(folder, style_path, tmp_path / "run", "resolution=64"))
    assert result.status == "completed"
    with Image.open(tmp_path / "run" / "frames" / "000000.png") as first:
        assert first.size == (32, 64)


def test_a_variable_frame_rate_clip_gives_each_of_its_frames_once(tmp_path: Path) -> None:
    """Frame 2 shows for half a second, the others for 1/25: the frames were read as
    ffmpeg's constant-rate stream (0, 1, 2, 2, 2, 2 … of a count of 7), and 3–6 never came."""
    from nst_cli.io.video import open_clip, read_frames

    reds = [0, 40, 80, 120, 160, 200, 240]
    lines = []
    for index, red in enumerate(reds):
        Image.new("RGB", (64, 48), (red, 0, 0)).save(tmp_path / f"{index}.png")
        lines += [f"file '{index}.png'", f"duration {0.5 if index == 2 else 0.04}"]
    lines.append(f"file '{len(reds) - 1}.png'")  # the concat demuxer's last entry
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    clip_path = tmp_path / "vfr.mp4"
    _ffmpeg("-f", "concat", "-i", str(tmp_path / "list.txt"), "-fps_mode", "vfr",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", str(clip_path))  # fmt: skip
    clip = open_clip(clip_path)
    frames = [np.asarray(frame)[24, 32, 0] for frame in read_frames(clip)]
    assert clip.count == len(frames) == len(reds) + 1  # the concat repeats the last entry
    assert all(abs(int(a) - b) <= 6 for a, b in zip(frames, [*reds, reds[-1]], strict=True)), frames


def test_a_run_refused_after_its_folder_was_made_leaves_no_empty_folder(
    clip_folder: Path, tmp_path: Path
) -> None:
    """A painting that is no image is found once the folder is locked: the run folder and its
    empty frames/ stayed behind."""
    fake = tmp_path / "painting.png"
    fake.write_text("not an image")
    with pytest.raises(ImageError):
        stylize_video(_config(clip_folder, fake, tmp_path / "run"))
    assert not (tmp_path / "run").exists()
