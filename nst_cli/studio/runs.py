"""The runs in the studio's output folder, whichever front end made them: what each is, how
far it got, its newest image and the files the page may offer for download. Links are never
followed, so nothing outside the output folder is shown."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nst_cli.io.rundir import FRAME_PATTERN, RunDir, read_run_config

#: How deep under the output folder runs are looked for: a run, or a run of a sweep or folder run.
DEPTH = 2
#: A stylised frame of a clip's run (io.videodir): frames/000123.png.
CLIP_FRAME = re.compile(r"\d{6,}\.png")
#: Files of a run folder the page offers (frames are shown as the animation instead).
OFFERED = (
    "final.png", "config.yaml", "losses.csv", "losses.png", "optimization.gif",
    "optimization.mp4", "grid.png", "index.html", "summary.csv", "video.mp4", "video.csv",
)  # fmt: skip


@dataclass(frozen=True)
class RunEntry:
    """One run folder as the Runs tab lists it."""

    folder: Path
    name: str
    kind: str
    status: str
    steps_done: int
    settings: dict[str, Any]
    run: dict[str, Any]

    @property
    def image(self) -> Path | None:
        """final.png, else the newest frame; None before the first frame."""
        return newest_image(self.folder)

    @property
    def progress(self) -> str:
        """'step 40' for an image, 'frame 12/48' for a clip."""
        if self.kind == "video":
            return f"frame {self.run.get('frames_done') or 0}/{self.run.get('frames') or '?'}"
        return f"step {self.steps_done}"

    @property
    def caption(self) -> str:
        return f"{self.name} · {self.status} · {self.progress}"

    @property
    def resume_command(self) -> str:
        """The command line that continues this run."""
        command = "video" if self.kind == "video" else "stylize"
        return shlex.join(["nst", command, "--resume", str(self.folder)])

    @property
    def resumable(self) -> bool:
        return self.status != "running"


def list_runs(root: Path) -> list[RunEntry]:
    """Every nst run folder under `root` (DEPTH levels), newest first."""
    root = Path(root)
    found: list[tuple[float, RunEntry]] = []
    if not root.is_dir() or root.is_symlink():
        return []
    for folder in _folders(root, DEPTH):
        entry = read_entry(folder, root)
        if entry is not None:
            found.append((_mtime(folder / "config.yaml"), entry))
    return [entry for _, entry in sorted(found, key=lambda pair: -pair[0])]


def _folders(root: Path, depth: int) -> list[Path]:
    folders = []
    try:
        children = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return []
    for child in children:
        if child.is_dir(follow_symlinks=False) and not child.name.startswith("."):
            folders.append(Path(child.path))
            if depth > 1:
                folders += _folders(Path(child.path), depth - 1)
    return folders


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def read_entry(folder: Path, root: Path) -> RunEntry | None:
    """The run in `folder` (a config.yaml nst wrote, itself no link), or None."""
    config = folder / "config.yaml"
    if config.is_symlink() or not config.is_file():
        return None
    found = read_run_config(config)
    if found is None or "nst_version" not in found[1]:
        return None
    settings, run = found
    return RunEntry(
        folder=folder,
        name=str(folder.relative_to(root)),
        kind=str(run.get("kind") or "image"),
        status=str(run.get("status") or "unknown"),
        steps_done=int(run.get("steps_done") or 0),
        settings=settings,
        run=run,
    )


def newest_image(folder: Path) -> Path | None:
    """The run's final.png, else its newest frame (a run still going), else None."""
    run_dir = RunDir(folder)
    if _own_file(run_dir.final):
        return run_dir.final
    if run_dir.frames.is_dir() and not run_dir.frames.is_symlink():
        frames = sorted(
            p for p in run_dir.frames.iterdir()
            if FRAME_PATTERN.fullmatch(p.name) or CLIP_FRAME.fullmatch(p.name)
        )  # fmt: skip
        for frame in reversed(frames):
            if _own_file(frame):
                return frame
    return None


def offered_files(folder: Path) -> list[Path]:
    """The run's files the page offers for download: regular files, no links."""
    return [folder / name for name in OFFERED if _own_file(folder / name)]


def _own_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()
