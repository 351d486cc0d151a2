"""Inputs built to hurt: names that would escape a folder, links planted where nst writes,
outputs nst cannot write, a closed terminal. Each case builds its own inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_image, write_pair
from typer.testing import CliRunner

from nst_cli.cli import app
from nst_cli.sweep.grid import safe_name

runner = CliRunner()


@pytest.mark.parametrize("stem", ["..", ".", "...", "", "-", ".hidden", "..a"])
def test_a_name_from_user_input_stays_one_plain_name(stem: str) -> None:
    name = safe_name(stem)
    assert name not in ("", ".", "..") and "/" not in name and not name.startswith(".")


@pytest.mark.slow
def test_a_photo_named_dots_gets_a_folder_inside_the_folder_run(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, seed in (("...png", 1), ("..png", 2)):
        make_image(tmp_path / "made.png", (40, 30), seed=seed).rename(photos / name)
    style = make_image(tmp_path / "style.png", (30, 30), seed=3)
    out = tmp_path / "album" / "run"
    (tmp_path / "album" / "precious.txt").parent.mkdir(parents=True)
    (tmp_path / "album" / "precious.txt").write_text("keep")
    result = runner.invoke(
        app,
        [
            "stylize",
            "--content",
            str(photos),
            "--style",
            str(style),
            "--resolution",
            "32",
            "--steps",
            "2",
            "--device",
            "cpu",
            "-o",
            str(out),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    folders = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert len(folders) == 2 and all(not f.startswith(".") for f in folders), folders
    assert (tmp_path / "album" / "precious.txt").read_text() == "keep"
    assert not (tmp_path / "album" / "config.yaml").exists()  # nothing written above the run


def test_a_symlinked_frames_folder_is_refused_and_nothing_behind_it_touched(tmp_path: Path) -> None:
    config = write_pair(tmp_path / "job")
    other = tmp_path / "other_run_frames"
    other.mkdir()
    (other / "step_000000.png").write_bytes(b"another run's frame")
    run = tmp_path / "run"
    run.mkdir()
    (run / "frames").symlink_to(other)
    for extra in ([], ["--overwrite"]):
        result = runner.invoke(app, ["stylize", "-c", str(config), "-o", str(run), "-q", *extra])
        assert result.exit_code != 0 and "symbolic link" in result.output, result.output
    assert (other / "step_000000.png").read_bytes() == b"another run's frame"
    assert sorted(p.name for p in other.iterdir()) == ["step_000000.png"]


def test_a_planted_lock_link_is_refused_without_creating_its_target(tmp_path: Path) -> None:
    config = write_pair(tmp_path / "job")
    run = tmp_path / "run"
    run.mkdir()
    target = tmp_path / "created_by_nst"
    (run / ".nst.lock").symlink_to(target)
    result = runner.invoke(app, ["stylize", "-c", str(config), "-o", str(run), "-q"])
    assert result.exit_code != 0 and "symbolic link" in result.output, result.output
    assert not target.exists()


@pytest.mark.parametrize("name", ["x.gif", "x.bmp", "clip.mp4", "X.GIF"])
def test_an_output_nst_cannot_write_is_refused_with_the_ones_it_can(
    tmp_path: Path, name: str
) -> None:
    config = write_pair(tmp_path / "job")
    result = runner.invoke(
        app, ["stylize", "-c", str(config), "-o", str(tmp_path / name), "--print-config"]
    )
    assert result.exit_code == 2
    assert "cannot write" in result.output and ".png, .jpg" in result.output
    assert not (tmp_path / name).exists()


def test_an_output_image_that_is_a_folder_is_refused_at_once(tmp_path: Path) -> None:
    config = write_pair(tmp_path / "job")
    (tmp_path / "res.png").mkdir()
    started = time.monotonic()
    result = runner.invoke(
        app, ["stylize", "-c", str(config), "-o", str(tmp_path / "res.png"), "--overwrite", "-q"]
    )
    assert result.exit_code == 2 and "is a folder" in result.output, result.output
    assert time.monotonic() - started < 30
    assert not (tmp_path / "res").exists()  # refused before any run started


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_a_closed_terminal_saves_everything_like_sigterm(tmp_path: Path) -> None:
    config = write_pair(tmp_path / "job", "resolution: 48\nsteps: 400\nsave_every: 5\n")
    run = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, "-m", "nst_cli", "stylize", "-c", str(config), "-o", str(run), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not list((run / "frames").glob("step_0000[1-9]*.png")) and time.monotonic() < deadline:
        if process.poll() is not None:
            break
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGHUP)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err.decode()
    assert (run / "final.png").is_file()
    assert "status: interrupted" in (run / "config.yaml").read_text()


@pytest.mark.slow
def test_config_yaml_never_says_completed_when_the_final_image_was_not_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nst_cli.run.recording as recording
    from nst_cli.errors import OutputError

    config = write_pair(tmp_path / "job")
    out = tmp_path / "result.png"

    def refuse(image, path, text=None):  # the -o destination is read-only, say
        raise OutputError(f"{path}: write failed (Permission denied)")

    monkeypatch.setattr(recording, "save_image", refuse)
    result = runner.invoke(app, ["stylize", "-c", str(config), "-o", str(out), "-q"])
    assert result.exit_code == 1 and "Permission denied" in result.output
    status = (tmp_path / "result" / "config.yaml").read_text()
    assert "status: completed" not in status and "status: failed" in status


@pytest.mark.slow
def test_a_resumed_run_refreshes_the_image_its_run_was_asked_to_write(tmp_path: Path) -> None:
    from PIL import Image

    config = write_pair(tmp_path / "job")
    out = tmp_path / "result.png"
    assert runner.invoke(app, ["stylize", "-c", str(config), "-o", str(out), "-q"]).exit_code == 0
    assert Image.open(out).info["nst:step"] == "4"
    resumed = runner.invoke(
        app, ["stylize", "--resume", str(tmp_path / "result"), "--steps", "7", "-q"]
    )
    assert resumed.exit_code == 0, resumed.output
    assert Image.open(out).info["nst:step"] == "7"
    final = Image.open(tmp_path / "result" / "final.png")
    assert final.tobytes() == Image.open(out).tobytes()


@pytest.mark.slow
def test_temp_files_a_killed_run_left_are_removed_on_resume_and_others_kept(tmp_path: Path) -> None:
    config = write_pair(tmp_path / "job")
    run = tmp_path / "run"
    assert (
        runner.invoke(
            app, ["stylize", "-c", str(config), "-o", str(run), "-q", "--steps", "2"]
        ).exit_code
        == 0
    )
    orphans = [
        run / ".checkpoint.pt.a1b2c3d4.tmp",
        run / "frames" / ".step_000004.png.x_y_z_w1.tmp",
    ]
    for path in orphans:
        path.write_bytes(b"half a file")
    mine = [run / ".notes.txt.a1b2c3d4.tmp", run / "checkpoint.pt.a1b2c3d4.tmp"]
    for path in mine:
        path.write_bytes(b"not nst's")
    result = runner.invoke(app, ["stylize", "--resume", str(run), "--steps", "4", "-q"])
    assert result.exit_code == 0, result.output
    assert not any(path.exists() for path in orphans)
    assert all(path.read_bytes() == b"not nst's" for path in mine)


@pytest.mark.slow
@pytest.mark.parametrize(
    "damage",
    [
        b"scale,total\n1,2\n",  # no step column
        b"step,scale,total\n\x00\xff\xfe\x00binary\n",  # not text
        b"step,scale,total\n1,2,abc\n",  # not numbers
        b"step,scale,total\n,2,3\n",  # a row without a step
    ],
)
def test_a_damaged_loss_log_is_one_line_on_resume(tmp_path: Path, damage: bytes) -> None:
    config = write_pair(tmp_path / "job")
    run = tmp_path / "run"
    assert (
        runner.invoke(
            app, ["stylize", "-c", str(config), "-o", str(run), "-q", "--steps", "2"]
        ).exit_code
        == 0
    )
    (run / "losses.csv").write_bytes(damage)
    result = runner.invoke(app, ["stylize", "--resume", str(run), "--steps", "4", "-q"])
    assert (
        result.exit_code != 0
        and result.exception is None
        or isinstance(result.exception, SystemExit)
    )
    assert "losses.csv" in result.output and "damaged loss log" in result.output, result.output
    assert "internal error" not in result.output


def test_a_huge_loss_log_is_refused_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nst_cli.errors import OutputError
    from nst_cli.io import losslog

    log_file = tmp_path / "losses.csv"
    log_file.write_text("step,total\n" + "1,2\n" * 1000)
    monkeypatch.setattr(losslog, "MAX_LOSS_LOG_BYTES", 1000)
    with pytest.raises(OutputError, match="not a loss log nst wrote"):
        losslog.read_loss_rows(log_file)


def _damage_optimizer(state: dict, kind: str) -> None:
    import torch

    optimizer = state["optimizer"]
    group, inner = optimizer["param_groups"][0], optimizer["state"]
    if kind == "setting":
        group["lr"] = "fast"
    elif kind == "nan-setting":
        group["lr"] = float("nan")
    elif kind == "two-groups":
        optimizer["param_groups"] = [group, dict(group)]
    elif kind == "wrong-size":
        inner[0] = {**inner[0], "d": torch.zeros(7)}
    elif kind == "not-finite":
        inner[0] = {**inner[0], "d": torch.full_like(state["image"], float("inf"))}
    elif kind == "foreign-object":
        inner[0] = {**inner[0], "d": object()}


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind", ["setting", "nan-setting", "two-groups", "wrong-size", "not-finite", "foreign-object"]
)
def test_damaged_optimiser_state_is_not_a_valid_checkpoint(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nst_cli.io.checkpoints as checkpoints

    config = write_pair(
        tmp_path / "job", "resolution: 48\nsteps: 4\nsave_every: 2\ncheckpoint: exact\n"
    )
    run = tmp_path / "run"
    assert runner.invoke(app, ["stylize", "-c", str(config), "-o", str(run), "-q"]).exit_code == 0
    real = checkpoints.load_tensors

    def damaged(
        path,
    ):  # as a tampered file would load (the format's own loader is pinned elsewhere)
        state = real(path)
        _damage_optimizer(state, kind)
        return state

    monkeypatch.setattr(checkpoints, "load_tensors", damaged)
    for _ in range(2):  # and the same on a retry
        result = runner.invoke(app, ["stylize", "--resume", str(run), "--steps", "6", "-q"])
        assert result.exit_code in (1, 2), result.output
        assert (
            "not a valid nst checkpoint" in result.output and "internal error" not in result.output
        )


def _photo(path: Path, seed: int) -> Path:
    from PIL import Image

    made = make_image(path.with_name(f"made{seed}.png"), (40, 30), seed=seed)
    Image.open(made).save(path)
    made.unlink()
    return path


FOLDER_RUN = ["--resolution", "32", "--steps", "2", "--device", "cpu", "-q"]


@pytest.mark.slow
def test_a_photo_added_later_never_renames_the_runs_already_there(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(photos / "a.jpg", 1)
    _photo(photos / "a.png", 2)
    style = make_image(tmp_path / "style.png", (30, 30), seed=3)
    out = tmp_path / "album"
    args = ["stylize", "--content", str(photos), "--style", str(style), "-o", str(out), *FOLDER_RUN]
    assert runner.invoke(app, args).exit_code == 0
    before = {p.name: (p / "config.yaml").read_text() for p in out.iterdir() if p.is_dir()}
    _photo(photos / "a.bmp", 4)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    after = {p.name: (p / "config.yaml").read_text() for p in out.iterdir() if p.is_dir()}
    assert len(after) == 3
    for name, text in before.items():
        assert after[name] == text  # the same photo in the same folder, untouched (skipped: done)
    new = (set(after) - set(before)).pop()
    assert "a.bmp" in after[new]


@pytest.mark.slow
def test_a_folder_run_into_its_own_photos_folder_never_stylises_its_outputs(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    _photo(photos / "cat.png", 1)
    style = make_image(tmp_path / "style.png", (30, 30), seed=3)
    args = [
        "stylize",
        "--content",
        str(photos),
        "--style",
        str(style),
        "-o",
        str(photos),
        *FOLDER_RUN,
    ]
    for _ in range(2):  # the second time grid.png sits among the photos
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    assert (photos / "grid.png").is_file()
    assert sorted(p.name for p in photos.iterdir() if p.is_dir()) == ["cat"]


@pytest.mark.slow
def test_a_sweep_with_other_base_settings_but_the_same_values_is_another_sweep(
    tmp_path: Path,
) -> None:
    config = write_pair(tmp_path / "job", "resolution: 32\nsteps: 2\n")
    other = make_image(tmp_path / "other.png", (50, 40), seed=9)
    out = tmp_path / "sweep"
    args = ["sweep", "-c", str(config), "--style-weights", "1,2", "-o", str(out), "--quiet"]
    assert runner.invoke(app, args).exit_code == 0
    before = {p.name: (p / "final.png").read_bytes() for p in out.iterdir() if p.is_dir()}
    result = runner.invoke(app, [*args, "--content", str(other)])
    assert result.exit_code == 2 and "holds another sweep" in result.output, result.output
    assert {p.name: (p / "final.png").read_bytes() for p in out.iterdir() if p.is_dir()} == before
    assert runner.invoke(app, args).exit_code == 0  # the same sweep again: finished, skipped


@pytest.mark.slow
def test_a_sweep_recorded_after_another_was_planned_is_noticed_before_it_runs(
    tmp_path: Path,
) -> None:
    from nst_cli.errors import ConfigError
    from nst_cli.sweep.execute import run_sweep
    from nst_cli.sweep.grid import parse_param
    from nst_cli.sweep.plan import plan_sweep

    config = write_pair(tmp_path / "job", "resolution: 32\nsteps: 2\n")
    root = tmp_path / "shared"
    first = plan_sweep(config, [parse_param("weights.style=1,2")], output=root)
    second = plan_sweep(config, [parse_param("weights.style=3,4")], output=root)  # both planned
    run_sweep(*second)  # the second one starts first and records itself
    with pytest.raises(ConfigError, match="holds another sweep"):
        run_sweep(*first)
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [
        "style_weight=3",
        "style_weight=4",
    ]
    assert not (root / ".nst-sweep.lock").exists()


@pytest.mark.subprocess
def test_a_sweep_folder_in_use_is_refused_at_once(tmp_path: Path) -> None:
    from nst_cli.errors import OutputError
    from nst_cli.io.rundir import folder_lock
    from nst_cli.sweep.execute import SWEEP_LOCK

    root = tmp_path / "busy"
    root.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from nst_cli.io.rundir import folder_lock\n"
         f"with folder_lock(__import__('pathlib').Path({str(root)!r}), {SWEEP_LOCK!r}):\n"
         "    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"held"
        with (
            pytest.raises(OutputError, match="in use by another nst process"),
            folder_lock(root, SWEEP_LOCK),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_ray_workers_scratch_folder_is_removed_and_live_ones_kept(tmp_path: Path) -> None:
    from nst_cli.sweep.ray_tasks import remove_dead_workers_scratch

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that is gone
    gone = tmp_path / f"nst-worker-{dead.pid}"
    (gone / "run").mkdir(parents=True)
    (gone / "run" / "checkpoint.pt").write_bytes(b"x" * 1000)
    alive = tmp_path / f"nst-worker-{os.getpid()}"
    alive.mkdir()
    other = tmp_path / "nst-worker-notes"
    other.mkdir()
    assert remove_dead_workers_scratch(tmp_path) == [gone]
    assert not gone.exists() and alive.is_dir() and other.is_dir()
