"""Images the page sends: checked as the CLI checks its inputs (size, format, damage: one
line), then kept under the output folder by content, so a run's config.yaml names a file that
stays (the browser's upload cache is temporary) and the same image uploaded twice is one file.
A sample sent back by the page is recognised and named by its own path."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from nst_cli.config.choices import IMAGE_SUFFIXES
from nst_cli.errors import ImageError
from nst_cli.io.images import SIZE_WAY_OUT, load_image

#: What the studio says instead of the CLI's way past the size limit (it has no such flag).
STUDIO_WAY_OUT = "shrink it, or stylise it with `nst stylize --allow-large` in a terminal"

#: Where uploads are kept, under the studio's output folder.
UPLOADS = Path(".studio") / "uploads"


def digest(path: Path) -> str:
    """SHA-256 of a file's bytes (the name an upload is kept under)."""
    sha = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def sample_images(folder: Path | None) -> list[Path]:
    """The images in the samples folder (none without one)."""
    if folder is None or not folder.is_dir():
        return []
    return sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and not p.is_symlink()
    )  # fmt: skip


class Uploads:
    """The uploads of one studio, and the samples it offers."""

    def __init__(self, output: Path, samples: Path | None) -> None:
        self.folder = Path(output) / UPLOADS
        self.samples = sample_images(samples)
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
        found = digest(path)
        sample = self._by_digest().get(found)
        if sample is not None:
            return sample
        suffix = path.suffix.lower() if path.suffix.lower() in IMAGE_SUFFIXES else ".png"
        kept = self.folder / f"{found[:16]}{suffix}"
        if not kept.is_file():
            self.folder.mkdir(parents=True, exist_ok=True)
            partial = kept.with_name(f".{kept.name}.part")
            shutil.copyfile(path, partial)
            partial.replace(kept)
        return kept

    def _by_digest(self) -> dict[str, Path]:
        if self._samples_by_digest is None:
            self._samples_by_digest = {digest(p): p for p in self.samples}
        return self._samples_by_digest
