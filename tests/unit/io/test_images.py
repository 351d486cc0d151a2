"""Every kind of odd input image: one clear ImageError, or a sensible conversion with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst_cli.core.pixels import resize_long_side, to_pil, to_tensor
from nst_cli.errors import ImageError
from nst_cli.io.images import load_image
from tests.conftest import make_image


def test_missing_directory_empty_and_text_files(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "nope.png", "content")
    with pytest.raises(ImageError, match="is a directory"):
        load_image(tmp_path, "content")
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(ImageError, match="file is empty"):
        load_image(empty, "style")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a jpeg\n")
    with pytest.raises(ImageError, match="not an image Pillow can read"):
        load_image(text, "style")


def test_truncated_jpeg(tmp_path: Path) -> None:
    full = make_image(tmp_path / "full.jpg", (64, 64))
    data = full.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="damaged or truncated"):
        load_image(cut, "content")


def test_animated_gif_takes_first_frame(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames = [Image.new("RGB", (20, 10), c) for c in ((255, 0, 0), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    with caplog.at_level(logging.WARNING, logger="nst_cli"):
        image = load_image(path, "style")
    assert image.mode == "RGB" and image.size == (20, 10)
    assert image.getpixel((5, 5))[0] > 200  # red: the first frame
    assert "2 frames; using the first" in caplog.text


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16", "1"])
def test_modes_become_rgb(tmp_path: Path, mode: str) -> None:
    suffix = ".jpg" if mode == "CMYK" else ".png"
    base = Image.new("RGB", (16, 12), (100, 150, 200))
    if mode == "I;16":
        array = np.full((12, 16), 40000, dtype=np.uint16)
        image = Image.fromarray(array)
    else:
        image = base.convert(mode)
    path = tmp_path / f"img{suffix}"
    image.save(path)
    loaded = load_image(path, "content")
    assert loaded.mode == "RGB" and loaded.size == (16, 12)
    if mode == "I;16":  # 16-bit values are scaled, not clipped: 40000/65535 ≈ 156
        assert loaded.getpixel((0, 0)) == (156, 156, 156)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_transparency_composited_on_white(
    tmp_path: Path, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    image = Image.new("RGBA", (8, 8), (0, 0, 0, 0)).convert(mode)
    path = tmp_path / "alpha.png"
    image.save(path)
    with caplog.at_level(logging.WARNING, logger="nst_cli"):
        loaded = load_image(path, "style")
    assert loaded.getpixel((0, 0)) == (255, 255, 255)
    assert "composited on white" in caplog.text


def test_exif_orientation_is_honoured(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 0, 0), (0, 0, 10, 20))  # red strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif, quality=95)
    loaded = load_image(path, "content")
    assert loaded.size == (20, 40)
    assert loaded.getpixel((10, 2))[0] > 200  # the red strip is now at the top


def test_decompression_bomb_refused_unless_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = make_image(tmp_path / "big.png", (200, 200))
    monkeypatch.setattr("nst_cli.io.images.MAX_PIXELS", 10_000)
    with pytest.raises(ImageError, match="over the 10,000-pixel limit.*--allow-large"):
        load_image(path, "content")
    assert load_image(path, "content", allow_large=True).size == (200, 200)


def test_resize_keeps_aspect_and_tensor_round_trip(tmp_path: Path) -> None:
    image = Image.open(make_image(tmp_path / "a.png", (300, 200))).convert("RGB")
    small = resize_long_side(image, 60)
    assert small.size == (60, 40)
    tall = resize_long_side(image.rotate(90, expand=True), 60)
    assert tall.size == (40, 60)
    tensor = to_tensor(small)
    assert tensor.shape == (1, 3, 40, 60) and tensor.is_contiguous()
    assert tensor.min() >= 0 and tensor.max() <= 1
    assert np.array_equal(np.asarray(to_pil(tensor)), np.asarray(small))
    assert to_pil(torch.full((1, 3, 2, 2), 7.0)).getpixel((0, 0)) == (255, 255, 255)


def test_a_frame_is_encoded_without_torch_arithmetic() -> None:
    """Frames are encoded on a background thread; a torch kernel run there starts a second
    OpenMP thread pool, which slowed every later step of the run by ~8% on a 2-core CPU.
    to_pil on a CPU float32 tensor must only take views; the arithmetic is numpy's."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Ops(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(func.__name__)
            return func(*args, **(kwargs or {}))

    image = torch.linspace(-0.5, 1.5, 3 * 4 * 5).reshape(1, 3, 4, 5)
    with Ops() as seen:
        pil = to_pil(image)
    assert {name.split(".")[0] for name in seen.ops} <= {"detach", "squeeze", "permute", "alias"}
    expected = (image.clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(np.asarray(pil), expected)


def test_a_dark_16_bit_grey_png_stays_dark(tmp_path: Path) -> None:
    """Every value ≤ 255 of 65535: the file says 16 bits, so it is near black, not read as
    8-bit and 257× too bright (the old rule guessed the depth from the values)."""
    values = (np.arange(48 * 64).reshape(48, 64) % 256).astype(np.uint16)
    path = tmp_path / "dark16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # a real 16-bit file
    loaded = np.asarray(load_image(path, "content"))
    assert loaded.max() <= 1  # 255/65535 of white is 1/255
    bright = tmp_path / "bright16.png"
    Image.fromarray((values.astype(np.uint32) * 257).astype(np.uint16)).save(bright)
    assert np.asarray(load_image(bright, "content")).max() == 255
