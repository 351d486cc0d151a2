"""The optimisation loop: events describe the image they carry, stop/resume are exact."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import optimize_one

from nst_cli.core.features import build_extractor
from nst_cli.core.losses.gram import gram_matrix
from nst_cli.core.losses.total import ContentLoss, StyleLoss, WeightedSum, style_transfer_loss
from nst_cli.core.optimize import StepEvent
from nst_cli.errors import NonFiniteLossError


@pytest.fixture(scope="module")
def problem() -> tuple[object, WeightedSum, torch.Tensor]:
    torch.manual_seed(0)
    extractor = build_extractor("random", ["relu1_1", "relu2_1"], seed=1)
    content, style = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        content_feats = extractor(content, ["relu2_1"])
        style_feats = extractor(style, ["relu1_1"])
    loss = style_transfer_loss(
        ContentLoss(content_feats, {"relu2_1": 1.0}, normalize=False),
        StyleLoss({"relu1_1": gram_matrix(style_feats["relu1_1"])}, {"relu1_1": 1.0}, False),
        {"content": 1.0, "style": 1e4},
    )
    return extractor, loss, content


@pytest.mark.parametrize(("name", "lr"), [("lbfgs", 1.0), ("adam", 0.05)])
def test_each_event_reports_the_loss_of_its_own_image(problem, name: str, lr: float) -> None:
    extractor, loss, content = problem
    events: list[StepEvent] = []
    snapshots: list[torch.Tensor] = []

    def record(event: StepEvent) -> None:
        events.append(event)
        snapshots.append(event.image.clone())

    result = optimize_one(content, extractor, loss, name, lr, 5, callbacks=[record])
    assert [e.step for e in events] == [0, 1, 2, 3, 4, 5]
    assert [e.is_final for e in events] == [False] * 5 + [True]
    for event, image in zip(events, snapshots, strict=True):
        with torch.no_grad():
            expected = loss(extractor(image, loss.layers), image).total.item()
        assert event.losses["total"] == pytest.approx(expected, rel=1e-4)
    assert events[-1].losses["total"] < events[0].losses["total"]
    assert result.step == 5 and result.steps_run == 5 and not result.interrupted
    assert result.image.min() >= 0 and result.image.max() <= 1


def test_stop_and_resume_with_optimizer_state_is_exact(problem) -> None:
    extractor, loss, content = problem
    straight = optimize_one(content, extractor, loss, "lbfgs", 1.0, 6)
    saved: dict[int, dict] = {}

    def keep_state(event: StepEvent) -> None:
        saved[event.step] = {"image": event.image.clone(), "optimizer": event.optimizer_state()}

    checks = iter(range(100))
    first = optimize_one(
        content,
        extractor,
        loss,
        "lbfgs",
        1.0,
        6,
        callbacks=[keep_state],
        should_stop=lambda: next(checks) >= 3,
    )
    assert first.interrupted and first.step == 3
    state = saved[3]
    second = optimize_one(
        state["image"],
        extractor,
        loss,
        "lbfgs",
        1.0,
        6,
        start_step=3,
        optimizer_state=state["optimizer"],
    )
    assert second.step == 6 and second.steps_run == 3
    assert torch.allclose(second.image, straight.image, atol=1e-6)


def test_non_finite_loss_names_the_term(problem) -> None:
    extractor, loss, content = problem
    bad = style_transfer_loss(
        loss.term("content"), loss.term("style"), {"content": float("nan"), "style": 1.0}
    )
    with pytest.raises(NonFiniteLossError, match="total loss became nan at step 0"):
        optimize_one(content, extractor, bad, "adam", 0.01, 3)


@pytest.mark.parametrize("steps", [1, 3])
def test_a_run_whose_last_step_overshot_ends_on_the_point_before_it(problem, steps: int) -> None:
    # lr 50 without a trust region: steps 1 and 3 raise the loss. L-BFGS would undo such a
    # step at the next one; at the last there is none, and the result must not be worse than
    # an image the run already had.
    extractor, loss, content = problem
    totals: list[float] = []
    images: list[torch.Tensor] = []

    def record(event: StepEvent) -> None:
        totals.append(float(event.losses["total"]))
        images.append(event.image.detach().clone())

    result = optimize_one(
        content, extractor, loss, "lbfgs", 50.0, steps, callbacks=[record], trust_region=None
    )
    before = totals[:-1]
    best = before.index(min(before))
    assert totals[-1] == min(before) and result.losses["total"] == min(before)
    assert torch.equal(result.image, images[best]) and torch.equal(images[-1], images[best])


@pytest.mark.parametrize("name", ["lbfgs", "adam"])
def test_losses_are_read_back_only_at_check_steps(problem, name: str, as_on_a_gpu) -> None:
    from nst_cli.run.recording import LatestImage, LossLog
    from tests.conftest import HostReads

    extractor, loss, content = problem
    events: list[StepEvent] = []
    with HostReads() as host:
        optimize_one(
            content, extractor, loss, name, 1.0 if name == "lbfgs" else 0.05, 10,
            callbacks=[events.append, LatestImage()], check_every=5,
        )  # fmt: skip
    # Steps 0, 5 and 10 (the last): one transfer each, and at the last step L-BFGS's one
    # comparison of its final point with the point it stands on (optimize._keep_better_last_point).
    # (torch's Adam reads its own step counter, a CPU tensor even on a GPU, with .item():
    # not a device sync.)
    loop_reads = [r for r in host.reads if r != "item"] if name == "adam" else host.reads
    final = ["__bool__", "tolist"] if name == "lbfgs" else ["tolist"]
    assert loop_reads == ["tolist"] * 2 + final
    # Each check brought every step since the last one over in that one transfer: the loss
    # log has them all without another read.
    log = LossLog(Path("/dev/null"), flush_every=1000)
    for event in events[1:-1]:  # neither a flush step nor the final one
        log(event)
    with HostReads() as host:
        log._settle()
    assert host.reads == [] and [r["step"] for r in log.rows] == list(range(1, 10))


def test_a_loss_that_turns_non_finite_between_checks_names_its_own_step(problem) -> None:
    from nst_cli.run.recording import LatestImage

    extractor, loss, content = problem
    calls = {"n": 0}

    def flaky(image, layers):
        calls["n"] += 1
        features = extractor(image, layers)
        return {k: v * float("nan") if calls["n"] >= 4 else v for k, v in features.items()}

    latest, seen = LatestImage(), []
    with pytest.raises(NonFiniteLossError, match="at step 3"):
        optimize_one(
            content, flaky, loss, "adam", 0.05, 10,
            callbacks=[latest, lambda e: seen.append(e.image.clone())], check_every=5,
        )  # fmt: skip
    assert len(seen) == 5  # steps 0-4 ran; the check at step 5 stopped it before its event
    assert latest.step == 2 and torch.equal(latest.image, seen[2])
    assert set(latest.losses) >= {"total", "content", "style"}
