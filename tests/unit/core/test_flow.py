"""Optical flow, its trust mask, the warp and the temporal term, on the synthetic pan whose
flow is known exactly (samples/make_clip.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from nst_cli.core.flow import consistency_mask, dis_flow, outside_frame, temporal_error, warp
from nst_cli.core.losses.temporal import TemporalTarget, TemporalTerm, long_term_masks
from nst_cli.core.pixels import to_tensor
from samples.make_clip import ball_at, pan_flow, pan_frames

SIZE = (96, 64)
PAN = 2
BALL = 8
#: Frames of the clip, and the two compared (the ball well inside the frame in both).
COUNT, FIRST = 12, 8


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    photo = Image.open("samples/coffee.png")
    clip = list(pan_frames(photo, SIZE, COUNT, pan=PAN, ball=BALL))
    return [np.asarray(f) for f in clip[FIRST : FIRST + 2]]


def _background(frames: list[np.ndarray]) -> np.ndarray:
    """Pixels of frame 1 away from the ball (where it is in frames 0 and 1) and the edges."""
    keep = np.ones(frames[1].shape[:2], bool)
    for t in (FIRST, FIRST + 1):
        x, _, radius = ball_at(SIZE, COUNT, t, BALL)
        keep[:, max(0, x - radius - 6) : x + radius + 7] = False
    keep[:6], keep[-6:], keep[:, :6], keep[:, -6:] = False, False, False, False
    assert keep.mean() > 0.3
    return keep


def test_dis_flow_recovers_the_known_pan(frames: list[np.ndarray]) -> None:
    back = dis_flow(frames[1], frames[0])
    truth = pan_flow(SIZE, PAN)
    keep = _background(frames)
    error = np.abs(back - truth)[keep]
    assert np.median(error) < 0.25
    assert np.mean(error < 1.0) > 0.9


def test_warp_by_the_flow_rebuilds_the_next_frame(frames: list[np.ndarray]) -> None:
    before, now = to_tensor(Image.fromarray(frames[0])), to_tensor(Image.fromarray(frames[1]))
    warped = warp(before, pan_flow(SIZE, PAN))
    keep = torch.from_numpy(_background(frames))
    difference = (warped - now).abs().mean(1)[0][keep]
    assert float(difference.max()) < 1e-5  # a whole-pixel move: exact
    # and a shift the wrong way is far off: the test can tell a good warp from a bad one
    wrong = warp(before, -pan_flow(SIZE, PAN))
    assert float((wrong - now).abs().mean(1)[0][keep].mean()) > 0.01


def test_the_mask_drops_what_the_previous_frame_never_showed(frames: list[np.ndarray]) -> None:
    back, fore = dis_flow(frames[1], frames[0]), dis_flow(frames[0], frames[1])
    mask = consistency_mask(back, fore)
    assert mask.shape == frames[1].shape[:2] and set(np.unique(mask)) <= {0.0, 1.0}
    # the pan brings PAN new columns in at the right edge: the previous frame never had them
    assert mask[:, -PAN:].sum() == 0
    assert outside_frame(pan_flow(SIZE, PAN))[:, -PAN:].all()
    assert not outside_frame(pan_flow(SIZE, PAN))[:, :-PAN].any()
    # the still background is trusted almost everywhere
    assert mask[_background(frames)].mean() > 0.9
    # the ball moves against the pan: its edges (occlusion, disocclusion) are dropped
    x, y, radius = ball_at(SIZE, COUNT, FIRST + 1, BALL)
    ring = mask[y - radius : y + radius + 1, x - radius - 3 : x + radius + 4]
    assert ring.mean() < 0.9


def test_mask_of_an_exact_flow_pair() -> None:
    """A uniform shift both ways is consistent everywhere it stays in the frame."""
    flow = pan_flow((40, 30), 3)
    mask = consistency_mask(flow, -flow)
    assert mask[:, :-3].all() and not mask[:, -3:].any()
    # a flow that does not come back is an occlusion
    assert not consistency_mask(flow, flow)[:, :-3].any()


def test_temporal_error_is_mean_absolute_levels_over_the_mask() -> None:
    a = torch.zeros(1, 3, 4, 4)
    b = torch.full((1, 3, 4, 4), 10 / 255)
    mask = torch.zeros(1, 1, 4, 4)
    assert temporal_error(a, b, mask) == 0.0
    mask[..., :2] = 1
    b[..., 2:] = 1.0  # outside the mask: not counted
    assert temporal_error(a, b, mask) == pytest.approx(10.0, rel=1e-5)


def test_temporal_term_pulls_only_where_the_mask_trusts() -> None:
    image = torch.rand(1, 3, 8, 8, requires_grad=True)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4] = 1
    term = TemporalTerm([TemporalTarget(torch.zeros(1, 3, 8, 8), mask)])
    term(image).backward()
    assert image.grad is not None
    assert bool((image.grad[..., 4:] == 0).all()) and bool((image.grad[..., :4] > 0).all())
    half = term.resized((4, 4))
    assert half.targets[0].warped.shape[-2:] == (4, 4)


def test_long_term_masks_hold_each_pixel_to_the_nearest_frame_that_saw_it() -> None:
    near = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    mid = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    far = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    masks = long_term_masks([near, mid, far])
    assert masks[0].tolist() == [[1, 0, 0, 1]]
    assert masks[1].tolist() == [[0, 1, 0, 0]]
    assert masks[2].tolist() == [[0, 0, 1, 0]]
