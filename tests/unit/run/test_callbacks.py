"""Step callbacks on their own: plain log lines, the loss log across a resume, frames."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
from rich.console import Console

from nst_cli.cli.bars import ProgressBar, make_progress
from nst_cli.config.models import Config
from nst_cli.core.optimize import StepEvent
from nst_cli.core.schedule import SCALE_SETUP_STEPS, STEP_COST_EXPONENT, Stage
from nst_cli.io.losslog import read_loss_rows
from nst_cli.io.rundir import RunDir
from nst_cli.run.progress import LogLines, StepRate
from nst_cli.run.recording import FrameSaver, LossLog


def _event(
    step: int, elapsed: float, total: int = 10, final: bool = False, stage=None
) -> StepEvent:
    losses = {"total": 2.0 / (step + 1), "content": 0.5, "style": 1.0, "tv": 0.0}
    return StepEvent(step, total, losses, torch.rand(1, 3, 6, 8), elapsed, final, stage=stage)


def test_log_lines_every_n_steps_with_rate_and_eta() -> None:
    lines: list[str] = []
    log = LogLines(lines.append, every=4)
    stage = Stage(1, 2, 362, 0, 10)
    for step in range(11):
        log(_event(step, elapsed=0.5 * step, final=step == 10, stage=stage))
    assert [line.split()[2] for line in lines] == ["0/10", "4/10", "8/10", "10/10"]
    assert "(362px, scale 2/2)" in lines[1] and "2.00 it/s" in lines[1] and "ETA 0:03" in lines[1]
    assert "tv" not in lines[1]  # a zero tv term is not shown


def test_eta_weighs_the_steps_left_by_their_scale_s_cost_and_counts_its_preparation() -> None:
    """While the first of two scales runs, the ETA counts the full-size steps to come at
    their own cost (2^1.7 ≈ 3.25× a half-size step, as measured on a CPU), and the full
    size's preparation (1.5 of its steps), not the speed of the cheap steps alone."""
    config = Config(resolution=64, scales=[32, 64], steps=[10, 10])
    first, last = config.schedule()
    big = 2**STEP_COST_EXPONENT
    lines: list[str] = []
    log = LogLines(lines.append, every=5)
    for step in range(6):  # 0.1 s per step at 32 px
        log(_event(step, elapsed=0.1 * step, total=20, stage=first))
    # 5 steps at 32 px, the 64 px preparation, then 10 steps at 64 px: 0.5 + 0.1·3.25·11.5 s
    assert 0.5 + 0.1 * big * 11.5 == pytest.approx(4.24, abs=0.01)
    assert "ETA 0:04" in lines[-1], lines[-1]
    assert first.work_until(20) == pytest.approx(10 + (10 + SCALE_SETUP_STEPS) * big)
    assert last.work_until(10) == pytest.approx(10 / big)  # the 64 px preparation not yet done
    assert last.work_until(15) == pytest.approx(10 / big + 5 + SCALE_SETUP_STEPS)
    plain = Stage(0, 1, 64, 0, 20)  # a stage built without its run's scales: steps alike
    assert plain.work_until(7) == 7


def test_eta_is_the_time_left_on_a_run_that_costs_what_the_model_says() -> None:
    """A three-scale run whose clock runs as measured (a step ∝ size^1.7, each later scale's
    preparation 1.5 of its steps, counted in the events' clock as the loop does): the ETA
    at every step is the time that is really left."""
    stages = Config(resolution=512, scales=[256, 362, 512], steps=[30, 20, 40]).schedule()
    clock, events = 0.0, []
    for stage in stages:
        step_s = 0.2 * (stage.size / 256) ** STEP_COST_EXPONENT
        if stage.index:
            clock += SCALE_SETUP_STEPS * step_s
        for step in range(stage.start + 1, stage.end + 1):
            clock += step_s
            events.append((step, clock, stage))
    rate = StepRate()
    for step, elapsed, stage in events:
        rate(_event(step, elapsed=elapsed, total=90, stage=stage))
        if step > 1:
            assert rate.eta == pytest.approx(clock - elapsed, rel=1e-6), step


def test_progress_bar_shows_the_weighted_eta() -> None:
    console = Console(file=io.StringIO(), width=120, force_terminal=False)
    progress = make_progress(console)
    bar = ProgressBar(progress)
    first, _ = Config(resolution=64, scales=[32, 64], steps=[10, 10]).schedule()
    for step in range(6):
        bar(_event(step, elapsed=0.1 * step, total=20, stage=first))
    task = progress.tasks[0]
    assert task.fields["eta"] == pytest.approx(0.5 + 0.1 * 2**STEP_COST_EXPONENT * 11.5)
    rendered = progress.columns[5].render(task)
    progress.stop()
    assert str(rendered) == "0:00:04"


def test_loss_log_keeps_one_row_per_step_across_a_resume(tmp_path: Path) -> None:
    path = tmp_path / "losses.csv"
    log = LossLog(path, flush_every=100)
    for step in range(5):
        log(_event(step, step))
    log.flush()
    resumed = LossLog(
        path, 100, [r for r in read_loss_rows(path) if r["step"] < 3], tmp_path / "losses.png"
    )
    for step in range(3, 6):
        resumed(_event(step, step, final=step == 5))
    assert [int(r["step"]) for r in read_loss_rows(path)] == list(range(6))
    assert (tmp_path / "losses.png").is_file()


def test_frames_at_save_every_and_at_the_final_size(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    saver = FrameSaver(run, 3, {"nst:version": "t"}, output_size=(16, 12))
    for step in range(7):
        saver(_event(step, step))
    saver.flush()
    frames = sorted(p.name for p in run.frames.iterdir())
    assert frames == ["step_000000.png", "step_000003.png", "step_000006.png"]
    from PIL import Image

    with Image.open(run.frame(3)) as frame:
        assert frame.size == (16, 12) and frame.info["nst:step"] == "3"


def test_the_loss_log_and_the_kept_image_stop_before_a_non_finite_step(tmp_path: Path) -> None:
    from nst_cli.core.losses.values import Losses
    from nst_cli.run.recording import LatestImage

    log, latest = LossLog(tmp_path / "losses.csv", flush_every=100), LatestImage()
    totals = [4.0, 3.0, 2.5, float("nan"), float("nan")]
    images = [torch.full((1, 3, 2, 2), float(i)) for i in range(5)]
    for step, (total, image) in enumerate(zip(totals, images, strict=True)):
        losses = Losses(["total", "content", "style"], torch.tensor([total, 1.0, 2.0]))
        event = StepEvent(step=step, total_steps=9, losses=losses, image=image, elapsed=0.1)
        latest(event)
        if step:  # step 0 would flush at once
            log(event)
    log.flush()
    assert [r["step"] for r in read_loss_rows(tmp_path / "losses.csv")] == [1, 2]
    assert latest.step == 2 and torch.equal(latest.image, images[2])
    assert latest.losses["total"] == 2.5


def test_frames_are_written_while_the_run_goes_on_and_errors_still_surface(
    tmp_path: Path, monkeypatch
) -> None:
    import threading
    import time

    import nst_cli.run.recording as callbacks
    from nst_cli.errors import OutputError

    release = threading.Event()
    real_save = callbacks.save_png

    def slow_save(image, path, text=None):
        release.wait(5)  # a slow disk (or a big PNG)
        if path.name == "step_000003.png":
            raise OutputError(f"{path}: write failed (No space left on device)")
        real_save(image, path, text)

    monkeypatch.setattr(callbacks, "save_png", slow_save)
    run = RunDir(tmp_path)
    saver = FrameSaver(run, 3, {"nst:version": "t"})
    started = time.perf_counter()
    saver(_event(0, 0))
    assert time.perf_counter() - started < 1.0  # did not wait for the write
    assert not run.frame(0).exists()
    release.set()
    saver(_event(3, 3))
    with pytest.raises(OutputError, match="step_000003.png"):
        saver.close()
    assert run.frame(0).is_file() and not run.frame(3).exists()


def test_the_summary_s_time_split_adds_up_to_the_wall_time() -> None:
    """A 1600 px run said "230.0 s optimising + 0.8 s setup" for 6 min 53 s: each scale's
    preparation and the start were not counted. Now the parts add up to the wall time."""
    import re

    from nst_cli.cli.stylize import time_split
    from nst_cli.run.state import StylizeResult

    result = StylizeResult(
        run_dir=Path("r"), final_image=Path("r/final.png"), losses={}, steps=160, steps_run=160,
        seconds=230.0, setup_seconds=0.8, status="completed", device="cpu",
        scale_setup_seconds=171.4,
    )  # fmt: skip
    line = time_split(result, 413.0)
    assert line.startswith(
        "413.0 s: 230.0 optimising, 171.4 preparing scales, 0.8 loading inputs, "
    )
    parts = [float(x) for x in re.findall(r"(\d+\.\d) [a-z]", line.split(": ", 1)[1])]
    assert sum(parts) == pytest.approx(413.0, abs=0.1) and parts[-1] == pytest.approx(10.8)


def test_a_process_s_start_is_before_now_and_recent() -> None:
    import time

    from nst_cli.cli.base import _process_started

    started = _process_started()
    assert started <= time.perf_counter()
