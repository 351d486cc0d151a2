"""The run folder: which files in it are nst's, its lock, and what overwriting may replace."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import filelock
import yaml

from nst_cli.config.choices import fill_introduced
from nst_cli.errors import OutputError
from nst_cli.io.files import describe_os_error, png_header

FRAME_DIGITS = 6
#: The file a running nst holds locked inside its run folder (see RunDir.lock).
LOCK_NAME = ".nst.lock"
#: The temp files atomic writes make beside nst's own files (io.files.atomic_open):
#: `.<name>.<8 random characters>.tmp`.
TEMP_PATTERN = re.compile(
    r"\.(config\.yaml|final\.png|losses\.csv|losses\.png|checkpoint\.pt|step_\d{6,}\.png)"
    r"\.[A-Za-z0-9_]{8}\.tmp"
)
#: Exactly the frame names nst writes; a user's frames/step_1.png is not one of them.
FRAME_PATTERN = re.compile(r"step_\d{" + str(FRAME_DIGITS) + r",}\.png")


def read_run_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A run folder's config.yaml as (settings, `run:` section); None if absent, too big
    (a config.yaml nst writes is a few kB) or unreadable. Keys added since the run was saved
    have the value it had (config.INTRODUCED)."""
    try:
        if path.stat().st_size > 1_000_000:
            return None
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None
    if not isinstance(saved, dict):
        return None
    run = saved.pop("run", None)
    fill_introduced(saved)
    return saved, run if isinstance(run, dict) else {}


def is_nst_config(path: Path) -> bool:
    """config.yaml written by nst: it has the `run:` section with the tool version."""
    found = read_run_config(path)
    return found is not None and "nst_version" in found[1]


def is_nst_png(path: Path) -> bool:
    """A PNG nst wrote carries its version in the text metadata."""
    header = png_header(path)
    return header is not None and "nst:version" in header[1]


def _is_nst_loss_log(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8") as fh:
            header = fh.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return False
    return header[:1] == ["step"] and {"total", "content", "style"} <= set(header)


def frame_name(step: int) -> str:
    """frames/step_000050.png: zero-padded so names sort in step order."""
    return f"step_{step:0{FRAME_DIGITS}d}.png"


@dataclass(frozen=True)
class RunDir:
    """Paths of one run's outputs."""

    root: Path

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def final(self) -> Path:
        return self.root / "final.png"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def losses(self) -> Path:
        return self.root / "losses.csv"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def loss_plot(self) -> Path:
        return self.root / "losses.png"

    def frame(self, step: int) -> Path:
        return self.frames / frame_name(step)

    def previous_outputs(self) -> list[Path]:
        """Files at the names nst writes (what a new run would mix with or overwrite)."""
        if not self.root.is_dir():
            return []
        self.check_own_folders()
        own = (self.config, self.final, self.losses, self.loss_plot, self.checkpoint)
        found = [p for p in own if p.is_file()]
        if self.frames.is_dir():
            found += sorted(p for p in self.frames.iterdir() if FRAME_PATTERN.fullmatch(p.name))
        return found

    def foreign_files(self) -> list[Path]:
        """Files at nst's names that nst cannot prove it wrote: never to be replaced or deleted."""
        own_config = is_nst_config(self.config)
        foreign = []
        for path in self.previous_outputs():
            if path == self.config:
                mine = own_config
            elif path.suffix == ".png":
                mine = is_nst_png(path)
            elif path == self.losses:
                mine = _is_nst_loss_log(path)
            else:  # checkpoint.pt: nst's if the folder's config.yaml is
                mine = own_config
            if not mine:
                foreign.append(path)
        return foreign

    def clear(self) -> None:
        """Remove a previous run's outputs: only files nst provably wrote (anything else stays)."""
        foreign = self.foreign_files()
        for path in self.previous_outputs():
            if path in foreign:
                continue
            try:
                path.unlink()
            except OSError as exc:
                raise OutputError(f"{path}: cannot remove it ({describe_os_error(exc)})") from None

    def remove_orphaned_temps(self) -> list[Path]:
        """Remove the temp files of atomic writes a killed nst left here (a checkpoint's can be
        over a gigabyte): only regular files named exactly as nst names them. Call it under
        the lock, so no live writer's temp file is taken. Returns what was removed."""
        removed = []
        for folder in (self.root, self.frames):
            if not folder.is_dir() or folder.is_symlink():
                continue
            for path in folder.iterdir():
                if TEMP_PATTERN.fullmatch(path.name) and path.is_file() and not path.is_symlink():
                    with contextlib.suppress(OSError):
                        path.unlink()
                        removed.append(path)
        return removed

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an OS lock on the folder for a whole run: a second nst process that wants to
        write here fails at once instead of mixing its files in. The kernel drops the lock
        when the process ends, a crash included. A run refused or failed before it wrote
        anything leaves no empty folder behind: what this call made is removed if still empty."""
        made = [folder for folder in (self.root, self.frames) if not folder.exists()]
        self.create()
        try:
            with folder_lock(self.root):
                yield
        except BaseException:
            for folder in reversed(made):  # frames/ first, then the run folder
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only an empty one
            raise

    def check_own_folders(self) -> None:
        """frames/ must be nst's own folder: a symbolic link there (into another run, say)
        would let a run write or --overwrite delete behind it. Refused, nothing touched."""
        if self.frames.is_symlink():
            raise OutputError(
                f"{self.frames} is a symbolic link, not a folder nst made; nst will not write "
                "or delete through it: remove the link, or choose another --output"
            )

    def create(self) -> None:
        """Make the folder (and frames/), or fail with one clear line."""
        self.check_own_folders()
        try:
            self.frames.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"output folder {self.root}: cannot create it ({describe_os_error(exc)}); "
                "choose another with --output"
            ) from None
        if not os.access(self.root, os.W_OK):
            raise OutputError(
                f"output folder {self.root}: not writable; choose another with --output"
            )


@contextlib.contextmanager
def folder_lock(folder: Path, name: str = LOCK_NAME) -> Iterator[None]:
    """Hold an OS lock on `folder` (its file `name`, removed when released): a second nst
    process that wants to write there fails at once with one line. A symbolic link at the
    lock's name is refused: opening it would create or lock whatever it points to."""
    path = folder / name
    if path.is_symlink():
        raise OutputError(
            f"{path} is a symbolic link, not nst's lock file; remove it and run again"
        )
    lock = _acquire(folder, path)
    try:
        yield
    finally:
        # Removed before it is released: a process that opened it meanwhile finds, once it
        # holds it, that the file is gone, and tries again on a new one (see _acquire).
        with contextlib.suppress(OSError):
            path.unlink()
        lock.release()  # the OS drops it too when the process ends, a crash included


def _acquire(folder: Path, path: Path) -> filelock.BaseFileLock:
    """The lock, held on the file that is at `path` now (a lock taken on a file that its
    previous holder removed would guard nothing)."""
    busy = f"{folder} is in use by another nst process; wait for it to finish or choose another --output"
    for _ in range(3):
        lock = filelock.FileLock(path, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            raise OutputError(busy) from None
        except OSError as exc:
            raise OutputError(
                f"{path}: cannot create the lock ({describe_os_error(exc)})"
            ) from None
        try:
            held = os.fstat(lock._context.lock_file_fd or -1).st_ino
            if os.stat(path).st_ino == held:
                return lock
        except OSError:
            pass
        lock.release()
    raise OutputError(busy)
