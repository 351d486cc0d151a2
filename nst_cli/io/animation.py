"""Saved frames -> an animation of the optimisation (GIF, or MP4/WebM through imageio-ffmpeg)."""

from __future__ import annotations

import io
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from nst_cli.core.pixels import fit_long_side, resize_long_side, resize_to
from nst_cli.errors import ImageError
from nst_cli.io.files import png_header, write_bytes
from nst_cli.io.images import label_font, load_image
from nst_cli.io.rundir import read_run_config
from nst_cli.io.video import write_clip

log = logging.getLogger(__name__)

_STEP = re.compile(r"(\d+)")
VIDEO_SUFFIXES = (".mp4", ".webm")
#: Bounds on what one animation may ask for (each checked before any frame is decoded).
MIN_FPS, MAX_FPS = 0.01, 100.0  # GIF frame delays are whole 10 ms ticks, 20 ms at least
MAX_LOOP = 65535  # the GIF loop count is 16 bits
MAX_SIZE = 8192
MAX_FRAMES = 10_000
MAX_ANIMATION_BYTES = 4 << 30


@dataclass(frozen=True)
class Frame:
    path: Path
    step: int | None  # None for a final.png without nst metadata
    label: str


@dataclass
class AnimationResult:
    output: Path
    frames: int
    source_frames: int
    bytes: int
    size: tuple[int, int]


def collect_frames(source: Path) -> tuple[list[Frame], Path]:
    """Frames of a run folder (its frames/) or of a frames folder, in numeric step order, and
    the folder the animation belongs in; the run's final.png is appended when it is newer
    than the last frame."""
    source = Path(source)
    if not source.exists():
        raise ImageError(f"{source}: no such folder; pass a run folder or its frames/ folder")
    if not source.is_dir():
        raise ImageError(f"{source}: not a folder; pass a run folder or its frames/ folder")
    saved = read_run_config(source / "config.yaml")
    if saved is not None and saved[1].get("kind") == "video":
        raise ImageError(
            f"{source}: a video run, whose frames are the clip's, not steps of an optimisation; "
            f"its clip is {saved[1].get('clip') or source / 'video.mp4'} (nst video --resume "
            f"{source} writes it again)"
        )
    frames_dir = source / "frames" if (source / "frames").is_dir() else source
    # A run's frames/ belongs to the run above it; any other folder of frames is its own
    # (the animation is written there, never into a folder the user did not name).
    run_dir = source.parent if frames_dir == source and source.name == "frames" else source
    frames: list[Frame] = []
    for path in frames_dir.iterdir():
        match = _STEP.search(path.stem)
        if path.suffix.lower() == ".png" and match and path.name != "final.png":
            step = int(match.group(1))
            frames.append(Frame(path, step, f"step {step}"))
    # Numeric order: step_900 comes before step_10200 whatever the zero padding.
    frames.sort(key=lambda f: f.step or 0)
    final = run_dir / "final.png"
    if final.is_file() and (not frames or final.stat().st_mtime > frames[-1].path.stat().st_mtime):
        final_step = _stored_step(final)
        if not frames or final_step is None or final_step != frames[-1].step:
            label = "final" if final_step is None else f"step {final_step}"
            frames.append(Frame(final, final_step, label))
    if not frames:
        raise ImageError(
            f"{frames_dir}: no frames found (expected step_NNNNNN.png files from nst stylize)"
        )
    return frames, run_dir


def _stored_step(path: Path) -> int | None:
    """The step nst recorded in a PNG's metadata (None for other PNGs)."""
    header = png_header(path)
    value = header[1].get("nst:step") if header else None
    return int(value) if value and str(value).isdigit() else None


def _label(image: Image.Image, text: str) -> Image.Image:
    """Write `text` in the bottom-left corner on a dark box, readable on any image."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    font = label_font(max(10, image.height // 18))
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(2, image.height // 100)
    x, y = pad, image.height - (bottom - top) - 3 * pad
    draw.rectangle(
        (x - pad, y - pad + top, x + right - left + pad, y + bottom + pad), fill=(0, 0, 0)
    )
    draw.text((x - left, y), text, font=font, fill=(255, 255, 255))
    return image


def _load_frames(frames: list[Frame], size: int | None, label: bool) -> list[Image.Image]:
    images: list[Image.Image] = []
    first_size: tuple[int, int] | None = None
    resized = 0
    for frame in frames:
        # The same guarded loader as the inputs: size checked from the header before any
        # pixel is decoded (a decompression bomb among the frames is one clear line).
        image = load_image(frame.path, "frame")
        if size:
            image = resize_long_side(image, size)
        if first_size is None:
            first_size = image.size
        elif image.size != first_size:
            image = resize_to(image, first_size)
            resized += 1
        images.append(_label(image, frame.label) if label else image)
    if resized and first_size is not None:
        log.warning(
            "%d frame(s) differ in size from the first; resized to %d×%d", resized, *first_size
        )
    return images


def make_animation(
    source: Path,
    output: Path | None = None,
    *,
    fps: float = 10.0,
    duration: float | None = None,
    hold_last: float = 0.0,
    size: int | None = None,
    loop: int = 0,
    label: bool = False,
) -> AnimationResult:
    """Write an animation of a run's frames (`nst gif`).

    Args:
        source: a run folder (its frames/) or a folder of frames, ordered by step number.
        output: a .gif, .mp4 or .webm path (None: optimization.gif in the run folder).
        fps: frames per second (ignored with `duration`).
        duration: seconds for the whole animation.
        hold_last: seconds the final image stays on screen.
        size: long side in px (aspect kept; None: the frames' own size).
        loop: GIF loop count (0: forever).
        label: draw the step number in a corner.

    Returns:
        Where the animation is, how many frames it shows, its size in bytes and pixels.

    Raises:
        ImageError: a bad option, no frames, or an animation too large to encode.
    """
    for name, value in (("--fps", fps), ("--duration", duration), ("--hold-last", hold_last)):
        if value is not None and not math.isfinite(value):
            raise ImageError(f"{name} {value}: must be a finite number of seconds or frames")
    if fps <= 0 or (duration is not None and duration <= 0) or hold_last < 0 or loop < 0:
        raise ImageError("--fps and --duration must be > 0, --hold-last and --loop >= 0")
    if not MIN_FPS <= fps <= MAX_FPS:
        raise ImageError(f"--fps {fps:g}: use {MIN_FPS:g} to {MAX_FPS:g} frames per second")
    if loop > MAX_LOOP:
        raise ImageError(f"--loop {loop}: GIF stores at most {MAX_LOOP} (0 loops forever)")
    if size is not None and not 8 <= size <= MAX_SIZE:
        raise ImageError(f"--size {size}: use 8 to {MAX_SIZE} px")
    frames, run_dir = collect_frames(source)
    output = Path(output) if output else run_dir / "optimization.gif"
    count = len(frames)
    if duration is not None:
        # --duration is the whole animation, the final hold included.
        if duration <= hold_last:
            raise ImageError(
                f"--duration {duration:g} must be longer than --hold-last {hold_last:g}"
            )
        fps = count / (duration - hold_last)
        if fps > MAX_FPS:
            raise ImageError(
                f"--duration {duration:g}: {count} frames in {duration - hold_last:g} s is over "
                f"{MAX_FPS:g} frames per second; give more time"
            )
    held = round(hold_last * fps)
    _check_animation_size(frames[0].path, size, count + held)
    images = _load_frames(frames, size, label)
    images += [images[-1]] * held
    suffix = output.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        _write_video(images, output, fps)
    elif suffix == ".gif":
        _write_gif(images, output, fps, loop)
    else:
        raise ImageError(f"--output {output}: unknown format; use .gif, .mp4 or .webm")
    return AnimationResult(output, len(images), count, output.stat().st_size, images[0].size)


def _check_animation_size(first: Path, size: int | None, total: int) -> None:
    """Refuse, before decoding any frame, an animation that would not fit in memory."""
    if total > MAX_FRAMES:
        raise ImageError(
            f"{total:,} frames (with --hold-last) is over the {MAX_FRAMES:,}-frame limit; "
            "lower --hold-last or --fps"
        )
    header = png_header(first)
    if header is None:
        return  # _load_frames names the damaged frame
    width, height = fit_long_side(header[0], size) if size else header[0]
    needed = total * width * height * 4  # RGB frame + palette indices, per frame
    if needed > MAX_ANIMATION_BYTES:
        raise ImageError(
            f"{total:,} frames at {width}×{height} need about {needed / 2**30:.1f} GiB to encode "
            f"(limit {MAX_ANIMATION_BYTES / 2**30:.0f} GiB); lower --size, --fps or --hold-last"
        )


def _write_gif(images: list[Image.Image], output: Path, fps: float, loop: int) -> None:
    # Size matters: one shared palette (taken from frames spread over the run) and no
    # dithering (dither noise defeats LZW), so a pixel that did not change keeps its index and
    # Pillow stores each frame as the rectangle that changed. No frame carries a transparency
    # index: Pillow decodes a frame with one as RGBA and frame 0 as RGB, so a reader would get
    # frames of two shapes (imageio's `imread(gif, index=None)` refuses them).
    sample = images[:: max(1, len(images) // 8)][:8]
    strip = Image.new("RGB", (sample[0].width, sample[0].height * len(sample)))
    for i, image in enumerate(sample):
        strip.paste(image, (0, i * image.height))
    palette = strip.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    frames = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    buffer = io.BytesIO()
    frames[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=max(20, round(1000 / fps)),
        loop=loop,
        disposal=1,
        optimize=False,
    )
    write_bytes(output, buffer.getvalue())


def _write_video(images: list[Image.Image], output: Path, fps: float) -> None:
    """MP4 / WebM through io.video's streaming writer (the one `nst video` uses)."""
    write_clip(images, output, fps)
