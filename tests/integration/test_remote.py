"""`--executor ray`: runs as tasks that carry their files; the driver writes the run folders.

The task code is tested first without Ray (it is plain Python), then through a real local Ray
instance with 2 CPUs when Ray is installed (the [ray] extra; CI installs it)."""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from nst_cli.cli.base import app
from nst_cli.io.checkpoints import load_checkpoint
from nst_cli.sweep.grid import Param
from nst_cli.sweep.plan import plan_sweep
from nst_cli.sweep.ray_tasks import RunReport, execute_task, pack_task, unpack_report
from tests.conftest import write_pair

pytestmark = [pytest.mark.ray]  # the tests that start a Ray instance are marked slow

runner = CliRunner()


def run_files(root: Path) -> list[str]:
    """Every file a run or sweep folder holds, as relative paths (the lock file aside)."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name != ".nst.lock"
    )


def test_a_task_runs_without_the_drivers_files_and_records_the_users_paths(
    tmp_path: Path,
) -> None:
    config = write_pair(tmp_path / "job")
    root, runs = plan_sweep(config, [Param("weights.style", [1.0], ["1"])], output=tmp_path / "out")
    task = pack_task(0, runs[0], allow_large=False)
    # The worker has none of the driver's files: they travel in the task.
    shutil.move(tmp_path / "job", tmp_path / "elsewhere")

    report = execute_task(task)
    assert report.status == "completed", report.error
    assert {"final.png", "config.yaml", "losses.csv", "frames/step_000004.png"} <= set(report.files)
    shutil.move(tmp_path / "elsewhere", tmp_path / "job")
    unpack_report(report, runs[0])

    run_dir = runs[0].config.output_dir
    assert run_dir == root / "style_weight=1"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["content"] == str((tmp_path / "job" / "content.png").resolve())
    assert saved["output"] == str(run_dir)
    with Image.open(run_dir / "final.png") as final:
        provenance = final.info["nst:config"]
    assert "nst-task" not in provenance and str(tmp_path / "job" / "style.png") in provenance


def test_a_tasks_own_error_names_the_users_file_and_keeps_what_it_wrote(tmp_path: Path) -> None:
    config = write_pair(tmp_path / "job")
    (tmp_path / "job" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    _, runs = plan_sweep(
        config,
        [Param("init", [str(tmp_path / "job" / "broken.png")], ["broken"])],
        output=tmp_path / "out",
    )
    report = execute_task(pack_task(0, runs[0], allow_large=False))
    assert report.status == "failed"
    assert report.error is not None and "broken.png" in report.error
    assert "nst-task" not in report.error and str(tmp_path / "job") in report.error


def test_a_report_cannot_write_outside_its_run_folder(tmp_path: Path) -> None:
    config = write_pair(tmp_path / "job")
    _, runs = plan_sweep(config, [Param("seed", [1], ["1"])], output=tmp_path / "out")
    evil = RunReport(0, "completed", {"../../escaped.txt": b"x"})
    with pytest.raises(Exception, match="outside its folder"):
        unpack_report(evil, runs[0])
    assert not (tmp_path / "escaped.txt").exists()


def test_without_ray_the_executor_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_pair(tmp_path / "job")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    result = runner.invoke(
        app,
        ["sweep", "-c", str(config), "--style-weights", "1,2", "--executor", "ray",
         "-o", str(tmp_path / "out"), "-q"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "pip install -e '.[ray]'" in result.output and "Traceback" not in result.output


def test_one_image_is_not_sent_to_ray(tmp_path: Path) -> None:
    config = write_pair(tmp_path / "job")
    result = runner.invoke(app, ["stylize", "-c", str(config), "--executor", "ray", "-q"])
    assert result.exit_code == 2 and "runs a sweep or a folder run" in result.output


def test_a_wrong_address_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    config = write_pair(tmp_path / "job")
    for address, message in [
        ("127.0.0.1:1", "--address 127.0.0.1:1: no Ray head answers there"),
        ("nonsense", "--address nonsense: expected auto or HOST:PORT"),
    ]:
        result = runner.invoke(
            app,
            ["sweep", "-c", str(config), "--style-weights", "1,2", "--executor", "ray",
             "--address", address, "-o", str(tmp_path / "out"), "-q"],
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        assert message in result.output
        assert not (tmp_path / "out").exists()


# ---- through a real local Ray instance -----------------------------------------------------


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    yield ray
    ray.shutdown()


def summary(root: Path) -> dict[str, dict[str, str]]:
    with (root / "summary.csv").open() as fh:
        return {row["run"]: row for row in csv.DictReader(fh)}


@pytest.mark.slow
def test_a_ray_sweep_writes_what_a_local_one_writes(ray_instance, tmp_path: Path) -> None:
    config = write_pair(tmp_path / "job")
    sweep = ["sweep", "-c", str(config), "--style-weights", "0.1,1,10", "-q"]
    local = runner.invoke(app, [*sweep, "-o", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    remote = runner.invoke(app, [*sweep, "-o", str(tmp_path / "ray"), "--executor", "ray"])
    assert remote.exit_code == 0, remote.output

    assert run_files(tmp_path / "ray") == run_files(tmp_path / "local")
    # Per run: config, checkpoint, final, 3 frames, losses.csv/.png; then the sweep's 4.
    assert len(run_files(tmp_path / "ray")) == 3 * 8 + 4
    for name in ("style_weight=0.1", "style_weight=1", "style_weight=10"):
        here = yaml.safe_load((tmp_path / "local" / name / "config.yaml").read_text())
        there = yaml.safe_load((tmp_path / "ray" / name / "config.yaml").read_text())
        assert there.pop("output") == str(tmp_path / "ray" / name)
        here.pop("output")
        assert here.pop("run")["status"] == there.pop("run")["status"] == "completed"
        assert here == there
        with (
            Image.open(tmp_path / "local" / name / "final.png") as a,
            Image.open(tmp_path / "ray" / name / "final.png") as b,
        ):
            difference = np.abs(np.asarray(a, float) - np.asarray(b, float))
        assert difference.mean() < 1.0  # the same optimisation (threads may round differently)

    # The sweep's resume rule holds across executors: finished runs are skipped.
    again = runner.invoke(app, [*sweep, "-o", str(tmp_path / "ray"), "--executor", "ray"])
    assert again.exit_code == 0, again.output
    assert summary(tmp_path / "ray")["style_weight=1"]["status"] == "completed"


@pytest.mark.slow
def test_a_failing_ray_task_is_reported_and_the_others_finish(ray_instance, tmp_path: Path) -> None:
    config = write_pair(tmp_path / "job")
    (tmp_path / "job" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    root = tmp_path / "out"
    result = runner.invoke(
        app,
        ["sweep", "-c", str(config), "--param", f"init=content,{tmp_path}/job/broken.png,noise",
         "--executor", "ray", "-o", str(root)],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    rows = summary(root)
    assert rows["init=broken"]["status"] == "failed"
    assert "broken.png" in rows["init=broken"]["error"]
    assert rows["init=content"]["status"] == rows["init=noise"]["status"] == "completed"
    assert (root / "init=content" / "final.png").is_file()
    assert (root / "init=noise" / "final.png").is_file()
    assert "1 of 3 runs failed" in result.output and "Traceback" not in result.output


def crashing_task(marker: Path, crash_weight: float, always: bool):
    """The real task, except that the run with `crash_weight` kills its worker process (once,
    or every time), as an out-of-memory kill would."""
    from nst_cli.sweep import ray_executor as remote

    real = remote.ray_task

    def task(run_task, *arguments):
        import os

        if run_task.config.weights.style == crash_weight and (always or not marker.exists()):
            marker.touch()
            os._exit(1)
        return real(run_task, *arguments)

    return task


@pytest.mark.slow
@pytest.mark.parametrize("always", [False, True])
def test_a_killed_worker_is_retried_once_then_reported(
    ray_instance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, always: bool
) -> None:
    from nst_cli.sweep import ray_executor as remote

    monkeypatch.setattr(remote, "ray_task", crashing_task(tmp_path / "crashed", 2.0, always))
    config = write_pair(tmp_path / "job")
    root = tmp_path / "out"
    result = runner.invoke(
        app,
        ["sweep", "-c", str(config), "--style-weights", "1,2", "--executor", "ray",
         "-o", str(root), "-q"],
    )  # fmt: skip
    rows = summary(root)
    assert rows["style_weight=1"]["status"] == "completed"
    if always:
        assert result.exit_code == 1, result.output
        assert rows["style_weight=2"]["status"] == "failed"
        assert "failed twice" in rows["style_weight=2"]["error"]
    else:  # the second try ran it
        assert result.exit_code == 0, result.output
        assert rows["style_weight=2"]["status"] == "completed"
    assert (tmp_path / "crashed").exists()


def test_a_cuda_run_on_a_cluster_without_gpus_fails_at_once_instead_of_waiting(
    ray_instance, tmp_path: Path
) -> None:
    config = write_pair(tmp_path / "job")
    root = tmp_path / "out"
    result = runner.invoke(
        app,
        ["sweep", "-c", str(config), "--style-weights", "1,2", "--device", "cuda",
         "--executor", "ray", "-o", str(root), "-q"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    # Each failure is said when it happens and again in the list at the end.
    assert result.output.count("the Ray cluster has no GPU") == 2 * 2
    assert all(row["status"] == "failed" for row in summary(root).values())


def test_task_cpus_beyond_the_cluster_is_refused_not_queued_forever(
    ray_instance, tmp_path: Path
) -> None:
    config = write_pair(tmp_path / "job")
    result = runner.invoke(
        app,
        ["sweep", "-c", str(config), "--style-weights", "1", "--executor", "ray",
         "--task-cpus", "3", "-o", str(tmp_path / "out"), "-q"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "--task-cpus 3 is more CPUs than the Ray cluster has (2)" in result.output


@pytest.mark.slow
def test_ctrl_c_keeps_what_the_ray_tasks_saved_and_the_next_command_resumes(
    ray_instance, tmp_path: Path
) -> None:
    from nst_cli.sweep.execute import SweepHooks, run_sweep

    config = write_pair(tmp_path / "job")
    root = tmp_path / "out"
    sets = ["steps=3000", "save_every=2"]  # long enough to be stopped in the middle
    _, runs = plan_sweep(config, [Param("seed", [1, 2], ["1", "2"])], sets, output=root)
    seen: dict[int, int] = {}

    def watch(i, run):
        return [lambda event: seen.__setitem__(i, event.step)]

    stop = lambda: len(seen) == 2 and min(seen.values()) >= 6  # noqa: E731
    run_sweep(root, runs, SweepHooks(watch, stop), executor="ray")
    assert [run.state for run in runs] == ["resume", "resume"]
    for run in runs:
        run_dir = run.config.output_dir
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert saved["run"]["status"] == "interrupted"
        # Stopped as a local run stops: at a step, with its checkpoint written right there.
        step = load_checkpoint(run_dir / "checkpoint.pt")["step"]
        assert 6 <= step < 3000 and saved["run"]["steps_done"] == step
        with Image.open(run_dir / "final.png") as final:
            assert final.info["nst:step"] == str(step)
    # The same sweep again: each run continues from its checkpoint.
    _, again = plan_sweep(config, [Param("seed", [1, 2], ["1", "2"])], sets, output=root)
    assert [run.state for run in again] == ["resume", "resume"]


@pytest.mark.slow
def test_relocation_moves_every_input_and_the_gpu_but_nothing_else(tmp_path: Path) -> None:
    from nst_cli.config.resolve import resolve_config
    from nst_cli.sweep.ray_tasks import relocate

    config = resolve_config(
        None,
        ['style=[{path: a.png, weight: 2}, {path: b.png}]', "masks={m.png: 1}",
         "init=start.png", "device=cuda:3", "weights.style=7"],
        {"content": "photo.jpg", "output": "out/run"},
    )  # fmt: skip
    paths = {
        name: f"/scratch/{name}" for name in ("photo.jpg", "a.png", "b.png", "m.png", "start.png")
    }
    moved = relocate(config, paths, tmp_path / "run")
    assert str(moved.content) == "/scratch/photo.jpg"
    assert [(str(s.path), s.weight) for s in moved.style_images] == [
        ("/scratch/a.png", 2.0),
        ("/scratch/b.png", 1.0),
    ]
    assert [str(p) for p in moved.masks] == [
        "/scratch/m.png"
    ] and moved.init == "/scratch/start.png"
    assert moved.device == "cuda" and moved.output == tmp_path / "run"
    assert moved.weights == config.weights and moved.model == config.model
