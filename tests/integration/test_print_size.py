"""Print size: tiled runs (the same picture as untiled), memory plans that tile instead of
refusing, and 16-bit output from the float image, through the real API and CLI."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
import yaml
from conftest import make_image
from PIL import Image
from typer.testing import CliRunner

from nst_cli.cli import app
from nst_cli.errors import ConfigError

runner = CliRunner()


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    return make_image(tmp_path / "photo.png", (128, 96), seed=1), make_image(
        tmp_path / "painting.png", (80, 80), seed=7
    )


def _settings(pair: tuple[Path, Path], out: Path, *sets: str) -> list[str]:
    photo, painting = pair
    return [
        f"content={photo}", f"style={painting}", f"output={out}", "resolution=128",
        "steps=4", "save_every=4", "device=cpu", "precision=fp32", "scales=[64, 128]", *sets,
    ]  # fmt: skip


@pytest.mark.slow
def test_a_tiled_run_paints_the_untiled_picture(pair, tmp_path: Path) -> None:
    """Tiles of 64 px at 128 px (4 tiles; the 64 px scale is one), against the same run
    untiled with the same float16 L-BFGS history (memory: low): within 1/255."""
    from nst_cli import resolve_config, stylize

    class Tiles:
        """A callback that hears of every tile (as the progress bar does)."""

        def __init__(self) -> None:
            self.seen: list[tuple[int, int, int]] = []

        def __call__(self, event: object) -> None:
            pass

        def on_tile(self, number: int, count: int, stage: int) -> None:
            self.seen.append((number, count, stage))

    pictures, heard = [], []
    for name, sets in (("whole", ["tile=off", "memory=low"]), ("tiled", ["tile=64"])):
        config = resolve_config(None, _settings(pair, tmp_path / name, *sets))
        tiles = Tiles()
        result = stylize(config, callbacks=[tiles])
        assert result.status == "completed"
        pictures.append(np.asarray(Image.open(result.final_image), dtype=np.int16))
        heard.append(tiles.seen)
    assert heard[0] == []  # untiled: no tiles
    # 128×96 in 64 px tiles: 2×2, both passes, at every step of the 128 px scale.
    assert {count for _, count, _ in heard[1]} == {4} and len(heard[1]) >= 4 * 2 * 2
    assert int(np.abs(pictures[0] - pictures[1]).max()) <= 1


def test_memory_plans_tile_what_would_not_fit_and_refuse_only_what_never_fits(
    pair, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nst_cli import resolve_config
    from nst_cli.run import inputs as run_inputs
    from nst_cli.run import memory

    monkeypatch.setattr(
        memory, "memory_limit", lambda device, max_memory=None: (24 * 2**30, "the test")
    )

    def loaded(*sets: str) -> memory.MemoryPlan:
        config = resolve_config(None, _settings(pair, tmp_path / "x", *sets))
        inputs = run_inputs.load_inputs(config)  # the memory check runs here
        return memory.plan_memory(config, inputs)

    assert loaded("resolution=512").tile is None  # fits: not tiled
    big = loaded("resolution=6000")  # 6000×4500 px: ~130 GiB untiled in float32
    assert big.tile is not None and big.bytes <= 24 * 2**30
    assert loaded("resolution=6000", "tile=512").tile == 512
    with pytest.raises(ConfigError) as refused:
        loaded("resolution=6000", "tile=off")
    assert "more than the 24.0 GiB of the test" in str(refused.value)
    assert "set tile: auto" in str(refused.value)
    with pytest.raises(ConfigError) as never:
        loaded("resolution=40000")
    assert "in tiles of 128 px" in str(never.value) and "at most about" in str(never.value)


@pytest.mark.slow
def test_a_tiled_run_through_the_cli_says_so_and_writes_16_bit_tiff(pair, tmp_path: Path) -> None:
    photo, painting = pair
    out = tmp_path / "print.tif"
    args = ["stylize", str(photo), str(painting), "-o", str(out), "--resolution", "128"]
    args += ["--tile", "64", "--steps", "3", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tiles of 64 px" in result.output
    pixels = tifffile.imread(out)
    assert pixels.dtype == np.uint16 and pixels.shape == (96, 128, 3)
    # From the float image: an 8-bit image scaled up would hold multiples of 257 only.
    assert (pixels % 257 != 0).mean() > 0.5
    with Image.open(out) as image:
        assert image.info.get("icc_profile")
    again = runner.invoke(app, ["stylize", "--config", str(out), "--print-config"])
    assert again.exit_code == 0 and yaml.safe_load(again.output)["tile"] == 64


@pytest.mark.slow
def test_16_bit_png_on_request_and_its_luminance_keeps_the_photos_colours(
    pair, tmp_path: Path
) -> None:
    photo, painting = pair
    out = tmp_path / "print.png"
    args = ["stylize", str(photo), str(painting), "-o", str(out), "--resolution", "64"]
    args += ["--steps", "3", "--device", "cpu", "-q", "--output-depth", "16"]
    args += ["--color", "luminance"]
    assert runner.invoke(app, args).exit_code == 0
    pixels = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)[..., ::-1].astype(np.float64) / 65535
    assert pixels.shape == (48, 64, 3) and (np.round(pixels * 65535) % 257 != 0).mean() > 0.5
    with Image.open(out) as image:  # provenance and the sRGB profile, as 8-bit PNGs have
        assert "nst:config" in image.info and image.info.get("icc_profile")
    # luminance: the chroma is the photo's (YCbCr), as the 8-bit final.png has it.
    eight = np.asarray(Image.open(tmp_path / "print" / "final.png"), dtype=np.float64) / 255
    assert np.abs(pixels - eight).mean() < 2 / 255
    again = runner.invoke(app, args)  # the same command again replaces its own image
    assert again.exit_code == 0, again.output


def test_16_bits_into_a_jpeg_is_one_line(pair, tmp_path: Path) -> None:
    photo, painting = pair
    args = ["stylize", str(photo), str(painting), "-o", str(tmp_path / "r.jpg")]
    result = runner.invoke(app, [*args, "--output-depth", "16"])
    assert result.exit_code != 0
    line = result.output.strip()
    assert "\n" not in line and "output_depth 16: .jpg holds 8 bits" in line


@pytest.mark.parametrize("value", ["32", "big"])
def test_a_bad_tile_is_one_line(pair, value: str) -> None:
    photo, painting = pair
    result = runner.invoke(app, ["stylize", str(photo), str(painting), "--tile", value])
    assert result.exit_code != 0
    assert "tile" in result.output and "\n" not in result.output.strip()


@pytest.mark.subprocess
def test_the_plan_counts_the_address_space_limit_a_process_runs_under() -> None:
    """Under `ulimit -v` (a container's limit works alike) the plan used the machine's RAM
    and the run died as `DefaultCPUAllocator: can't allocate memory`; it now plans with what
    the process may still map (the limit less what torch has already mapped)."""
    import resource
    import subprocess
    import sys

    limit = 9 * 10**9
    probe = (
        "import torch\n"
        "from nst_cli.run.memory import memory_limit\n"
        "mapped = next(int(l.split()[1]) * 1024 for l in open('/proc/self/status') if l.startswith('VmSize:'))\n"
        "room, where = memory_limit('cpu')\n"
        "print(room, mapped, where)\n"
    )

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        preexec_fn=limited,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    room, mapped, where = done.stdout.split(maxsplit=2)
    assert "address-space limit" in where
    base = 1 << 30  # run.memory.BASE_BYTES: torch itself, already among what is mapped
    assert int(room) <= 0.8 * (limit - int(mapped) + base) + 2**20  # what is left, not 9 GB
    free = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert "address-space limit" not in free.stdout  # no limit: the machine's memory


def test_max_memory_caps_what_a_run_may_plan_on(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from nst_cli.cli import app

    args = ["stylize", "samples/car.png", "samples/fluid.png", "--resolution", "3000",
            "--steps", "1", "-o", str(tmp_path / "r"), "--set", "max_memory=0.5"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "more than the 0.5 GiB of max_memory (0.5 GiB)" in result.output
    assert not (tmp_path / "r" / "frames").exists()
