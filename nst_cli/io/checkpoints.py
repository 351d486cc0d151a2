"""checkpoint.pt: what `--resume` needs to go on from a saved step, written and read here only.

A checkpoint holds the image (float32), the step, the scale (stage) and the optimiser state.
The optimiser state is the big part: projected L-BFGS keeps 20 (s, y) pairs, 480 bytes per
pixel in float32. Three modes (the config's `checkpoint` key):

- `compact` (default): the newest COMPACT_PAIRS pairs plus the last point and gradient, each
  stored as float16 relative to its own largest value: ~60 bytes per pixel. A resumed run
  rebuilds the rest of its curvature history within a few steps; its final loss matches an
  uninterrupted run's to within COMPACT_RESUME_TOLERANCE (tests/unit/io/test_checkpoints.py).
- `exact`: the full float32 state, ~520 bytes per pixel; a resumed run repeats an
  uninterrupted one exactly (up to 8-bit rounding of the saved image).
- `off`: no checkpoint; the run cannot be resumed.

Writing is budgeted by time, not only by frame: a checkpoint is written at a frame step only
when the time since the last one is at least WRITE_BUDGET_RATIO times what that write took,
so checkpoints cost at most ~1/WRITE_BUDGET_RATIO of the run whatever the image size, and
always at the end (completed, interrupted or failed).
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from typing import Any

import torch

from nst_cli.config.choices import CheckpointMode
from nst_cli.core.lbfgs import Stored, pack, unpack
from nst_cli.core.torchfiles import UnreadableFile, load_tensors
from nst_cli.errors import CheckpointError
from nst_cli.io.files import write_bytes

CHECKPOINT_VERSION = 2
#: Versions this nst reads: 1 stored the optimiser state as torch's state_dict, unchanged.
READABLE_VERSIONS = (1, 2)
#: (s, y) pairs an L-BFGS compact checkpoint keeps.
COMPACT_PAIRS = 3
#: Relative difference of the final total loss of a compact-resumed run from an
#: uninterrupted one, as pinned by the tests (measured: well under 1%).
COMPACT_RESUME_TOLERANCE = 0.02
#: Seconds between checkpoints ≥ this × the last write's seconds (so ≤ ~2% of the run).
WRITE_BUDGET_RATIO = 50.0


def save_checkpoint(
    path: Path,
    *,
    image: torch.Tensor,
    step: int,
    stage: int,
    elapsed: float,
    optimizer_state: dict[str, Any] | None,
    mode: CheckpointMode = "compact",
    average: torch.Tensor | None = None,
) -> None:
    """Atomically write what a resumed run needs to continue from `step`."""
    image = image.detach().to("cpu", torch.float32).clone()
    optimizer = _to_cpu(optimizer_state) if optimizer_state is not None else None
    if optimizer is not None and mode == "compact":
        optimizer = compact_state(optimizer, image)
    state = {
        "version": CHECKPOINT_VERSION,
        "step": step,
        "stage": stage,
        "elapsed": elapsed,
        "image": image,
        "optimizer": optimizer,
        # The moving average of the iterates (config `average`): resume continues it exactly.
        "average": None if average is None else average.detach().to("cpu", torch.float32).clone(),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at `path`, checked field by field (it is a file a user may edit), with
    its optimiser state expanded back to what the optimiser loads; None when there is none."""
    if not path.is_file():
        return None
    try:
        state = load_tensors(path)
    except UnreadableFile as exc:  # any damage is reported the same way, with the way out
        reason = str(exc).split(":")[0]
        raise CheckpointError(
            f"{path}: checkpoint unreadable ({reason}); delete it to start over"
        ) from None
    problem = _problem(state)
    if problem:
        raise CheckpointError(
            f"{path}: not a valid nst checkpoint ({problem}); delete it to start over"
        )
    assert isinstance(state, dict)  # _problem checked it
    if isinstance(state.get("optimizer"), dict):
        try:
            state["optimizer"] = expand_state(state["optimizer"], state["image"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as exc:
            problem = f"the optimiser state is damaged ({type(exc).__name__})"
        else:
            problem = _optimizer_problem(state["optimizer"], state["image"])
    if problem:
        raise CheckpointError(
            f"{path}: not a valid nst checkpoint ({problem}); delete it to start over"
        )
    return state


#: No tensor nst saves holds more elements than this (a 100-megapixel image's L-BFGS pair is
#: 3·10⁸): a larger one declared in a file is refused before anything is computed on it.
MAX_TENSOR_ELEMENTS = 2**31


def _declared_problem(state: object) -> str | None:
    """What is wrong with the tensors a file declares, checked on their metadata alone (no
    element read): each must own the bytes its shape claims (a zero-stride view of a few
    bytes can claim gigabytes) and stay within MAX_TENSOR_ELEMENTS."""
    pending, seen = [state], 0
    while pending:
        value = pending.pop()
        seen += 1
        if seen > 100_000:
            return "too many entries"
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
        elif isinstance(value, torch.Tensor):
            if value.numel() > MAX_TENSOR_ELEMENTS:
                return f"a tensor of {value.numel():,} elements"
            needed = value.numel() * value.element_size()
            owned = value.untyped_storage().nbytes() - value.storage_offset() * value.element_size()
            if needed > owned or any(
                s == 0 for s, n in zip(value.stride(), value.shape, strict=True) if n > 1
            ):
                return "a tensor whose data is smaller than its shape"
    return None


def _problem(state: object) -> str | None:
    if not isinstance(state, dict):
        return "not a mapping"
    declared = _declared_problem(state)
    if declared:
        return declared
    if state.get("version", 1) not in READABLE_VERSIONS:
        return f"version {state.get('version')!r}, this nst reads {READABLE_VERSIONS}"
    image = state.get("image")
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[:2] != (1, 3):
        return "no [1, 3, H, W] image"
    if not image.is_floating_point() or not torch.isfinite(image).all():
        return "the image is not finite floating point"
    for key in ("step", "stage"):
        value = state.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{key} is {value!r}"
    elapsed = state.get("elapsed", 0.0)
    if not isinstance(elapsed, int | float) or not elapsed >= 0:
        return f"elapsed is {elapsed!r}"
    if not isinstance(state.get("optimizer"), dict | None):
        return "the optimiser state is not a mapping"
    average = state.get("average")
    if average is not None and (
        not isinstance(average, torch.Tensor) or average.shape != image.shape
    ):
        return "the averaged image does not match the image"
    return None


#: The optimiser settings that are words (the L-BFGS preconditioner's name); all others are
#: numbers, flags or None.
TEXT_SETTINGS = ("precondition",)


def _optimizer_problem(optimizer: object, image: torch.Tensor) -> str | None:
    """What is wrong with an (expanded) optimiser state for this image, or None: one group
    for one tensor, settings that are plain finite values, and stored tensors that are finite
    and either scalars or the image's size."""
    if not isinstance(optimizer, dict):
        return "the optimiser state is not a mapping"
    groups, state = optimizer.get("param_groups"), optimizer.get("state")
    if not (isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict)):
        return "the optimiser state is not for one image"
    for key, value in groups[0].items():
        if key == "params":
            if value != [0]:
                return "the optimiser state is not for one image"
        elif not _plain(value) or (isinstance(value, str) and key not in TEXT_SETTINGS):
            return f"the optimiser setting {key!r} is {value!r}"
    if not isinstance(state, dict) or any(k != 0 for k in state):
        return "the optimiser state is not for one image"
    pending = list(state.values())
    while pending:
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list | tuple):
            pending.extend(value)
        elif isinstance(value, torch.Tensor):
            if value.numel() not in (1, image.numel()) or not torch.isfinite(value.float()).all():
                return "a stored optimiser tensor does not fit the image or is not finite"
        elif not _plain(value):
            return f"the optimiser state holds {type(value).__name__}"
    return None


def _plain(value: object) -> bool:
    """None, a bool, a string, or a finite number (or a tuple/list of them, e.g. Adam's betas)."""
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, bool | int | str)


class CheckpointWriter:
    """Decides when to write: at frame steps within the time budget, and always at the end."""

    def __init__(self, path: Path, save_every: int, mode: CheckpointMode = "compact") -> None:
        self.path = path
        self.save_every = save_every
        self.mode = mode
        self._last_write_end: float | None = None
        self._last_write_seconds = 0.0

    def due(self, step: int, is_final: bool) -> bool:
        if self.mode == "off":
            return False
        if is_final:
            return True
        if step % self.save_every:
            return False
        if self._last_write_end is None:
            return True
        waited = time.perf_counter() - self._last_write_end
        return waited >= WRITE_BUDGET_RATIO * self._last_write_seconds

    def write(self, **fields: Any) -> None:
        started = time.perf_counter()
        save_checkpoint(self.path, mode=self.mode, **fields)
        self._last_write_end = time.perf_counter()
        self._last_write_seconds = self._last_write_end - started


# ----- compact optimiser state -------------------------------------------------------------
# Vectors are packed as the optimiser packs a compact history (lbfgs.pack: float16 relative to
# the vector's largest element); a pair the optimiser already packed is stored as it is.


def _pack(vector: Stored) -> dict[str, Any]:
    return vector if isinstance(vector, dict) else pack(vector)


def compact_state(optimizer_state: dict[str, Any], image: torch.Tensor) -> dict[str, Any]:
    """L-BFGS state with its newest COMPACT_PAIRS pairs and packed vectors; the previous point
    is stored as the last step (image − x), which packs far better than x itself. Other
    optimisers' states (Adam: two moments, 24 bytes per pixel) are returned unchanged."""
    state = optimizer_state.get("state", {}).get(0)
    if not isinstance(state, dict) or "s" not in state:
        return optimizer_state
    packed = dict(state)
    packed["s"] = [_pack(s) for s in state["s"][-COMPACT_PAIRS:]]
    packed["y"] = [_pack(y) for y in state["y"][-COMPACT_PAIRS:]]
    if "rho" in state:  # each pair's 1/sy (0: it failed the curvature test, or was reset)
        packed["rho"] = state["rho"][-COMPACT_PAIRS:]
    if "x" in state:
        packed["last_step"] = _pack(image.flatten() - state["x"])
        del packed["x"]
        packed["g"] = _pack(state["g"])
    packed["compact"] = True
    return {**optimizer_state, "state": {0: packed}}


def expand_state(optimizer_state: dict[str, Any], image: torch.Tensor) -> dict[str, Any]:
    """The inverse of compact_state (states that were not compacted pass through)."""
    state = optimizer_state.get("state", {}).get(0)
    if not isinstance(state, dict) or not state.get("compact"):
        return optimizer_state
    full = {k: v for k, v in state.items() if k not in ("compact", "last_step")}
    full["s"] = [unpack(s) for s in state["s"]]
    full["y"] = [unpack(y) for y in state["y"]]
    if "last_step" in state:
        full["x"] = image.flatten().to(torch.float32) - unpack(state["last_step"])
        full["g"] = unpack(state["g"])
        if full["x"].numel() != image.numel() or full["g"].numel() != image.numel():
            raise ValueError("optimiser state does not match the image")
    return {**optimizer_state, "state": {0: full}}


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value
