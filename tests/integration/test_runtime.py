"""How the network runs: bf16 autocast, low-memory recomputation, channels_last, TF32 and
torch.compile. They change speed and memory, never what is computed (beyond bf16 rounding).
The CUDA-only paths skip cleanly on machines without a GPU."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from nst_cli import stylize
from nst_cli.config.resolve import resolve_config
from nst_cli.core import devices, heap
from nst_cli.core.features import _segments, build_extractor
from nst_cli.core.layers import LAYER_NAMES
from nst_cli.run.cache import ModelCache

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def extractor():
    return build_extractor("caffe", LAYERS)


def _features_and_grad(extractor, image: torch.Tensor):
    pixels = image.clone().requires_grad_(True)
    features = extractor(pixels, LAYERS)
    sum((f**2).mean() for f in features.values()).backward()
    return {k: v.detach() for k, v in features.items()}, pixels.grad


def test_segments_cover_every_layer_once_and_end_at_pools() -> None:
    last = LAYER_NAMES.index("relu5_1")
    segments = _segments(last, by_block=True)
    assert segments[0][0] == 0 and segments[-1][1] == last + 1
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:], strict=False))
    assert all(LAYER_NAMES[end - 1].startswith("pool") for _, end in segments[:-1])
    assert len(segments) == 5 and _segments(last, by_block=False) == [(0, last + 1)]


def test_low_memory_gives_the_same_features_and_gradient(extractor) -> None:
    image = torch.rand(1, 3, 40, 56)
    plain, plain_grad = _features_and_grad(extractor.configure(), image)
    low, low_grad = _features_and_grad(extractor.configure(low_memory=True), image)
    extractor.configure()
    for name in LAYERS:
        torch.testing.assert_close(low[name], plain[name])
    torch.testing.assert_close(low_grad, plain_grad)


def test_bf16_features_are_as_computed_and_close(extractor) -> None:
    image = torch.rand(1, 3, 40, 56)
    plain, plain_grad = _features_and_grad(extractor.configure(), image)
    half, half_grad = _features_and_grad(extractor.configure(precision="bf16"), image)
    extractor.configure()
    for name in LAYERS:
        assert half[name].dtype == torch.bfloat16  # the losses widen them (test_losses)
        relative = (half[name].float() - plain[name]).norm() / plain[name].norm()
        assert 0 < relative < 0.05, (name, relative)  # rounded, not garbage, not unchanged
    cosine = torch.nn.functional.cosine_similarity(half_grad.flatten(), plain_grad.flatten(), 0)
    assert cosine > 0.98


def _autocast_features_and_grad(extractor, image: torch.Tensor):
    """The network run layer by layer under torch.autocast: what bf16 used to be."""
    pixels = image.clone().requires_grad_(True)
    x = extractor.preprocess(pixels)
    if extractor.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    features = {}
    with torch.autocast("cpu", torch.bfloat16):
        for i, layer in enumerate(extractor.layers[: LAYER_NAMES.index("relu5_1") + 1]):
            x = layer(x)
            if LAYER_NAMES[i] in LAYERS:
                features[LAYER_NAMES[i]] = x
    sum((f**2).mean() for f in features.values()).backward()
    return {k: v.detach() for k, v in features.items()}, pixels.grad


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["max", "avg"])
@pytest.mark.parametrize(("channels_last", "low_memory"), [(False, False), (True, True)])
def test_bf16_is_autocast_bit_for_bit_without_casting_the_weights_each_pass(
    pooling: str, channels_last: bool, low_memory: bool
) -> None:
    net = build_extractor("caffe", LAYERS, pooling)
    net.configure(precision="bf16", channels_last=channels_last, low_memory=low_memory)
    image = torch.rand(1, 3, 40, 56)
    expected, expected_grad = _autocast_features_and_grad(net, image)
    features, grad = _features_and_grad(net, image)  # makes the bfloat16 weights
    with torch.profiler.profile(record_shapes=True) as profiled:
        again, again_grad = _features_and_grad(net, image)
    shapes = {tuple(m.weight.shape) for m in net.layers if isinstance(m, torch.nn.Conv2d)}
    casts = [
        e.input_shapes[0]
        for e in profiled.events()
        if e.name == "aten::_to_copy" and tuple(e.input_shapes[0]) in shapes
    ]
    assert casts == []  # a pass after the first casts no weight (autocast casts all 13)
    for name in LAYERS:
        assert features[name].dtype == torch.bfloat16
        assert torch.equal(features[name], expected[name]), name
        assert torch.equal(again[name], expected[name]), name
    assert torch.equal(grad, expected_grad) and torch.equal(again_grad, expected_grad)


@pytest.mark.slow
def test_a_run_with_bf16_and_low_memory_completes(tiny_config: Path, tmp_path: Path) -> None:
    # 32 px: on a CPU without bfloat16 units (AVX2) bfloat16 is emulated, ~30x float32's time.
    sets = ["precision=bf16", "memory=low", "resolution=32"]
    config = resolve_config(tiny_config, sets, {"output": str(tmp_path / "run")})
    result = stylize(config)
    assert result.status == "completed" and result.steps == 6
    assert result.losses["total"] < float("inf")


@pytest.mark.slow
@pytest.mark.parametrize("fast_bf16", [True, False])
def test_auto_precision_runs_bf16_on_a_cpu_with_matrix_units_channels_last_on_any_cpu(
    tiny_config: Path, tmp_path: Path, monkeypatch, fast_bf16: bool
) -> None:
    monkeypatch.setattr(devices, "cpu_computes_bf16_fast", lambda: fast_bf16)
    overrides = {"output": str(tmp_path / "run"), "device": "cpu"}
    config = resolve_config(tiny_config, ["resolution=32"], overrides)  # bf16 may be emulated
    assert config.precision == "auto"
    cache = ModelCache()
    result = stylize(config, cache=cache)
    assert result.status == "completed"
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text(encoding="utf-8"))
    assert saved["precision"] == "auto"  # resumed elsewhere, it is decided there again
    assert saved["run"]["precision"] == ("bf16" if fast_bf16 else "fp32")
    (network,) = cache._extractors.values()
    assert network.precision == ("bf16" if fast_bf16 else "fp32")
    assert network.channels_last  # oneDNN's faster layout in float32 too (devices.py)


_FAULTS = """
import json, resource, torch
from nst_cli.core import heap

def faults(megabytes):  # page faults taken to make and write a tensor (then freed)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(megabytes * 2**18, dtype=torch.float32).fill_(1.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

def rss():  # resident bytes
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()

faults(40)
counts = {"before": faults(36)}
with heap.kept_between_steps():
    faults(40)
    with heap.kept_between_steps():  # nested (another run's loop): still kept after it
        pass
    counts["within"] = faults(36)
    resident = rss()
counts["returned"] = resident - rss()
counts["after"] = faults(36)
print(json.dumps(counts))
"""


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.skipif(heap._glibc() is None, reason="glibc's malloc only")
def test_within_a_run_freed_memory_is_reused_without_fresh_pages() -> None:
    # 40 and 36 MB, over glibc's mmap threshold (32 MB at most): each a fresh mapping,
    # faulted in page by page, unless freed memory is kept, as while the loop runs; then the
    # 36 MB tensor lies in the 40 MB one's pages. In a fresh process: what this one's heap
    # already holds could serve them either way.
    run = subprocess.run([sys.executable, "-c", _FAULTS], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    counts = json.loads(run.stdout)
    pages = 36 * 2**20 // resource.getpagesize()
    assert counts["before"] > pages // 2
    assert counts["within"] < pages // 20
    # Afterwards the memory freed has gone back to the system: made again, it is new pages.
    assert counts["returned"] > 30 * 2**20
    assert counts["after"] > pages // 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("memory", "limit", "kept"), [("normal", 2**20, 1), ("low", 2**20, 0), ("normal", 600, 0)]
)
def test_runs_keep_freed_memory_unless_memory_is_low_or_the_image_large(
    tiny_config: Path, tmp_path: Path, monkeypatch, memory: str, limit: int, kept: int
) -> None:
    if heap._glibc() is None:
        pytest.skip("keeping freed memory is glibc's (mallopt)")
    monkeypatch.setattr(heap, "KEEP_UP_TO_PIXELS", limit)  # 32 px: 32x24, 768 pixels
    sets = [f"memory={memory}", "resolution=32", "scales=[32]"]
    config = resolve_config(tiny_config, sets, {"output": str(tmp_path / "run")})
    during: list[bool] = []  # whether glibc keeps freed memory, seen at each step
    assert (
        stylize(config, callbacks=[lambda event: during.append(heap.in_force())]).status
        == "completed"
    )
    assert during and set(during) == {bool(kept)}
    assert not heap.in_force()  # glibc's own settings back once the run is over


def test_runtime_keys_are_validated(tiny_config: Path) -> None:
    with pytest.raises(Exception, match="precision.*'auto', 'tf32', 'fp32' or 'bf16'"):
        resolve_config(tiny_config, ["precision=fp16"])
    with pytest.raises(Exception, match="memory.*'normal' or 'low'"):
        resolve_config(tiny_config, ["memory=tiny"])
    with pytest.raises(Exception, match="compile"):
        resolve_config(tiny_config, ["compile=maybe"])


@pytest.mark.gpu
@cuda
def test_cuda_run_uses_channels_last_and_tf32(tiny_config: Path, tmp_path: Path) -> None:
    config = resolve_config(tiny_config, [], {"output": str(tmp_path / "run"), "device": "cuda"})
    result = stylize(config)
    assert result.status == "completed" and result.device.startswith("cuda")
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    net = build_extractor("caffe", LAYERS).cuda().configure(channels_last=True)
    conv = net.layers[0]
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.gpu
@cuda
def test_cuda_bf16_and_compile_match_fp32(tiny_config: Path, tmp_path: Path) -> None:
    runs = {}
    for label, sets in {
        "fp32": ["precision=fp32"],
        "fast": ["precision=bf16", "compile=true"],
    }.items():
        config = resolve_config(
            tiny_config, sets, {"output": str(tmp_path / label), "device": "cuda"}
        )
        runs[label] = stylize(config)
    assert runs["fast"].warmup_seconds > 0 and runs["fp32"].warmup_seconds == 0
    a, b = runs["fp32"].losses["total"], runs["fast"].losses["total"]
    assert abs(a - b) < 0.1 * a
