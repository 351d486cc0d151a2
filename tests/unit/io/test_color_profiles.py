"""Photos tagged with another colour space (Display P3 from phones) load as the colours they
show, converted to sRGB; every image nst writes says it is sRGB."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from nst_cli.io.files import save_image, save_png
from nst_cli.io.images import load_image

#: Display P3's primaries and white, adapted to the ICC's D50 (as Apple's profile has them).
P3 = {"rXYZ": (0.5151, 0.2412, -0.0011), "gXYZ": (0.2920, 0.6922, 0.0419),
      "bXYZ": (0.1571, 0.0666, 0.7841), "wtpt": (0.9642, 1.0, 0.8249)}  # fmt: skip


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def display_p3_profile(gamma: float = 2.2) -> bytes:
    """A minimal ICC v2 matrix/TRC display profile with Display P3's primaries, built here
    (the test needs no profile file): header, tag table, XYZ and curve tags, a description."""
    tags: list[tuple[bytes, bytes]] = []
    text = b"Display P3 (test)\x00"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(4 + 4 + 2 + 1 + 67)
    tags.append((b"desc", desc))
    for name, xyz in P3.items():
        tags.append((name.encode(), b"XYZ " + bytes(4) + b"".join(_s15(v) for v in xyz)))
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    tags += [(b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)]
    tags.append((b"cprt", b"text" + bytes(4) + b"none\x00" + bytes(3)))
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, data = struct.pack(">I", len(tags)), b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = 128 + table_size + len(data)
    header = (
        struct.pack(">I", size) + bytes(4) + struct.pack(">I", 0x02100000) + b"mntr"
        + b"RGB " + b"XYZ " + bytes(12) + b"acsp" + bytes(4 * 6) + struct.pack(">I", 0)
        + b"".join(_s15(v) for v in P3["wtpt"]) + bytes(4) + bytes(16) + bytes(28)
    )  # fmt: skip
    assert len(header) == 128
    return header + table + data


def test_a_display_p3_photo_loads_as_the_colours_it_shows(tmp_path: Path) -> None:
    profile = display_p3_profile()
    ImageCms.ImageCmsProfile(io.BytesIO(profile))  # a profile LittleCMS reads
    colour = (180, 60, 60)  # a red that P3 numbers make more saturated than sRGB ones
    path = tmp_path / "phone.png"
    Image.new("RGB", (16, 16), colour).save(path, icc_profile=profile)
    loaded = np.asarray(load_image(path, "content"))[0, 0].astype(int)
    assert loaded[0] > colour[0] + 8 and loaded[1] < colour[1] - 4  # wider gamut, redder
    untagged = tmp_path / "plain.png"
    Image.new("RGB", (16, 16), colour).save(untagged)
    assert tuple(np.asarray(load_image(untagged, "content"))[0, 0]) == colour


def test_srgb_tagged_photos_pass_unchanged_and_bad_profiles_are_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = tmp_path / "srgb.jpg"
    Image.new("RGB", (16, 16), (10, 200, 30)).save(path, quality=100, icc_profile=srgb)
    before = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(np.asarray(load_image(path, "content")), before)
    damaged = tmp_path / "damaged.png"
    Image.new("RGB", (16, 16), (10, 200, 30)).save(damaged, icc_profile=b"not a profile" * 20)
    assert tuple(np.asarray(load_image(damaged, "content"))[0, 0]) == (10, 200, 30)
    assert "colour profile cannot be read" in caplog.text


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp"])
def test_every_image_nst_writes_is_tagged_srgb(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"out{suffix}"
    image = Image.new("RGB", (8, 8), (1, 2, 3))
    (save_png if suffix == ".png" else save_image)(image, path, {"nst:version": "x"})
    with Image.open(path) as written:
        icc = written.info.get("icc_profile")
    assert icc
    description = ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc)))
    assert "sRGB" in description


@pytest.mark.subprocess
def test_the_same_image_is_the_same_bytes_from_another_process(tmp_path: Path) -> None:
    """The sRGB profile nst embeds carries a fixed date: LittleCMS stamps the moment it made
    the profile, and two runs of one command wrote final.png with different bytes."""
    import subprocess
    import sys
    import time

    script = (
        "import sys; from pathlib import Path; from PIL import Image; "
        "from nst_cli.io.files import save_png; "
        "save_png(Image.new('RGB', (8, 8), (200, 30, 90)), Path(sys.argv[1]), {'nst:step': '1'})"
    )
    for name in ("a.png", "b.png"):
        subprocess.run([sys.executable, "-c", script, str(tmp_path / name)], check=True)
        time.sleep(1.1)  # the profile's date is in seconds
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
