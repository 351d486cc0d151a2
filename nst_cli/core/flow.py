"""Optical flow between video frames, warping by it, and where it can be trusted.

The temporal method of Ruder, Dosovitskiy and Brox ("Artistic style transfer for videos",
2016) needs, for frame t, the previous stylised frame moved to where its pixels are in
frame t, and a mask of the pixels for which that move is right. Flow comes from OpenCV's
DIS (dense inverse search): a few milliseconds per frame at our sizes, where the paper's
DeepFlow took tens of seconds.

Conventions: a flow is a float32 array [H, W, 2] of (dx, dy) in pixels; `flow_ab` maps each
pixel p of frame a to p + flow_ab[p] in frame b. Frames are uint8 RGB arrays [H, W, 3].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
import torch
from PIL import Image

from nst_cli.core.pixels import to_tensor

FlowPreset = Literal["ultrafast", "fast", "medium"]

_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def dis_flow(a: np.ndarray, b: np.ndarray, preset: FlowPreset = "medium") -> np.ndarray:
    """Dense flow from frame a to frame b (DIS on the grey images, variational refinement on).

    cv2 runs single-threaded here: the optimisation that follows owns the cores, and DIS at a
    few hundred px takes milliseconds either way."""
    grey_a = cv2.cvtColor(np.ascontiguousarray(a), cv2.COLOR_RGB2GRAY)
    grey_b = cv2.cvtColor(np.ascontiguousarray(b), cv2.COLOR_RGB2GRAY)
    dis = cv2.DISOpticalFlow_create(_PRESETS[preset])  # type: ignore[attr-defined]
    flow = dis.calc(grey_a, grey_b, None)
    return np.asarray(flow, dtype=np.float32)


def sample(array: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """array (H, W[, C]) read at p + flow[p], bilinear, edges extended."""
    height, width = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(
        np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
    )
    return cv2.remap(
        array,
        grid_x + flow[..., 0],
        grid_y + flow[..., 1],
        interpolation=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def consistency_mask(flow_back: np.ndarray, flow_fore: np.ndarray) -> np.ndarray:
    """Where the backward flow (frame t -> frame t-1) can be trusted, as 0/1 float32 [H, W].

    A pixel of frame t is dropped when following it back and then forward again does not
    return it near where it started (it was occluded in t-1, or it is newly uncovered:
    disoccluded), and on motion boundaries, where the flow's gradient is large and warping
    smears two objects together. The thresholds are the paper's (its equations 4 and 5)."""
    forward_at_target = sample(flow_fore, flow_back)
    round_trip = flow_back + forward_at_target
    mismatch = (round_trip**2).sum(-1)
    scale = (flow_back**2).sum(-1) + (forward_at_target**2).sum(-1)
    occluded = mismatch > 0.01 * scale + 0.5
    grad_u = np.stack(np.gradient(flow_back[..., 0]), -1)
    grad_v = np.stack(np.gradient(flow_back[..., 1]), -1)
    boundary = (grad_u**2).sum(-1) + (grad_v**2).sum(-1) > 0.01 * (flow_back**2).sum(-1) + 0.002
    return (~(occluded | boundary | outside_frame(flow_back))).astype(np.float32)


def outside_frame(flow: np.ndarray) -> np.ndarray:
    """Pixels whose flow leads out of the frame: what a pan brings in at the edge, which the
    earlier frame never showed."""
    height, width = flow.shape[:2]
    x = np.arange(width, dtype=np.float32)[None, :] + flow[..., 0]
    y = np.arange(height, dtype=np.float32)[:, None] + flow[..., 1]
    return (x < 0) | (x > width - 1) | (y < 0) | (y > height - 1)


def warp(image: torch.Tensor, flow_back: np.ndarray) -> torch.Tensor:
    """An image of frame t-1 ([1, C, H, W], values in [0, 1]) moved to frame t: pixel p reads
    p + flow_back[p], edges extended. Bicubic, clamped to [0, 1]: a clip warps each frame
    from the last, and bilinear's blur added up (over 40 frames of the sample pan, the mean
    style loss 1.6% and the temporal error 8% higher than bicubic's; benchmarks/video.py)."""
    _, _, height, width = image.shape
    flow = torch.from_numpy(np.ascontiguousarray(flow_back)).to(image.device, image.dtype)
    ys = torch.arange(height, device=image.device, dtype=image.dtype)
    xs = torch.arange(width, device=image.device, dtype=image.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    # grid_sample's coordinates: -1 and 1 are the centres of the edge pixels (align_corners).
    x = (grid_x + flow[..., 0]) * (2.0 / max(width - 1, 1)) - 1.0
    y = (grid_y + flow[..., 1]) * (2.0 / max(height - 1, 1)) - 1.0
    grid = torch.stack([x, y], -1).unsqueeze(0)
    warped = torch.nn.functional.grid_sample(
        image, grid, mode="bicubic", padding_mode="border", align_corners=True
    )
    return warped.clamp_(0.0, 1.0)


def temporal_error(image: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean absolute difference, in 8-bit levels (0–255), between a stylised frame and the
    previous stylised frame warped onto it, over the pixels the mask trusts: how much the
    picture changes where the scene did not. 0 where nothing is trusted."""
    weight = mask.expand_as(image)
    count = float(weight.sum())
    if count == 0:
        return 0.0
    return float((weight * (image - warped).abs()).sum()) / count * 255.0


def clip_temporal_errors(
    stylised: Sequence[Image.Image], photos: Sequence[Image.Image], preset: str = "medium"
) -> list[float]:
    """temporal_error of each frame after the first (see flow.temporal_error), with the flow
    and mask taken from the photo frames: the same figure for any stylisation of a clip (nst
    video's own, or each frame stylised on its own), so the two can be compared."""
    errors = []
    for t in range(1, len(stylised)):
        now, before = np.asarray(photos[t].convert("RGB")), np.asarray(photos[t - 1].convert("RGB"))
        back = dis_flow(now, before, preset)  # type: ignore[arg-type]
        mask = consistency_mask(back, dis_flow(before, now, preset))  # type: ignore[arg-type]
        warped = warp(to_tensor(stylised[t - 1]), back)
        errors.append(
            temporal_error(to_tensor(stylised[t]), warped, torch.from_numpy(mask)[None, None])
        )
    return errors
