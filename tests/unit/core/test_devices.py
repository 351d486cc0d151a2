"""Device strings: what exists is used, what does not is one clear error."""

from __future__ import annotations

import pytest
import torch

from nst_cli.core import devices
from nst_cli.core.devices import configure_precision, resolve_device, resolve_precision
from nst_cli.errors import DeviceError


def test_cpu_and_auto() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto").type in ("cpu", "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_says_so_and_what_to_use() -> None:
    with pytest.raises(
        DeviceError,
        match=r"device: cuda:1 requested but no CUDA GPU is available .*use --device cpu or auto",
    ):
        resolve_device("cuda:1")


def test_unknown_device_lists_the_valid_ones() -> None:
    with pytest.raises(
        DeviceError, match="'tpu' is not a device; use auto, cpu, cuda, cuda:N or mps"
    ):
        resolve_device("tpu")


def test_precision_settings_touch_only_cuda() -> None:
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    configure_precision(torch.device("cpu"), "fp32")
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


@pytest.mark.parametrize("explicit", ["tf32", "fp32", "bf16"])
def test_an_explicit_precision_is_kept_on_every_device(explicit: str) -> None:
    for device in ("cpu", "cuda", "mps"):
        assert resolve_precision(torch.device(device), explicit) == explicit


@pytest.mark.parametrize("fast_bf16", [True, False])
def test_auto_precision_follows_the_hardware(monkeypatch, fast_bf16: bool) -> None:
    monkeypatch.setattr(devices, "cpu_computes_bf16_fast", lambda: fast_bf16)
    assert resolve_precision(torch.device("cuda"), "auto") == "tf32"
    assert resolve_precision(torch.device("mps"), "auto") == "fp32"
    assert resolve_precision(torch.device("cpu"), "auto") == ("bf16" if fast_bf16 else "fp32")


def test_the_bf16_probe_answers_without_failing() -> None:
    assert isinstance(devices.cpu_computes_bf16_fast(), bool)


@pytest.mark.parametrize(
    ("amx", "avx512_bf16", "fast"),
    [(True, False, True), (False, True, True), (False, False, False)],
)
def test_native_bf16_is_matrix_units_or_avx512_bf16(
    monkeypatch, amx: bool, avx512_bf16: bool, fast: bool
) -> None:
    # Zen 4's AVX-512 BF16 ran the 512 px default run in 0.63x its float32 time, the same
    # picture (docs/performance.md); AVX2 alone emulates bfloat16, slower than float32.
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16, raising=False)
    assert devices.cpu_computes_bf16_fast() is fast
    monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
    assert devices.cpu_computes_bf16_fast() is False
