"""Make the project's own sample clip: a camera pan across a sample photo with a ball rolling
the other way, so the optical flow between any two frames is known exactly.

Run from the repo root:
    python samples/make_clip.py
It rewrites samples/pan.mp4 deterministically (40 frames, 320×240, 24 fps, a quiet tone as its
audio track, from samples/coffee.png, CC0). Tests and benchmarks import `pan_frames` and
`pan_flow` to build clips of their own size.
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent


def pan_frames(
    photo: Image.Image,
    size: tuple[int, int] = (320, 240),
    count: int = 40,
    pan: int = 1,
    ball: int = 6,
) -> Iterator[Image.Image]:
    """Frame t shows the photo (scaled to cover the pan) from x = t·pan, and a ball whose
    centre moves `ball` px to the left per frame. Whole-pixel moves: the flow is exact."""
    width, height = size
    # Scaled to the frame's height, or more where the pan needs a wider strip.
    zoom = max(height / photo.height, (width + pan * (count - 1)) / photo.width)
    scaled = photo.convert("RGB").resize(
        (math.ceil(photo.width * zoom), math.ceil(photo.height * zoom)), Image.Resampling.LANCZOS
    )
    top = (scaled.height - height) // 2
    for t in range(count):
        frame = scaled.crop((t * pan, top, t * pan + width, top + height))
        x, y, radius = ball_at(size, count, t, ball)
        draw = ImageDraw.Draw(frame)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(200, 40, 40))
        draw.ellipse((x - radius // 3, y - radius // 2, x, y - radius // 6), fill=(250, 170, 150))
        yield frame


def ball_at(size: tuple[int, int], count: int, t: int, ball: int) -> tuple[int, int, int]:
    """The ball's centre (x, y) and radius in frame t of `pan_frames`."""
    width, height = size
    radius = max(3, height // 8)
    return width - radius - t * ball + ball * count // 2, height // 2, radius


def pan_flow(size: tuple[int, int], pan: int = 1) -> np.ndarray:
    """The backward flow (frame t -> frame t-1) of the background, [H, W, 2]: every pixel of
    frame t was `pan` px further right in frame t-1."""
    width, height = size
    flow = np.zeros((height, width, 2), np.float32)
    flow[..., 0] = pan
    return flow


def _tone(path: Path, seconds: float, rate: int = 22050) -> None:
    """A quiet 440 Hz tone with a slow fade, as 16-bit mono WAV: the clip's audio track."""
    t = np.arange(int(seconds * rate)) / rate
    samples = 0.2 * np.sin(2 * math.pi * 440 * t) * np.minimum(1, np.minimum(t, seconds - t) * 4)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((samples * 32767).astype("<i2").tobytes())


def write_clip_with_audio(
    frames: list[Image.Image], path: Path, fps: float = 24.0, audio: bool = True
) -> None:
    """frames -> an H.264 .mp4 (through imageio-ffmpeg's ffmpeg), with a tone track."""
    import imageio_ffmpeg

    width, height = frames[0].size
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
            "-i", "-",
        ]  # fmt: skip
        if audio:
            wav = Path(tmp) / "tone.wav"
            _tone(wav, len(frames) / fps)
            command += ["-i", str(wav), "-c:a", "aac"]
        command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "12", str(path)]
        data = b"".join(np.asarray(f.convert("RGB")).tobytes() for f in frames)
        subprocess.run(command, input=data, check=True)


def main() -> None:
    photo = Image.open(HERE / "coffee.png")
    frames = list(pan_frames(photo, (320, 240), 40, pan=1, ball=6))
    write_clip_with_audio(frames, HERE / "pan.mp4")
    print(f"wrote {HERE / 'pan.mp4'}", file=sys.stderr)


if __name__ == "__main__":
    main()
