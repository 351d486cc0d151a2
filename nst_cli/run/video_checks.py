"""What a clip must be before `nst video` starts: readable, with a painting, its folder
free to write (or resumable), and room on the disk for its frames."""

from __future__ import annotations

import shutil
from pathlib import Path

from nst_cli.config.models import Config
from nst_cli.core.pixels import fit_long_side
from nst_cli.errors import ConfigError, OutputError
from nst_cli.io.rundir import read_run_config
from nst_cli.io.video import Clip, open_clip
from nst_cli.io.videodir import VideoDir
from nst_cli.run.resume import refuse_replacing

#: A stylised frame takes about this many bytes per pixel as PNG (painterly texture
#: compresses poorly), for the disk check before a clip starts.
PNG_BYTES_PER_PIXEL = 2.2


def check_clip(config: Config, allow_large: bool) -> tuple[Clip, int]:
    if config.content is None:
        raise ConfigError("content: no clip given; pass the video (or folder of frames) first")
    if not config.style_images:
        raise ConfigError("style: no style image given; pass --style painting.jpg")
    for spec in config.style_images:
        if not Path(spec.path).is_file():
            raise ConfigError(f"style image {spec.path}: file not found")
    clip = open_clip(config.content, config.video.fps, allow_large)
    count = min(clip.count, config.video.max_frames or clip.count)
    return clip, count


def check_same_clip(run_dir: VideoDir, config: Config, clip: Clip, count: int) -> None:
    """A resumed run's clip must be the one it started on: frames of another size cannot
    continue its frames, and a shorter clip would end it as `completed` with fewer frames."""
    saved = read_run_config(run_dir.config)
    if saved is None:
        return
    run = saved[1]
    size = list(fit_long_side(clip.size, config.resolution))
    recorded_size, recorded_count = run.get("size"), run.get("frames")
    if isinstance(recorded_size, list) and recorded_size != size:
        raise ConfigError(
            f"--resume {run_dir.root}: the clip {config.content} changed since the run began "
            f"(its frames come out {size[0]}×{size[1]} now, {recorded_size[0]}×"
            f"{recorded_size[1]} then); restore it, or start over with --overwrite"
        )
    if isinstance(recorded_count, int) and count < recorded_count:
        raise ConfigError(
            f"--resume {run_dir.root}: the clip {config.content} has {count} frames now, "
            f"{recorded_count} when the run began; restore it, or start over with --overwrite"
        )


def clip_output(config: Config) -> Path:
    """Where the clip goes: `video.output`, else video.mp4 in the run folder."""
    return config.video.output or VideoDir(config.output_dir).default_clip


def check_video_folder(run_dir: VideoDir, config: Config, resume: bool, overwrite: bool) -> None:
    """A folder with a run in it is continued (`resume`), replaced (`overwrite`, or a finished
    run of the same command), or refused; files nst did not write are never touched."""
    check_clip_output(run_dir, config, resume, overwrite)
    if resume:
        if not run_dir.config.is_file():
            raise ConfigError(f"--resume {run_dir.root}: no video run there (no config.yaml)")
        saved = read_run_config(run_dir.config)
        if saved is None or saved[1].get("kind") != "video":
            raise ConfigError(
                f"--resume {run_dir.root}: not a video run folder (resume an image run with "
                "nst stylize --resume)"
            )
        return
    previous = run_dir.previous_outputs()
    if not previous:
        return
    foreign = run_dir.foreign_files()
    if foreign:
        raise OutputError(
            f"{foreign[0]}: not a file nst wrote, at a name a video run writes; move it or "
            "choose another --output"
        )
    if not overwrite:  # a finished run is replaced silently only if this command made it
        refuse_replacing(run_dir, config, "video")
    saved = read_run_config(run_dir.config)
    finished = saved is not None and saved[1].get("status") == "completed"
    if not (overwrite or finished):
        raise OutputError(
            f"{run_dir.root} holds an unfinished video run; continue it with nst video --resume "
            f"{run_dir.root}, or replace it with --overwrite"
        )


def check_clip_output(run_dir: VideoDir, config: Config, resume: bool, overwrite: bool) -> None:
    """The clip never replaces its own input, nor a file this run folder did not write
    (unless --overwrite says so)."""
    output = clip_output(config).expanduser().resolve()
    if config.content is not None and output == Path(config.content).expanduser().resolve():
        raise ConfigError(f"-o {clip_output(config)}: that is the input clip; choose another -o")
    if output.is_dir():  # found now, not after every frame is stylised
        raise OutputError(
            f"-o {clip_output(config)}: a folder is there; name a clip file (e.g. "
            f"{clip_output(config).with_suffix('')}_styled.mp4) or move the folder"
        )
    if resume or overwrite or not output.exists():
        return
    saved = read_run_config(run_dir.config) if run_dir.config.is_file() else None
    recorded = saved[1].get("clip") if saved is not None else None
    if recorded is None or Path(str(recorded)).expanduser().resolve() != output:
        raise OutputError(
            f"{clip_output(config)} already exists and no nst run here wrote it; choose another "
            "-o, or pass --overwrite to replace it"
        )


def check_disk(run_dir: VideoDir, config: Config, clip: Clip, frames: int) -> None:
    """Refuse a clip whose frames would not fit on the disk, before any work."""
    width, height = fit_long_side(clip.size, config.resolution)
    copies = 2 if config.color == "luminance" else 1
    needed = frames * width * height * PNG_BYTES_PER_PIXEL * (copies + 0.3)  # + the clip
    free = shutil.disk_usage(run_dir.root).free
    if needed > free:
        raise OutputError(
            f"{frames:,} frames at {width}×{height} need about {human_size(needed)} in "
            f"{run_dir.root}, and {human_size(free)} is free; free space, lower "
            "--resolution or set video.max_frames (--allow-large skips this check)"
        )


def human_size(count: float) -> str:
    """Bytes for a person: 1.2 GiB, 340 MiB, 12 kiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("kiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{int(count)} B"
