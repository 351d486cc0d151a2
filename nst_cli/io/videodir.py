"""A video run's folder: one PNG per stylised frame, the per-frame log, config.yaml.

    <run>/config.yaml        settings + `run:` (status, frames done, the clip's frame rate)
    <run>/frames/000123.png  each stylised frame as the user sees it
    <run>/raw/000123.png     the optimised frame before the photo's colours went back in
                             (`color: luminance` only): what the next frame starts from
    <run>/video.csv          per frame: steps, seconds, losses, temporal_error
    <run>/video.mp4          the clip (unless `-o` put it elsewhere)

Like RunDir, it only ever replaces or deletes files it can prove nst wrote."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

from nst_cli.errors import OutputError
from nst_cli.io.rundir import FRAME_DIGITS, RunDir, is_nst_config, is_nst_png

#: Exactly the frame names a video run writes.
VIDEO_FRAME = re.compile(r"\d{" + str(FRAME_DIGITS) + r",}\.png")
#: Temp files of atomic writes (io.files.atomic_open) at a video run's names.
VIDEO_TEMP = re.compile(
    r"\.(config\.yaml|video\.csv|\d{" + str(FRAME_DIGITS) + r",}\.png)\.[A-Za-z0-9_]{8}\.tmp"
)
#: The first line of video.csv (its columns).
VIDEO_COLUMNS = (
    "frame", "steps", "seconds", "total", "content", "style", "temporal", "temporal_error",
)  # fmt: skip


def video_frame_name(index: int) -> str:
    return f"{index:0{FRAME_DIGITS}d}.png"


@dataclass(frozen=True)
class VideoDir(RunDir):
    """Paths of one video run's outputs."""

    @property
    def raw(self) -> Path:
        return self.root / "raw"

    @property
    def log(self) -> Path:
        return self.root / "video.csv"

    @property
    def default_clip(self) -> Path:
        return self.root / "video.mp4"

    def frame(self, index: int) -> Path:
        return self.frames / video_frame_name(index)

    def raw_frame(self, index: int) -> Path:
        return self.raw / video_frame_name(index)

    def frames_done(self) -> int:
        """How many frames, from the first, nst has written without a gap (a resume starts at
        the first missing one); a PNG placed at a frame's name is not one of them."""
        index = 0
        while self.frame(index).is_file() and is_nst_png(self.frame(index)):
            index += 1
        return index

    def previous_outputs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        self.check_own_folders()
        found = [p for p in (self.config, self.log, self.default_clip) if p.is_file()]
        for folder in (self.frames, self.raw):
            if folder.is_dir():
                found += sorted(p for p in folder.iterdir() if VIDEO_FRAME.fullmatch(p.name))
        return found

    def foreign_files(self) -> list[Path]:
        own_config = is_nst_config(self.config)
        foreign = []
        for path in self.previous_outputs():
            if path.suffix == ".png":
                mine = is_nst_png(path)
            elif path == self.log:
                mine = _is_video_log(path)
            else:  # config.yaml, and the clip: nst's if config.yaml is
                mine = own_config
            if not mine:
                foreign.append(path)
        return foreign

    def check_own_folders(self) -> None:
        super().check_own_folders()
        if self.raw.is_symlink():
            raise OutputError(
                f"{self.raw} is a symbolic link, not a folder nst made; nst will not write or "
                "delete through it: remove the link, or choose another --output"
            )

    def create_raw(self) -> None:
        self.check_own_folders()
        try:
            self.raw.mkdir(exist_ok=True)
        except OSError as exc:
            raise OutputError(f"output folder {self.root}: cannot create raw/ ({exc})") from None

    def remove_orphaned_temps(self) -> list[Path]:
        removed = []
        for folder in (self.root, self.frames, self.raw):
            if not folder.is_dir() or folder.is_symlink():
                continue
            for path in folder.iterdir():
                if VIDEO_TEMP.fullmatch(path.name) and path.is_file() and not path.is_symlink():
                    with contextlib.suppress(OSError):
                        path.unlink()
                        removed.append(path)
        return removed


def _is_video_log(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as fh:
            return tuple(fh.readline().strip().split(",")) == VIDEO_COLUMNS
    except (OSError, UnicodeDecodeError):
        return False
