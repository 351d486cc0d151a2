"""Images the page sends: checked as the CLI checks its inputs (size, format, damage: one
line), then kept under the output folder by content, so a run's config.yaml names a file that
stays (the browser's upload cache is temporary) and the same image uploaded twice is one file.
A sample sent back by the page is recognised and named by its own path."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from nst_cli.config.choices import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from nst_cli.errors import ImageError
from nst_cli.io.images import SIZE_WAY_OUT, load_image

#: What the studio says instead of the CLI's way past the size limit (it has no such flag).
STUDIO_WAY_OUT = "shrink it, or stylise it with `nst stylize --allow-large` in a terminal"

#: The clips the Video tab takes: what `nst video` reads (a folder of frames is the CLI's).
CLIP_SUFFIXES = (*VIDEO_SUFFIXES, ".mov", ".mkv", ".avi")

#: Where uploads are kept, under the studio's output folder.
UPLOADS = Path(".studio") / "uploads"


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes (the name an upload is kept under)."""
    sha = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def sample_files(folder: Path | None, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """The images (or clips) in the samples folder; none without one."""
    if folder is None or not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in suffixes and p.is_file() and not p.is_symlink()
    )  # fmt: skip


class Uploads:
    """The uploads of one studio, and the samples it offers."""

    def __init__(self, output: Path, samples: Path | None) -> None:
        self.folder = Path(output) / UPLOADS
        self.samples = sample_files(samples)
        self.clips = sample_files(samples, CLIP_SUFFIXES)
        self._samples_by_digest: dict[str, Path] | None = None

    def adopt(self, sent: str | Path | None, role: str) -> Path:
        """The file a run should read for the image the page sent as `role` ("content" or
        "style"): a sample's own path, or a kept copy of the upload. ImageError (one line)
        for a file nst would refuse."""
        if sent is None or str(sent) == "":
            what = "photo" if role == "content" else "painting"
            raise ImageError(f"{role}: no {what} given; upload one or pick a sample")
        path = Path(sent)
        try:
            load_image(path, role)  # the CLI's checks: size limit, format, damage
        except ImageError as exc:  # said with the name the user gave the file, and no CLI flag
            text = str(exc).replace(str(path), path.name)
            raise ImageError(text.replace(SIZE_WAY_OUT, STUDIO_WAY_OUT)) from None
        return self._keep(path)

    def adopt_clip(self, sent: str | Path | None) -> Path:
        """The kept copy of an uploaded clip (a sample clip by its own path); the run checks
        it as `nst video` does (frame size, length, a video stream)."""
        if sent is None or str(sent) == "":
            raise ImageError("content: no clip given; upload one or pick the sample clip")
        path = Path(sent)
        if path.suffix.lower() not in CLIP_SUFFIXES:
            raise ImageError(
                f"{path.name}: not a clip nst reads ({', '.join(CLIP_SUFFIXES)}); convert it first"
            )
        return self._keep(path)

    def _keep(self, path: Path) -> Path:
        """A sample's own path, else a copy under the uploads folder named by its digest."""
        found = digest(path)
        sample = self._by_digest().get(found)
        if sample is not None:
            return sample
        suffix = path.suffix.lower() or ".png"
        kept = self.folder / f"{found[:16]}{suffix}"
        if not kept.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = kept.with_name(f".{kept.name}.part")
            shutil.copyfile(path, partial)
            partial.replace(kept)
        return kept

    def _by_digest(self) -> dict[str, Path]:
        if self._samples_by_digest is None:
            self._samples_by_digest = {digest(p): p for p in [*self.samples, *self.clips]}
        return self._samples_by_digest
