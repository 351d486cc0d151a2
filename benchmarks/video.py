"""`nst video` against stylising every frame on its own: flicker, quality and time.

The clip is the project's own pan (samples/make_clip.py: a camera pan across coffee.png with a
ball rolling the other way), made at the run's resolution so the pan is a whole number of
pixels per frame. Two stylisations of the same frames, same style, same settings:
- independent: each frame an ordinary `nst stylize` run from its photo (the config's full
  coarse-to-fine schedule, `steps` each);
- video: `nst video` (frame 0 as above; later frames from the warped previous frame, with the
  temporal loss, `video.steps` each).

For both it prints the temporal_error (mean |frame − previous frame warped by the flow|, in
8-bit levels, over the pixels the flow is trusted for: `run.video.clip_temporal_errors`, the
same function for both), the mean style and content losses of the frames (the loss nst
minimises, temporal term left out: the per-frame quality), and steps and seconds per frame.

    python benchmarks/video.py --resolution 192 --frames 12
    python benchmarks/video.py --temporal-weight 500 2000 8000 --later-steps 16 32
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nst_cli import resolve_config, stylize  # noqa: E402
from nst_cli.core.flow import clip_temporal_errors  # noqa: E402
from nst_cli.run.cache import ModelCache  # noqa: E402
from nst_cli.run.video import stylize_video  # noqa: E402
from samples.make_clip import pan_frames  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=192)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument(
        "--steps", type=int, default=80, help="steps of frame 0 (and of each independent frame)"
    )
    parser.add_argument("--style", default=str(ROOT / "samples" / "fluid.png"))
    parser.add_argument("--temporal-weight", type=float, nargs="+", default=[None])
    parser.add_argument("--later-steps", nargs="+", default=["auto"])
    parser.add_argument(
        "--long-term", action="store_true", help="video.long_term: also frames t-2, t-4"
    )
    parser.add_argument("--skip-independent", action="store_true")
    parser.add_argument("--keep", type=Path, help="keep the frames here (for the docs' pictures)")
    args = parser.parse_args()

    width, height = args.resolution, args.resolution * 3 // 4
    pan = max(1, args.resolution // 160)
    photos = list(
        pan_frames(
            Image.open(ROOT / "samples" / "coffee.png"), (width, height), args.frames, pan, 3 * pan
        )
    )
    work = args.keep or Path(tempfile.mkdtemp(prefix="nst-video-bench-"))
    clip = work / "clip"
    clip.mkdir(parents=True, exist_ok=True)
    for index, photo in enumerate(photos):
        photo.save(clip / f"{index:04d}.png")
    base = [f"resolution={args.resolution}", f"steps={args.steps}"]
    cache = ModelCache()
    print(
        f"clip: {args.frames} frames {width}×{height}, pan {pan} px/frame; style {Path(args.style).name}"
    )
    header = f"{'run':<28}{'temporal_error':>15}{'style':>9}{'content':>9}{'steps/frame':>13}{'s/frame':>9}"
    print(header)

    if not args.skip_independent:
        frames, styles, contents, started = [], [], [], time.perf_counter()
        for index in range(args.frames):
            config = resolve_config(
                None, base, {"content": str(clip / f"{index:04d}.png"), "style": args.style,
                             "output": str(work / "independent" / f"{index:04d}")},
            )  # fmt: skip
            result = stylize(config, overwrite=True, cache=cache)
            frames.append(Image.open(result.final_image).convert("RGB"))
            styles.append(result.losses["style"])
            contents.append(result.losses["content"])
        seconds = (time.perf_counter() - started) / args.frames
        errors = clip_temporal_errors(frames, photos)
        print(
            f"{'independent':<28}{np.mean(errors):>15.3f}{np.mean(styles):>9.4f}"
            f"{np.mean(contents):>9.4f}{args.steps:>13}{seconds:>9.2f}"
        )

    for weight in args.temporal_weight:
        for later in args.later_steps:
            sets = [*base, f"video.steps={later}", f"video.long_term={str(args.long_term).lower()}"]
            if weight is not None:
                sets.append(f"video.temporal_weight={weight}")
            shown = "default" if weight is None else weight
            name = f"video w={shown} steps={later}" + (" long-term" if args.long_term else "")
            out = work / name.replace(" ", "_").replace("=", "")
            config = resolve_config(None, sets, {"content": str(clip), "style": args.style, "output": str(out / "run"), "video.output": str(out / "clip.mp4")})  # fmt: skip
            started = time.perf_counter()
            result = stylize_video(config, overwrite=True, cache=cache)
            seconds = (time.perf_counter() - started) / args.frames
            frames = [
                Image.open(out / "run" / "frames" / f"{i:06d}.png").convert("RGB")
                for i in range(args.frames)
            ]
            errors = clip_temporal_errors(frames, photos)
            with (out / "run" / "video.csv").open() as fh:
                rows = list(csv.DictReader(fh))
            styles = [float(r["style"]) for r in rows]
            contents = [float(r["content"]) for r in rows]
            steps = np.mean([int(r["steps"]) for r in rows[1:]]) if len(rows) > 1 else 0
            print(
                f"{name:<28}{np.mean(errors):>15.3f}{np.mean(styles):>9.4f}"
                f"{np.mean(contents):>9.4f}{steps:>13.0f}{seconds:>9.2f}"
                f"   (first frame {result.first_steps} steps)"
            )
    print(f"frames in {work}")


if __name__ == "__main__":
    main()
