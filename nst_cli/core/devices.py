"""Turning the config's `device` string into a torch.device that really exists."""

from __future__ import annotations

import torch

from nst_cli.errors import DeviceError


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str) -> torch.device:
    """auto = cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise DeviceError("device: mps (Apple GPU) is not available here; use cpu or auto")
        return torch.device("mps")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(
                f"device: {name} requested but no CUDA GPU is available (torch "
                f"{torch.__version__}); use --device cpu or auto"
            )
        index = int(name.split(":", 1)[1]) if ":" in name else 0
        count = torch.cuda.device_count()
        if index >= count:
            raise DeviceError(
                f"device: {name} requested but only {count} CUDA device(s) exist "
                f"(cuda:0 … cuda:{count - 1})"
            )
        return torch.device(name)
    raise DeviceError(f"device: {name!r} is not a device; use auto, cpu, cuda, cuda:N or mps")


def cpu_computes_bf16_fast() -> bool:
    """Whether this CPU computes bfloat16 natively: matrix units (Intel AMX, Sapphire Rapids
    and later; VGG19's step about 2.3x as fast as in float32) or AVX-512 BF16 dot-product
    instructions (AMD Zen 4 and later, Intel Cooper Lake; about 1.6x), which oneDNN's
    bfloat16 convolutions use (docs/performance.md). Elsewhere (AVX2 alone) bfloat16 is
    emulated and slower than float32."""
    if not torch.backends.mkldnn.is_available():
        return False
    for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"):
        probe = getattr(torch.cpu, name, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:  # pragma: no cover - a torch build without the probe's backend
            continue
    return False


def resolve_precision(device: torch.device, precision: str) -> str:
    """`precision: auto` decided for this device: TF32 on CUDA; bfloat16 on a CPU that
    computes it natively (the same pictures in 0.4-0.6x the time; see docs/performance.md);
    strict float32 elsewhere. Any other value is kept."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "tf32"
    if device.type == "cpu" and cpu_computes_bf16_fast():
        return "bf16"
    return "fp32"


def configure_precision(device: torch.device, precision: str) -> None:
    """TensorFloat-32 matmuls and convolutions on CUDA unless `precision: fp32` asks for full
    float32 (TF32 keeps float32's range with a 10-bit mantissa: ~3× faster on Ampere and
    later, and far below what changes a stylised image). Nothing to do on other devices."""
    if device.type != "cuda":
        return
    tf32 = precision != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32


def runs_channels_last(device: torch.device) -> bool:
    """Whether VGG19 runs in the channels_last memory layout here: on CUDA (cuDNN's fast
    layout) and on the CPU, where oneDNN's convolutions take less time in it, for a little
    more peak memory (docs/performance.md). MPS: not measured, so the default layout."""
    return device.type in ("cuda", "cpu")
