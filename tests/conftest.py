"""Shared fixtures: tiny images made inside the tests, and a tiny-run config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image


def make_image(
    path: Path, size: tuple[int, int] = (64, 48), seed: int = 0, mode: str = "RGB"
) -> Path:
    """A small structured image (gradients + a square) so content has edges to keep."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    red = 255 * x / max(1, width - 1)
    green = 255 * y / max(1, height - 1)
    blue = 128 + 100 * np.sin(x / 3.0 + seed) * np.cos(y / 4.0)
    array = np.stack([red, green, blue], axis=-1)
    array[height // 4 : height // 2, width // 4 : width // 2] = rng.integers(0, 255, 3)
    image = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)
    return path


def optimize_one(
    image: Any,
    extractor: Any,
    loss: Any,
    name: str,
    lr: float,
    steps: int,
    *,
    callbacks: Sequence[Any] = (),
    optimizer_state: Any = None,
    trust_region: float | None = 0.05,
    **loop: Any,
) -> Any:
    """One run's image through the loop's one entry point (core.optimize.optimize_batch, a
    batch of one lane); its error raised, as a run raises it."""
    from nst_cli.core.optimize import Lane, optimize_batch

    lane = Lane(image, loss, name, lr, callbacks, optimizer_state, trust_region=trust_region)
    (result,) = optimize_batch([lane], extractor, steps, **loop)
    if result.error is not None:
        raise result.error
    return result


def write_pair(folder: Path, settings: str = "resolution: 48\nsteps: 4\nsave_every: 2\n") -> Path:
    """content.png, style.png and a tiny config beside them (paths relative to it)."""
    folder.mkdir(parents=True, exist_ok=True)
    make_image(folder / "content.png", (64, 48), seed=1)
    make_image(folder / "style.png", (40, 40), seed=7)
    config = folder / "tiny.yaml"
    config.write_text(f"content: content.png\nstyle: style.png\n{settings}device: cpu\n")
    return config


@pytest.fixture
def content_path(tmp_path: Path) -> Path:
    return make_image(tmp_path / "content.png", (64, 48), seed=1)


@pytest.fixture
def style_path(tmp_path: Path) -> Path:
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
    stripes = np.zeros((40, 40, 3), dtype=np.uint8)
    stripes[:, ::4] = (250, 200, 20)
    path = tmp_path / "style.png"
    Image.fromarray(np.maximum(noise // 2, stripes)).save(path)
    return path


@pytest.fixture
def tiny_config(tmp_path: Path, content_path: Path, style_path: Path) -> Path:
    """A config file for a 64 px, 6-step run; paths relative to the config's folder."""
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "content: content.png\n"
        "style: style.png\n"
        "resolution: 64\n"
        "steps: 6\n"
        "save_every: 2\n"
        "device: cpu\n"
        "weights:\n  content: 1.0\n  style: 1.0\n"
    )
    return path


@pytest.fixture
def as_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The optimiser as it runs on a GPU: every decision made on the device, no number read
    back. (On the CPU it reads its scalars back, which costs nothing there.)"""
    from nst_cli.core import lbfgs

    monkeypatch.setattr(lbfgs, "_on_host", lambda tensor: False)


class HostReads:
    """Counts reads of tensor values back to Python (float(t), t.item(), bool(t), t.tolist(),
    …) inside a `with` block: each is a device-to-host sync on a GPU. Found through torch's
    function-mode hook, so it works on the CPU the tests run on."""

    NAMES = ("item", "__float__", "__bool__", "__int__", "__index__", "tolist", "numpy")

    def __init__(self) -> None:
        from torch.overrides import TorchFunctionMode

        reads = self.reads = []

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                name = getattr(func, "__name__", "")
                if name in HostReads.NAMES:
                    reads.append(name)
                elif name in ("__getitem__", "__setitem__") and _bool_index(args):
                    reads.append(f"{name} with a boolean mask")  # its size is read back
                return func(*args, **(kwargs or {}))

        self._mode = _Mode()

    def __enter__(self) -> HostReads:
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)


def _bool_index(args: tuple) -> bool:
    import torch

    index = args[1] if len(args) > 1 else None
    items = index if isinstance(index, tuple) else (index,)
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in items)
