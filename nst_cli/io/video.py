"""Clips in and out as streams: a video file (anything ffmpeg reads) or a folder of frames,
read one frame at a time; stylised frames written to .mp4, .webm or .gif, the input's audio
copied through. No function here holds a whole clip in memory."""

from __future__ import annotations

import contextlib
import glob
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from nst_cli.config.choices import IMAGE_SUFFIXES, MAX_CLIP_FPS, MIN_CLIP_FPS, VIDEO_SUFFIXES
from nst_cli.core.pillow import no_pixel_limit
from nst_cli.errors import ImageError, OutputError
from nst_cli.io.files import describe_os_error, publish
from nst_cli.io.images import MAX_PIXELS, load_image

#: A folder of frames plays at this rate unless `video.fps` says otherwise.
DEFAULT_FPS = 25.0
#: The natural order of frame names: frame2.png before frame10.png.
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class Clip:
    """What a clip is, read from its header (a video) or its files' headers (a folder)."""

    path: Path
    size: tuple[int, int]
    fps: float
    count: int
    has_audio: bool = False
    #: A folder's frame files, in order; empty for a video file.
    files: tuple[Path, ...] = field(default=(), repr=False)

    @property
    def is_folder(self) -> bool:
        return bool(self.files) or self.path.is_dir()


def _natural(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in _DIGITS.split(path.name)]


def open_clip(path: Path, fps: float | None = None, allow_large: bool = False) -> Clip:
    """Check a clip and read what it is, without decoding its frames (a video's frames are
    counted by ffmpeg, which decodes and drops them, once its frame size is known to be under
    the pixel limit). One-line ImageError otherwise."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"video {path}: file not found")
    if path.is_dir():
        return _open_folder(path, fps, allow_large)
    if not path.is_file():
        raise ImageError(f"video {path}: not a regular file (a pipe or device?)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise ImageError(
            f"video {path}: a still image, not a clip; stylise it with nst stylize, or give "
            "nst video a video file or a folder of frames"
        )
    if path.stat().st_size == 0:
        raise ImageError(f"video {path}: file is empty")
    declared = _declared_size(path)  # a GIF's screen, before ffmpeg decodes anything
    if declared is not None:
        _check_frame_size(path, declared, allow_large)
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path))
        meta = next(reader)
        reader.close()
    except (OSError, RuntimeError, StopIteration, ValueError, IndexError) as exc:
        raise _unreadable(path, exc) from None
    width, height = (int(side) for side in meta["size"])
    _check_frame_size(path, (width, height), allow_large)
    try:
        count, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (OSError, RuntimeError, ValueError, IndexError) as exc:
        raise _unreadable(path, exc) from None
    if count <= 0:
        raise ImageError(f"video {path}: has no frames")
    rate = float(meta.get("fps") or 0)
    if not np.isfinite(rate) or rate <= 0:
        rate = fps or DEFAULT_FPS
    return Clip(path, (width, height), rate, int(count), "audio_codec" in meta)


def _unreadable(path: Path, exc: BaseException) -> ImageError:
    """ffmpeg's refusal as one line: no video stream in it, or not a video at all."""
    text = str(exc).strip()
    if "does not contain any stream" in text or "0:v:0" in text:
        return ImageError(
            f"video {path}: has no frames (no video stream in it: audio only, or an empty "
            "clip); give a clip with a picture"
        )
    detail = text.splitlines()[-1][:100] if text else ""
    return ImageError(
        f"video {path}: not a video ffmpeg can read ({detail or type(exc).__name__}); "
        "use .mp4, .mov, .webm, .gif … or a folder of frames"
    )


def _upright_size(image: Image.Image) -> tuple[int, int]:
    """The size a frame has once its EXIF orientation is applied (as load_image applies it),
    from the header alone: orientations 5–8 turn it a quarter, swapping its sides."""
    try:
        orientation = image.getexif().get(0x0112, 1)
    except (OSError, ValueError, SyntaxError):
        orientation = 1
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _declared_size(path: Path) -> tuple[int, int] | None:
    """The frame size a file's header declares where Pillow reads the format (GIF, APNG,
    WebP): an 85-byte GIF can declare a 12000×12000 screen that ffmpeg then decodes."""
    with no_pixel_limit():
        try:
            with Image.open(path) as image:
                return image.size
        except (OSError, UnidentifiedImageError, ValueError):
            return None


def _check_frame_size(path: Path, size: tuple[int, int], allow_large: bool) -> None:
    if not allow_large and size[0] * size[1] > MAX_PIXELS:
        raise ImageError(
            f"video {path}: its frames are {size[0]}×{size[1]}, over the {MAX_PIXELS:,}-pixel "
            "limit; shrink the clip or pass --allow-large if you trust the file"
        )


def _open_folder(path: Path, fps: float | None, allow_large: bool = False) -> Clip:
    files = sorted(
        (p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=_natural,
    )
    if not files:
        raise ImageError(
            f"video {path}: a folder with no frames in it ({', '.join(IMAGE_SUFFIXES)} files)"
        )
    sizes = []
    with no_pixel_limit():
        for file in files:
            try:
                with Image.open(file) as image:
                    sizes.append(_upright_size(image))
            except (OSError, UnidentifiedImageError):
                raise ImageError(f"video frame {file}: not an image Pillow can read") from None
            if sizes[-1] != sizes[0]:
                raise ImageError(
                    f"video frame {file} is {sizes[-1][0]}×{sizes[-1][1]} but {files[0].name} is "
                    f"{sizes[0][0]}×{sizes[0][1]}; every frame of a clip must have the same size"
                )
    _check_frame_size(path, sizes[0], allow_large)
    return Clip(path, sizes[0], fps or DEFAULT_FPS, len(files), False, tuple(files))


def read_frames(clip: Clip, allow_large: bool = False) -> Iterator[Image.Image]:
    """The clip's frames in order, as RGB images, one at a time."""
    if clip.files:
        for file in clip.files:
            yield load_image(file, "video frame", allow_large)
        return
    import imageio_ffmpeg

    width, height = clip.size
    # Each frame of the clip once, as it is: ffmpeg's default constant-rate output repeats
    # and drops frames of a variable-rate clip, so its count (from the header) would cover
    # repeats of early frames and never reach the later ones.
    reader = imageio_ffmpeg.read_frames(str(clip.path), output_params=["-fps_mode", "passthrough"])
    try:
        next(reader)  # the metadata
        for raw in reader:
            yield Image.frombuffer("RGB", (width, height), raw, "raw", "RGB", 0, 1).copy()
    except (OSError, RuntimeError) as exc:
        raise ImageError(f"video {clip.path}: decoding failed ({str(exc)[:100]})") from None
    finally:
        reader.close()


def _remove_stale_partials(output: Path) -> None:
    """Partial clips a killed write left beside `output` (`.NAME.XXXXXXXX.mp4`, full size)."""
    pattern = re.compile(
        re.escape(f".{output.stem}.") + r"[A-Za-z0-9_]{8}" + re.escape(output.suffix)
    )
    for leftover in output.parent.glob(
        f".{glob.escape(output.stem)}.*{glob.escape(output.suffix)}"
    ):
        if pattern.fullmatch(leftover.name) and leftover.is_file() and not leftover.is_symlink():
            with contextlib.suppress(OSError):
                leftover.unlink()


def _check_finished(written_file: Path, output: Path, frames: int) -> None:
    """ffmpeg can fail while closing the file (a full disk refusing its index) and still
    exit quietly: a clip is published only if it plays back with every frame."""
    import imageio_ffmpeg

    try:
        count, _ = imageio_ffmpeg.count_frames_and_secs(str(written_file))
    except (OSError, RuntimeError, ValueError, IndexError):
        count = 0
    if count < frames:
        raise OutputError(
            f"{output}: ffmpeg did not finish the clip ({count} of {frames} frames readable; "
            "a full disk?); free space and run the same command again (the frames are kept)"
            + ("; the earlier clip is kept" if output.exists() else "")
        )


def _codecs(suffix: str) -> tuple[str, str | None, list[str], str]:
    """(video codec, audio codec, extra ffmpeg output options, pixel format) for a suffix."""
    if suffix == ".webm":
        return "libvpx-vp9", "libopus", ["-b:v", "0", "-crf", "32"], "yuv420p"
    if suffix == ".gif":
        # One palette for the whole clip, from every frame: no palette flicker between frames.
        palette = "split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse=dither=none"
        return "gif", None, ["-filter_complex", palette], "pal8"
    return "libx264", "aac", [], "yuv420p"


def write_clip(
    frames: Iterable[Image.Image],
    output: Path,
    fps: float,
    audio_from: Path | None = None,
    frames_expected: int | None = None,
) -> int:
    """Encode frames (all the first one's size) into `output` (.mp4, .webm, .gif) at `fps`,
    streaming them to ffmpeg; the audio track of `audio_from` (a video) is copied in. Written
    to a temporary file beside `output` and renamed, so `output` is either the old file or
    the whole new clip. With `frames_expected`, the audio is cut to that many frames' length
    (a clip of the first N frames of a longer video). Returns the number of frames written."""
    suffix = output.suffix.lower()
    _check_clip_output(output, suffix, fps)
    codec, audio_codec, options, pixel_format = _codecs(suffix)
    if audio_from is not None and audio_codec is not None and frames_expected:
        options = [*options, "-t", f"{(frames_expected + 0.5) / fps:.6f}"]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_partials(output)
        fd, tmp = tempfile.mkstemp(prefix=f".{output.stem}.", suffix=suffix, dir=output.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{output}: cannot write here ({describe_os_error(exc)})") from None
    settings = {
        "fps": fps, "codec": codec, "pix_fmt_out": pixel_format,
        "quality": None if suffix != ".mp4" else 8, "macro_block_size": 1,
        "output_params": options, "ffmpeg_log_level": "error",
        "audio_path": str(audio_from) if audio_from and audio_codec else None,
        "audio_codec": audio_codec if audio_from else None,
    }  # fmt: skip
    try:
        written = _encode(frames, tmp, settings, even=pixel_format == "yuv420p")
        if written == 0:
            raise OutputError(f"{output}: no frames to write")
        _check_finished(Path(tmp), output, written)
        publish(Path(tmp), output)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OutputError | KeyboardInterrupt | ImageError) or not isinstance(
            exc, Exception
        ):
            raise
        if isinstance(exc, OSError) and exc.strerror:
            raise OutputError(f"{output}: write failed ({describe_os_error(exc)})") from None
        raise OutputError(
            f"{output}: video encoding failed ({type(exc).__name__}: {str(exc).strip()[:120]})"
        ) from None
    return written


def _check_clip_output(output: Path, suffix: str, fps: float) -> None:
    """A clip nst can write: a known container, a frame rate in range (one line each)."""
    if suffix not in VIDEO_SUFFIXES:
        raise OutputError(
            f"{output}: nst writes {', '.join(VIDEO_SUFFIXES)} clips; name the output e.g. clip.mp4"
        )
    if not MIN_CLIP_FPS <= fps <= MAX_CLIP_FPS:
        raise OutputError(
            f"{output}: {fps:g} frames per second is outside {MIN_CLIP_FPS:g}–{MAX_CLIP_FPS:g}; "
            "give a frame rate in that range (25 is a film's)"
        )


def _encode(frames: Iterable[Image.Image], path: str, settings: dict[str, Any], even: bool) -> int:
    """Stream the frames to ffmpeg into `path`; the writer is closed however it ends. With
    `even` (yuv420p), an odd side gets one more row or column (its edge copied)."""
    import imageio_ffmpeg

    written, writer, size = 0, None, (0, 0)
    try:
        for image in frames:
            if writer is None:
                size = (
                    (image.width + image.width % 2, image.height + image.height % 2)
                    if even
                    else image.size
                )
                writer = imageio_ffmpeg.write_frames(path, size, **settings)
                writer.send(None)
            array = np.asarray(image.convert("RGB"))
            if array.shape[1::-1] != size:
                array = np.pad(
                    array, ((0, size[1] - array.shape[0]), (0, size[0] - array.shape[1]), (0, 0)),
                    mode="edge",
                )  # fmt: skip
            writer.send(np.ascontiguousarray(array))
            written += 1
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        raise
    if writer is not None:
        writer.close()
    return written
