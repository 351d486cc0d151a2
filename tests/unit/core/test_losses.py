"""Gram, content, style and TV losses against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from nst_cli.core.losses.content import content_loss, tv_loss
from nst_cli.core.losses.gram import gram_matrix, style_loss
from nst_cli.core.losses.total import (
    ContentLoss,
    StyleLoss,
    Weighted,
    WeightedSum,
    style_norms,
    style_transfer_loss,
)
from nst_cli.core.losses.wasserstein import gaussian_target, wasserstein_loss


def test_gram_matrix_matches_hand_computation() -> None:
    # Two channels on a 1x2 map: F = [[1, 2], [3, 4]]
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    # F·Fᵀ = [[5, 11], [11, 25]], divided by C·H·W = 2·1·2 = 4
    expected = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    assert torch.allclose(gram_matrix(features), expected)


def test_gram_is_independent_of_spatial_size_for_repeated_texture() -> None:
    tile = torch.rand(1, 3, 4, 4)
    big = tile.repeat(1, 1, 3, 3)
    assert torch.allclose(gram_matrix(tile), gram_matrix(big), atol=1e-6)


def test_content_loss_is_mean_squared_difference() -> None:
    a = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    b = torch.tensor([[[[1.0, 0.0], [3.0, 8.0]]]])
    assert content_loss(a, b).item() == pytest.approx((0 + 4 + 0 + 16) / 4)


def test_style_loss_is_mse_of_grams() -> None:
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    target = torch.zeros(1, 2, 2)
    grams = [5 / 4, 11 / 4, 11 / 4, 25 / 4]
    assert style_loss(features, target).item() == pytest.approx(sum(g * g for g in grams) / 4)
    assert style_loss(features, gram_matrix(features)).item() == 0


def test_tv_loss_hand_values() -> None:
    image = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    # vertical differences all 0; horizontal differences both 1
    assert tv_loss(image).item() == pytest.approx(1.0)
    assert tv_loss(torch.ones(1, 3, 5, 5)).item() == 0


def test_total_is_weighted_sum_and_terms_are_unweighted() -> None:
    feats = {"a": torch.ones(1, 2, 2, 2), "b": torch.full((1, 2, 2, 2), 2.0)}
    content_target = {"a": torch.zeros(1, 2, 2, 2)}
    style_target = {"b": torch.zeros(1, 2, 2)}
    image = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    loss = style_transfer_loss(
        ContentLoss(content_target, {"a": 2.0}, normalize=False),
        StyleLoss(style_target, {"b": 3.0}, normalize=False),
        {"content": 10.0, "style": 100.0, "tv": 0.5},
    )
    out = loss(feats, image)
    content = 2.0 * 1.0  # layer weight 2 × mse 1
    gram_entry = 4.0 * 4 / 8  # F·Fᵀ entries are 16, divided by C·H·W = 8
    style = 3.0 * gram_entry**2
    tv = 1.0
    assert out.terms["content"].item() == pytest.approx(content)
    assert out.terms["style"].item() == pytest.approx(style)
    assert out.terms["content.a"].item() == pytest.approx(1.0)
    assert out.terms["style.b"].item() == pytest.approx(gram_entry**2)
    assert out.total.item() == pytest.approx(10 * content + 100 * style + 0.5 * tv)
    floats = out.as_floats()
    assert set(floats) >= {"total", "content", "style", "tv", "content.a", "style.b"}
    assert loss.layers == ["a", "b"]


def test_a_term_is_one_more_entry_of_the_sum() -> None:
    """Composable terms: an image term added to the sum is weighed, logged by its name after
    the layers', and skipped (logged 0) at weight 0; the order of the terms is the order of
    the sum."""
    image = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    brightness = lambda pixels: pixels.mean()  # noqa: E731 - a term is any image -> scalar
    base = WeightedSum([Weighted("tv", 2.0, tv_loss, headline=True)])
    loss = base.plus(Weighted("brightness", 3.0, brightness))
    out = loss({}, image)
    assert list(out.terms) == ["tv", "brightness"]
    assert out.total.item() == pytest.approx(2.0 * 1.0 + 3.0 * 0.5)
    off = base.plus(Weighted("brightness", 0.0, lambda _: 1 / 0))
    assert off({}, image).terms["brightness"].item() == 0.0
    assert base({}, image).total.item() == pytest.approx(2.0)  # plus() leaves the sum as it was


def test_layers_are_listed_once_when_shared() -> None:
    loss = style_transfer_loss(
        ContentLoss({"x": torch.zeros(1)}, {"x": 1}, normalize=False),
        StyleLoss({"x": torch.zeros(1, 1, 1)}, {"x": 1}, normalize=False),
        {"content": 1, "style": 1},
    )
    assert loss.layers == ["x"]


def test_normalized_terms_do_not_depend_on_the_feature_scale() -> None:
    # Caffe features are ~60× torchvision's: normalised terms must not care, raw ones do.
    torch.manual_seed(0)
    features, target = torch.rand(1, 4, 3, 5), torch.rand(1, 4, 3, 5)
    gram_target = gram_matrix(torch.rand(1, 4, 6, 2))
    k = 60.0
    assert content_loss(k * features, k * target, normalize=True).item() == pytest.approx(
        content_loss(features, target, normalize=True).item(), rel=1e-5
    )
    assert style_loss(k * features, k * k * gram_target, normalize=True).item() == pytest.approx(
        style_loss(features, gram_target, normalize=True).item(), rel=1e-5
    )
    raw = style_loss(features, gram_target).item()
    assert style_loss(k * features, k * k * gram_target).item() == pytest.approx(
        raw * k**4, rel=1e-4
    )


def test_normalized_loss_is_relative_error_by_hand() -> None:
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    target = torch.tensor([[[[1.0, 0.0]], [[3.0, 8.0]]]])
    # mse = (0 + 4 + 0 + 16) / 4 = 5; mean(target²) = (1 + 0 + 9 + 64) / 4 = 18.5
    assert content_loss(features, target, normalize=True).item() == pytest.approx(5 / 18.5)


def test_sum_gram_is_the_recipe_form() -> None:
    # F = [[1, 2], [3, 4]] (C=2, H=1, W=2): F·Fᵀ = [[5, 11], [11, 25]] unnormalised.
    features = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    assert torch.equal(gram_matrix(features, "sum"), torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]))
    target = torch.zeros(1, 2, 2)
    # layer loss = mean((G − A)²) / (C·H·W) = (25 + 121 + 121 + 625) / 4 / 4
    assert style_loss(features, target, form="sum").item() == pytest.approx(892 / 16)


def test_style_norms_make_the_content_image_start_at_one_per_layer() -> None:
    torch.manual_seed(1)
    content = {"a": torch.rand(1, 3, 4, 5), "b": 50 * torch.rand(1, 6, 2, 3)}
    targets = {
        "a": gram_matrix(torch.rand(1, 3, 7, 2)),
        "b": gram_matrix(9 * torch.rand(1, 6, 3, 3)),
    }
    norms = style_norms(content, targets)
    loss = style_transfer_loss(
        ContentLoss({}, {}, normalize=True),
        StyleLoss(targets, {"a": 1, "b": 1}, normalize=True, norms=norms),
        {"content": 1, "style": 1},
    )
    terms = loss(content, torch.zeros(1, 3, 2, 2)).as_floats()
    assert terms["style.a"] == pytest.approx(1.0) and terms["style.b"] == pytest.approx(1.0)


def test_style_norm_floor_when_content_already_matches() -> None:
    features = torch.rand(1, 2, 3, 3)
    target = gram_matrix(features)
    norm = style_norms({"a": features}, {"a": target})["a"]
    assert norm.item() == pytest.approx(1e-2 * torch.mean(target**2).item())


@pytest.mark.parametrize("batch", [1, 2])
def test_gram_gradient_is_exact(batch: int) -> None:
    """The Gram's one-product gradient, (dG + dGᵀ)·F, against finite differences, for one
    image and a batch, and for the masked Gram built on it."""
    from nst_cli.core.losses.guided import masked_gram

    generator = torch.Generator().manual_seed(0)
    features = torch.rand(batch, 5, 4, 6, dtype=torch.float64, generator=generator)
    features.requires_grad_(True)
    for form in ("mean", "sum"):
        assert torch.autograd.gradcheck(lambda f, form=form: gram_matrix(f, form), (features,))
    mask = torch.rand(1, 1, 4, 6, dtype=torch.float64, generator=generator)
    one = features[:1].detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda f: masked_gram(f, mask), (one,))
    flat = features.detach().reshape(batch, 5, 24)
    expected = flat @ flat.transpose(1, 2) / (5 * 24)
    torch.testing.assert_close(gram_matrix(features.detach()), expected)


@pytest.mark.parametrize("batch", [1, 3])
def test_a_channels_last_gram_matches_and_its_gradient_keeps_the_layout(batch: int) -> None:
    # channels_last maps (the CPU's bf16 path and CUDA) are read as positions × channels, so
    # neither the Gram nor its gradient copies them into the other layout.
    plain = torch.rand(batch, 8, 5, 7, dtype=torch.float64, requires_grad=True)
    last = plain.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    weights = torch.rand(batch, 8, 8, dtype=torch.float64)
    grams = {}
    for name, features in (("plain", plain), ("last", last)):
        grams[name] = gram_matrix(features)
        (grams[name] * weights).sum().backward()
    torch.testing.assert_close(grams["last"], grams["plain"])
    torch.testing.assert_close(last.grad, plain.grad)
    assert last.grad.is_contiguous(memory_format=torch.channels_last)
    assert not last.grad.is_contiguous()
    assert plain.grad.is_contiguous()
    assert torch.autograd.gradcheck(lambda f: gram_matrix(f), (last,))


def test_a_bf16_gram_is_the_float32_gram_of_the_same_values_with_a_bf16_gradient() -> None:
    # bf16 features (precision: bf16) are upcast exactly: the Gram is the float32 one; the
    # gradient comes back in bf16, the precision the network's backward takes it in.
    half = torch.randn(1, 16, 12, 10).to(torch.bfloat16)
    half = half.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    wide = half.detach().float().requires_grad_(True)
    weights = torch.rand(1, 16, 16)
    grams = {}
    for name, features in (("half", half), ("wide", wide)):
        grams[name] = gram_matrix(features)
        (grams[name] * weights).sum().backward()
    assert grams["half"].dtype == torch.float32
    torch.testing.assert_close(grams["half"], grams["wide"])
    assert half.grad.dtype == torch.bfloat16
    assert half.grad.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(
        half.grad.float(), wide.grad, rtol=2e-2, atol=2e-2 * wide.grad.abs().max().item()
    )
    # Content and Wasserstein terms widen bf16 features too.
    target = torch.randn(1, 16, 12, 10)
    assert content_loss(half, target).dtype == torch.float32
    assert content_loss(half, target).item() == pytest.approx(content_loss(wide, target).item())
    gaussian = gaussian_target(torch.randn(1, 16, 12, 10))
    assert wasserstein_loss(half, gaussian).dtype == torch.float32
    assert wasserstein_loss(half, gaussian).item() == pytest.approx(
        wasserstein_loss(wide, gaussian).item(), rel=1e-4
    )


def test_each_statistic_brings_its_own_style_term() -> None:
    """style_term picks the term by the target's statistic, and each term scales the raw
    distance the way its statistic asks: Gram over its norm; Wasserstein over its norm and
    times WASSERSTEIN_SCALE (computed here by hand from the raw distances)."""
    from nst_cli.core.losses.gram import GramTerm, style_loss
    from nst_cli.core.losses.total import style_term
    from nst_cli.core.losses.wasserstein import (
        WASSERSTEIN_SCALE,
        WassersteinTerm,
        gaussian_target,
        wasserstein_loss,
    )

    torch.manual_seed(0)
    features, style = torch.rand(1, 4, 5, 7), torch.rand(1, 4, 6, 3)
    norm = torch.tensor(0.37)
    gram = style_term(gram_matrix(style), normalize=True, norm=norm)
    assert isinstance(gram, GramTerm)
    expected = torch.mean((gram_matrix(features) - gram_matrix(style)) ** 2) / 0.37
    assert torch.allclose(gram(features), expected)
    gaussian = gaussian_target(style)
    wasserstein = style_term(gaussian, normalize=True, norm=norm)
    assert isinstance(wasserstein, WassersteinTerm)
    raw = wasserstein_loss(features, gaussian)
    assert torch.allclose(wasserstein(features), raw / 0.37 * WASSERSTEIN_SCALE)
    assert torch.equal(style_term(gaussian, normalize=False)(features), raw)
    assert torch.equal(
        style_term(gram_matrix(style), False)(features), style_loss(features, gram_matrix(style))
    )
