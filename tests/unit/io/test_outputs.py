"""The run folder's files: atomic writes with the usual permissions, images in the format
their name asks for, and the list of what nst itself wrote."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from nst_cli.io.files import save_image, save_png, write_bytes
from nst_cli.io.rundir import RunDir


def test_files_get_the_umask_permissions_not_mkstemps(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_bytes(tmp_path / "a.bin", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("name", "fmt"), [("r.png", "PNG"), ("r.jpg", "JPEG"), ("r.tif", "TIFF"), ("r.webp", "WEBP")]
)
def test_save_image_writes_the_format_its_name_asks_for(tmp_path: Path, name: str, fmt: str):
    save_image(Image.new("RGB", (8, 6), (10, 200, 30)), tmp_path / name, {"nst:version": "t"})
    with Image.open(tmp_path / name) as image:
        assert image.format == fmt and image.size == (8, 6)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no temp file left


def test_previous_outputs_are_nsts_names_only(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    (tmp_path / "frames").mkdir()
    save_png(Image.new("RGB", (4, 4)), run.frame(0), {"nst:version": "t"})
    save_png(Image.new("RGB", (4, 4)), run.loss_plot, {"nst:version": "t"})
    (tmp_path / "frames" / "step_1.png").write_bytes(b"mine")
    (tmp_path / "notes.txt").write_text("mine")
    names = sorted(p.name for p in run.previous_outputs())
    assert names == ["losses.png", "step_000000.png"]
