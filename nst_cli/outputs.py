"""The run folder and every file in it, written atomically.

A crash, a full disk or Ctrl-C never leaves a half-written file: each write goes to a temp
file in the same folder and is renamed over the target only when complete.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import re
import tempfile

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not guarded
    fcntl = None  # type: ignore[assignment]
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml
from PIL import Image, PngImagePlugin

from .config import fill_introduced
from .errors import OutputError

FRAME_DIGITS = 6
#: The file a running nst holds locked inside its run folder (see RunDir.lock).
LOCK_NAME = ".nst.lock"
#: losses.csv columns; `scale` is the long side (px) the step ran at in a coarse-to-fine run.
LOSS_COLUMNS = ("step", "scale", "elapsed_s", "total", "content", "style", "tv")
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


def _is_nst_config(path: Path) -> bool:
    """config.yaml written by nst: it has the `run:` section with the tool version."""
    found = read_run_config(path)
    return found is not None and "nst_version" in found[1]


def png_header(path: Path) -> tuple[tuple[int, int], dict[str, Any]] | None:
    """An image's size and text metadata from its header, no pixel decoded; None if unreadable.

    Pillow's decompression-bomb check is off here (nothing is decoded, and its warning would
    leak into the output): callers that go on to decode check the size themselves."""
    if not Path(path).is_file():  # a FIFO would block the open forever
        return None
    previous_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            return image.size, dict(image.info)
    except (OSError, ValueError, SyntaxError):
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit


def _is_nst_png(path: Path) -> bool:
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


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


@contextlib.contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temp file beside `path`; rename it over `path` only if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path.parent}: cannot write here ({_describe(exc)})") from None
    try:
        binary = "b" in mode
        with (
            os.fdopen(fd, mode)
            if binary
            else os.fdopen(fd, mode, encoding="utf-8", newline="") as fh
        ):
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp makes files readable by the owner only; outputs get the usual permissions.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise OutputError(
            f"{path}: write failed ({_describe(exc)}); earlier files are kept"
        ) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


@functools.cache
def _umask() -> int:
    """The process umask, read without changing it where Linux tells it (/proc), else by
    setting and restoring it once, at the first write rather than at import."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_text(path: Path, text: str) -> None:
    """Atomically write a text file."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_bytes(path: Path, data: bytes) -> None:
    """Atomically write a binary file."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def save_png(image: Image.Image, path: Path, text: Mapping[str, str] | None = None) -> None:
    """Atomically save a PNG, with `text` stored as PNG text chunks (provenance)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (text or {}).items():
        info.add_itxt(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=6)
    write_bytes(path, buffer.getvalue())


def save_image(image: Image.Image, path: Path, text: Mapping[str, str] | None = None) -> None:
    """Atomically save in the format the suffix names: PNG keeps `text` (provenance), JPEG is
    written at quality 95, TIFF and WebP losslessly."""
    suffix = path.suffix.lower()
    if suffix == ".png":
        save_png(image, path, text)
        return
    buffer = io.BytesIO()
    if suffix in (".jpg", ".jpeg"):
        image.convert("RGB").save(buffer, format="JPEG", quality=95)
    elif suffix == ".webp":
        image.save(buffer, format="WEBP", lossless=True)
    else:
        image.save(buffer, format="TIFF", compression="tiff_deflate")
    write_bytes(path, buffer.getvalue())


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
        own = (self.config, self.final, self.losses, self.loss_plot, self.checkpoint)
        found = [p for p in own if p.is_file()]
        if self.frames.is_dir():
            found += sorted(p for p in self.frames.iterdir() if FRAME_PATTERN.fullmatch(p.name))
        return found

    def foreign_files(self) -> list[Path]:
        """Files at nst's names that nst cannot prove it wrote: never to be replaced or deleted."""
        own_config = _is_nst_config(self.config)
        foreign = []
        for path in self.previous_outputs():
            if path == self.config:
                mine = own_config
            elif path.suffix == ".png":
                mine = _is_nst_png(path)
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
                raise OutputError(f"{path}: cannot remove it ({_describe(exc)})") from None

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an OS lock on the folder for a whole run: a second nst process that wants to
        write here fails at once instead of mixing its files in. The kernel drops the lock
        when the process ends, a crash included."""
        self.create()
        path = self.root / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"{path}: cannot create the run lock ({_describe(exc)})") from None
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise OutputError(
                        f"output folder {self.root} is in use by another nst process; wait for "
                        "it to finish or choose another --output"
                    ) from None
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def create(self) -> None:
        """Make the folder (and frames/), or fail with one clear line."""
        try:
            self.frames.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(
                f"output folder {self.root}: cannot create it ({_describe(exc)}); "
                "choose another with --output"
            ) from None
        if not os.access(self.root, os.W_OK):
            raise OutputError(
                f"output folder {self.root}: not writable; choose another with --output"
            )


def write_loss_rows(path: Path, rows: Sequence[Mapping[str, float]]) -> None:
    """Atomically (re)write losses.csv with every row so far."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOSS_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k, 0.0)) for k in LOSS_COLUMNS})
    write_text(path, buffer.getvalue())


def read_loss_rows(path: Path) -> list[dict[str, float]]:
    """Rows of an existing losses.csv (empty if there is none)."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as fh:
        return [
            {k: float(v) for k, v in row.items() if k in LOSS_COLUMNS} for row in csv.DictReader(fh)
        ]


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"
