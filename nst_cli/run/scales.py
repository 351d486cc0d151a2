"""The coarse-to-fine loop: each scale's optimisation, and the image carried from one scale to the next."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from nst_cli.core import heap
from nst_cli.core.features import FeatureExtractor
from nst_cli.core.lbfgs import carry_history
from nst_cli.core.losses.total import Weighted
from nst_cli.core.optimize import Callback, Lane, OptimizeResult, lane_layers, optimize_batch
from nst_cli.core.pixels import (
    upsample,
)
from nst_cli.core.schedule import Stage
from nst_cli.run.inputs import stage_images, stage_masks
from nst_cli.run.losses import build_loss
from nst_cli.run.memory import plan_memory
from nst_cli.run.state import Prepared

log = logging.getLogger(__name__)


def run_scales(
    prepared: Sequence[Prepared],
    callbacks: Sequence[Sequence[Callback]],
    should_stop: Callable[[], bool],
) -> list[OptimizeResult]:
    """Coarse to fine: each scale starts from the previous one's result, upsampled.

    Several runs (a batch: same content, sizes, schedule and network, see `batch_key`) go
    through the scales together, one lane each; a lane that fails stops and the rest go on."""
    first = prepared[0]  # a batch shares its network (stylize_batch gives each run the same)
    config, device, cache, start = first.config, first.device, first.cache, first.start
    extractor = first.extractor
    images = [p.start.image.to(device) for p in prepared]
    states = [p.start.take_optimizer_state() for p in prepared]
    averages = [None if p.start.average is None else p.start.average.to(device) for p in prepared]
    step, seconds, steps_run, warmup, scale_setup = start.step, 0.0, 0, 0.0, 0.0
    done: dict[int, OptimizeResult] = {}
    live = list(range(len(prepared)))
    for stage in config.schedule()[start.stage :]:
        setup_started = time.perf_counter()
        lanes = [
            _lane_at_scale(
                prepared[i], extractor, stage, images[i], states[i], averages[i], callbacks[i]
            )
            for i in live
        ]
        states = [None] * len(prepared)  # in the lanes now (resized or dropped)
        # Tiles come in several shapes: a tiled lane runs the network as it is, not compiled.
        tiled = any(lane.tile is not None for lane in lanes)
        forward = extractor if tiled else cache.forward(config, extractor)
        scale_setup += time.perf_counter() - setup_started
        if config.compile and not tiled:
            warmup += _warm_up(forward, lanes)
        # Freed memory kept for the next step (no fresh pages each step), except where the
        # run was asked to use as little memory as it can, or is large enough that the
        # heap's slack would cost more memory than the pages cost time (heap.py).
        pixels = len(lanes) * lanes[0].image[0, 0].numel()
        kept = config.memory == "normal" and pixels <= heap.KEEP_UP_TO_PIXELS
        with heap.kept_between_steps() if kept else contextlib.nullcontext():
            results = optimize_batch(
                lanes,
                forward,
                config.total_steps if stage.is_last else max(stage.end, step),
                start_step=step,
                should_stop=should_stop,
                stage=stage,
                report_last=stage.is_last,
                total_steps=config.total_steps,
                # The events' clock counts each scale's preparation: it is time the run
                # takes, and the ETA's cost model (Stage.work_until) counts it too.
                elapsed_offset=start.elapsed + seconds + scale_setup,
                check_every=config.frame_every,
            )
        seconds += results[0].seconds
        steps_run += results[0].steps_run
        for i, result in zip(live, results, strict=True):
            images[i], states[i], averages[i] = result.image, result.optimizer_state, None
            done[i] = replace(
                result,
                seconds=seconds,
                steps_run=steps_run,
                warmup_seconds=warmup,
                scale_setup_seconds=scale_setup,
                optimizer_state=None,
            )
        live = [i for i in live if done[i].error is None]
        if not live or done[live[0]].interrupted:
            break
        step = done[live[0]].step
    return [done[i] for i in range(len(prepared))]


def _lane_at_scale(
    prepared: Prepared,
    extractor: FeatureExtractor,
    stage: Stage,
    image: torch.Tensor,
    optimizer_state: dict[str, Any] | None,
    average: torch.Tensor | None,
    callbacks: Sequence[Callback],
) -> Lane:
    """One run's images, loss and optimiser settings at this scale; its image so far is
    upsampled to the scale, and L-BFGS's curvature pairs resized with it
    (`optimizer.carry_history`) or dropped."""
    config, device = prepared.config, prepared.device
    content, styles = stage_images(config, prepared.inputs, stage.size)
    content, styles = content.to(device), [s.to(device) for s in styles]
    precondition = config.preconditioner(stage.index)
    if image.shape != content.shape:
        previous, image = image.shape, next_scale_start(image, content, config.upsample)
        carry = config.optimizer.name == "lbfgs" and config.optimizer.carry_history
        optimizer_state = (
            carry_history(optimizer_state, previous, image.shape, precondition)
            if carry and optimizer_state is not None
            else None
        )
    masks = [(m.to(device), i) for m, i in stage_masks(prepared.inputs, content)]
    tile = plan_memory(config, prepared.inputs, stage.size).tile
    loss = build_loss(
        config, extractor, content, styles, prepared.cache, stage.size, masks, tile,
        prepared.inputs,
    )  # fmt: skip
    if prepared.temporal is not None:
        size = (content.shape[-2], content.shape[-1])
        loss = loss.plus(
            Weighted("temporal", config.video.temporal_weight, prepared.temporal.resized(size))
        )
    return Lane(
        image,
        loss,
        config.optimizer.name,
        config.optimizer.effective_lr,
        callbacks,
        optimizer_state,
        history_size=config.optimizer.history_size,
        trust_region=config.optimizer.trust_region,
        # A tiled image is a large one: its history in float16 (half the bytes per pixel).
        compact_history=config.memory == "low" or tile is not None,
        precondition=precondition,
        average=config.average,
        average_state=average,
        tile=tile,
        tile_progress=prepared.tile_progress,
    )


def next_scale_start(image: torch.Tensor, content: torch.Tensor, mode: str) -> torch.Tensor:
    """The start of the next scale: the result so far, upsampled to the content's size.

    `detail` also adds the content's own detail at the new size, the part an image at the
    previous size could not hold (content − content downsampled and upsampled again, a
    Laplacian-pyramid band): the finer scale then starts with the photo's edges and texture in
    place instead of a blur, and spends its steps on the style's fine texture.
    """
    size = content.shape[-2:]
    start = upsample(image, size)
    if mode == "detail":
        coarse = torch.nn.functional.interpolate(content, size=tuple(image.shape[-2:]), mode="area")
        start = (start + content - upsample(coarse, size)).clamp_(0.0, 1.0)
    return start


def _warm_up(forward: Callable[..., Any], lanes: Sequence[Lane]) -> float:
    """One forward+backward outside the loop's clock, at the loop's batch size and layers,
    so torch.compile's tracing and code generation (tens of seconds, once per size) is
    reported apart from the steps' speed."""
    started = time.perf_counter()
    pixels = torch.cat([lane.image for lane in lanes]).detach().requires_grad_(True)
    features = forward(pixels, lane_layers(lanes))
    torch.stack([f.sum() for f in features.values()]).sum().backward()
    if pixels.device.type == "cuda":
        torch.cuda.synchronize(pixels.device)
    return time.perf_counter() - started
