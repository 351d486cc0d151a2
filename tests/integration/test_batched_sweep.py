"""Runs of a sweep optimised together (`nst sweep --batch N`): the same results as one by
one, each in its own folder; a failing run does not take the others with it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from nst_cli.cli.base import app
from nst_cli.core.features import build_extractor
from nst_cli.core.losses.gram import gram_matrix
from nst_cli.core.losses.total import (
    ContentLoss,
    StyleLoss,
    Weighted,
    WeightedSum,
    style_transfer_loss,
)
from nst_cli.core.optimize import Lane, optimize_batch
from nst_cli.errors import NonFiniteLossError
from nst_cli.run import memory, session
from nst_cli.run.stylize import stylize_batch
from nst_cli.sweep import execute as sweep
from nst_cli.sweep.execute import SweepHooks, plan_batches, run_sweep
from nst_cli.sweep.grid import parse_param
from nst_cli.sweep.plan import plan_sweep
from tests.conftest import make_image, optimize_one, write_pair

runner = CliRunner()


@pytest.fixture
def base(tmp_path: Path) -> Path:
    make_image(tmp_path / "other.png", (40, 48), seed=3)
    return write_pair(tmp_path, "resolution: 48\nscales: [32]\nsteps: 12\nsave_every: 4\n")


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float64) / 255


def _summary(root: Path) -> list[dict[str, str]]:
    with (root / "summary.csv").open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_a_batched_sweep_gives_what_one_by_one_gives(base: Path, tmp_path: Path):
    """Two style weights and two optimisers: optimised as one batch, each run's folder holds
    what the run alone writes, with the same image (to rounding) and losses. Run by run, each
    run's steps come before the next run's; as a batch, the four runs take each step
    together (their events interleave)."""
    params = [parse_param("weights.style=0.5,20"), parse_param("optimizer.name=lbfgs,adam")]
    order: dict[str, list[tuple[int, int]]] = {"a": [], "b": []}
    for folder, batch in (("a", 1), ("b", 4)):
        root, runs = plan_sweep(base, params, output=tmp_path / folder)

        def record(i: int, run: object, seen: list[tuple[int, int]] = order[folder]) -> list:
            return [lambda event: seen.append((i, event.step))]

        run_sweep(root, runs, SweepHooks(record), batch=batch)
    one_by_one = [i for i, _ in order["a"]]
    assert one_by_one == sorted(one_by_one)  # each run whole before the next
    first_steps = [i for i, step in order["b"] if step == 0]
    assert sorted(first_steps) == [0, 1, 2, 3]
    assert order["b"][:4] == [(i, 0) for i in range(4)]  # all four at step 0 before any step 1
    rows_alone, rows_together = _summary(tmp_path / "a"), _summary(tmp_path / "b")
    assert [r["run"] for r in rows_alone] == [r["run"] for r in rows_together]
    for one, other in zip(rows_alone, rows_together, strict=True):
        assert other["status"] == "completed"
        assert float(other["total"]) == pytest.approx(float(one["total"]), rel=0.01)
        a, b = (tmp_path / d / one["run"] for d in "ab")
        assert np.abs(_pixels(a / "final.png") - _pixels(b / "final.png")).mean() < 0.01
        assert sorted(p.name for p in (b / "frames").iterdir()) == sorted(
            p.name for p in (a / "frames").iterdir()
        )
        steps = [row["step"] for row in csv.DictReader((b / "losses.csv").open())]
        assert steps == [row["step"] for row in csv.DictReader((a / "losses.csv").open())]
        assert (b / "checkpoint.pt").is_file()
    # More style weight, less style error, in the batch as alone.
    lbfgs = [r for r in rows_together if "lbfgs" in r["run"]]
    assert float(lbfgs[0]["style"]) > float(lbfgs[1]["style"])


def test_runs_that_cannot_share_a_batch_are_grouped_apart(base: Path, tmp_path: Path) -> None:
    params = [
        parse_param("weights.style=1,2,3"),
        parse_param("resolution=48,40"),
        parse_param(f"style={tmp_path / 'style.png'},{tmp_path / 'other.png'}"),
    ]
    root, runs = plan_sweep(base, params, output=tmp_path / "grid")
    groups = plan_batches(runs, batch=3)
    # Same size: weights and style images may differ; at most three a batch.
    for group in groups:
        assert len({runs[i].config.resolution for i in group}) == 1
        assert len(group) <= 3
    assert sorted(i for g in groups for i in g) == list(range(12))
    assert len(groups) == 4
    assert plan_batches(runs, batch=1) == [[i] for i in range(12)]
    assert plan_batches(runs) == [[i] for i in range(12)]  # a CPU: one by one by default


def test_on_a_gpu_runs_are_batched_by_default(base: Path, tmp_path: Path, monkeypatch) -> None:
    _, runs = plan_sweep(base, [parse_param("weights.style=1,2,3,4,5")], output=tmp_path / "g")
    monkeypatch.setattr(sweep, "resolve_device", lambda name: torch.device("cuda"))
    assert plan_batches(runs) == [[0, 1, 2, 3], [4]]


def test_a_batch_is_only_as_large_as_memory_allows(base: Path, tmp_path: Path, monkeypatch):
    root, runs = plan_sweep(base, [parse_param("weights.style=1,2,3,4")], output=tmp_path / "m")
    per_run = sweep._batchable_bytes(runs[0], False)
    assert per_run is not None and per_run > 0
    room = memory.BASE_BYTES + 2 * per_run + 1
    monkeypatch.setattr(
        sweep, "memory_limit", lambda device, max_memory=None: (room, "this machine")
    )
    assert plan_batches(runs, batch=4) == [[0, 1], [2, 3]]


@pytest.mark.slow
def test_finished_and_interrupted_runs_are_not_batched(base: Path, tmp_path: Path) -> None:
    root = tmp_path / "s"
    stops = iter([False] * 6 + [True] * 1000)
    params = [parse_param("weights.style=1,2,3")]
    _, runs = plan_sweep(base, params, output=root)
    run_sweep(root, runs, SweepHooks(should_stop=lambda: next(stops)), batch=3)
    states = [r.state for r in plan_sweep(base, params, output=root)[1]]
    assert states == ["resume", "resume", "resume"]  # all stopped at the same step
    for run in runs:
        steps = [int(r["step"]) for r in csv.DictReader((root / run.name / "losses.csv").open())]
        assert steps[-1] < 12
    _, again = plan_sweep(base, params, output=root)
    assert plan_batches(again, batch=3) == [[0], [1], [2]]
    run_sweep(root, again, batch=3)
    assert [r["status"] for r in _summary(root)] == ["completed"] * 3


def test_batch_settings_are_checked(base: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["sweep", "-c", str(base), "--style-weights", "1,2", "--batch", "0"]
    )
    assert result.exit_code != 0 and "--batch" in result.output
    _, runs = plan_sweep(base, [parse_param("weights.style=1,2")], output=tmp_path / "r")
    with pytest.raises(Exception, match="--executor local"):
        run_sweep(tmp_path / "r", runs, executor="ray", batch=2)
    configs = [runs[0].config, runs[1].config.model_copy(update={"resolution": 40})]
    with pytest.raises(ValueError, match="resolution"):
        stylize_batch(configs)


def _tiny_problem() -> tuple[object, torch.Tensor, callable]:
    torch.manual_seed(0)
    extractor = build_extractor("random", ["relu1_1", "relu2_1"], seed=1)
    content, style = torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24)
    with torch.no_grad():
        targets = extractor(content, ["relu2_1"])
        gram = gram_matrix(extractor(style, ["relu1_1"])["relu1_1"])

    def loss(beta: float) -> WeightedSum:
        return style_transfer_loss(
            ContentLoss(targets, {"relu2_1": 1.0}, normalize=False),
            StyleLoss({"relu1_1": gram}, {"relu1_1": 1.0}, normalize=False),
            {"content": 1.0, "style": beta},
        )

    return extractor, content, loss


@pytest.mark.slow
def test_a_lane_that_diverges_stops_alone() -> None:
    """One lane's loss turns NaN: it stops with the error a lone run raises; the others end
    where they would alone."""
    extractor, content, loss = _tiny_problem()
    calls = iter(range(1000))

    def poison(image: torch.Tensor) -> torch.Tensor:  # a term that turns NaN at its 6th call
        return image.new_zeros(()) * (float("nan") if next(calls) == 5 else 1.0)

    poisoned = loss(1e4).plus(Weighted("poison", 1.0, poison))
    results = optimize_batch(
        [Lane(content, loss(1e3)), Lane(content, poisoned), Lane(content, loss(1e5))],
        extractor, 15, check_every=1,
    )  # fmt: skip
    assert isinstance(results[1].error, NonFiniteLossError)
    assert "step 5" in str(results[1].error)
    for result, beta in ((results[0], 1e3), (results[2], 1e5)):
        assert result.error is None and result.step == 15
        alone = optimize_one(content, extractor, loss(beta), "lbfgs", 1.0, 15)
        assert result.losses["total"] == pytest.approx(alone.losses["total"], rel=1e-3)


@pytest.mark.slow
def test_a_batched_step_reads_nothing_back_between_checks(as_on_a_gpu) -> None:
    """Three lanes: one read per lane at each check (steps 0, 5, 10), none per step, and at
    the last step each lane's comparison of its final point with its kept one."""
    from tests.conftest import HostReads

    extractor, content, loss = _tiny_problem()
    lanes = [Lane(content, loss(b), precondition="pyramid") for b in (1e3, 1e4, 1e5)]
    with HostReads() as host:
        results = optimize_batch(lanes, extractor, 10, check_every=5)
    assert host.reads == ["tolist"] * 6 + ["__bool__"] * 3 + ["tolist"] * 3
    assert all(r.error is None and r.step == 10 for r in results)


@pytest.mark.slow
def test_a_run_whose_folder_cannot_be_written_fails_alone(base: Path, tmp_path: Path, monkeypatch):
    from nst_cli.errors import OutputError

    real = session.write_run_config

    def write(run_dir, config, **run):
        if run_dir.root.name == "style_weight=2" and run.get("status") == "running":
            raise OutputError(f"{run_dir.config}: no space left on device")
        return real(run_dir, config, **run)

    monkeypatch.setattr(session, "write_run_config", write)
    root = tmp_path / "full"
    _, runs = plan_sweep(base, [parse_param("weights.style=1,2,3")], output=root)
    run_sweep(root, runs, batch=3)
    assert [r.state for r in runs] == ["done", "failed", "done"]
    assert "no space left" in (runs[1].error or "")
    assert [r["status"] for r in _summary(root)] == ["completed", "failed", "completed"]
