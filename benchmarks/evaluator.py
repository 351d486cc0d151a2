"""The benchmarks' own judge: losses of a *saved 8-bit image*, computed apart from nst's loop.

It shares only the frozen network (Caffe VGG19) with nst; Grams and distances are computed
here. Every number is a relative error, so pairs and settings compare on one scale:
- content: mean((F − P)²) / mean(P²) at relu4_2, against the content at the result's size;
- style.<layer>: mean((G − A)²) / mean(A²) at relu1_1 … relu5_1, G = F·Fᵀ/(C·H·W), against
  the style image with its long side equal to the result's;
- style: the geometric mean over the five style layers (one layer cannot hide the others);
- raw_J: the objective of benchmarks/compare.py, MSE(relu4_2) + 10·Σ MSE(G, A), raw Caffe scale.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from PIL import Image

from nst_cli.core.features import build_extractor
from nst_cli.core.pixels import resize_long_side, to_tensor
from nst_cli.io.images import load_image

CONTENT_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def _gram(features: torch.Tensor) -> torch.Tensor:
    _, channels, height, width = features.shape
    flat = features.reshape(channels, height * width)
    return flat @ flat.T / (channels * height * width)


class Evaluator:
    """Scores result images against their content and style images."""

    def __init__(self, device: str = "cpu") -> None:
        self.device = torch.device(device)
        self.net = build_extractor("caffe", [CONTENT_LAYER, *STYLE_LAYERS]).to(self.device)

    @torch.no_grad()
    def _features(self, image: Image.Image) -> dict[str, torch.Tensor]:
        return self.net(to_tensor(image).to(self.device), [CONTENT_LAYER, *STYLE_LAYERS])

    @torch.no_grad()
    def score(self, result: Path | Image.Image, content: Path, style: Path) -> dict[str, float]:
        """Relative content and per-layer style errors of `result` (see the module doc)."""
        image = result if isinstance(result, Image.Image) else Image.open(result).convert("RGB")
        long_side = max(image.size)
        content_image = load_image(content, "content").resize(image.size, Image.Resampling.LANCZOS)
        style_image = resize_long_side(load_image(style, "style"), long_side)
        out, ref, sty = (
            self._features(image),
            self._features(content_image),
            self._features(style_image),
        )
        scores: dict[str, float] = {}
        target = ref[CONTENT_LAYER]
        content_mse = float(torch.mean((out[CONTENT_LAYER] - target) ** 2))
        scores["content"] = content_mse / float(torch.mean(target**2))
        raw_style = 0.0
        for name in STYLE_LAYERS:
            gram, gram_style = _gram(out[name]), _gram(sty[name])
            mse = float(torch.mean((gram - gram_style) ** 2))
            raw_style += mse
            scores[f"style.{name}"] = mse / float(torch.mean(gram_style**2))
        scores["style"] = math.exp(
            sum(math.log(max(scores[f"style.{n}"], 1e-12)) for n in STYLE_LAYERS)
            / len(STYLE_LAYERS)
        )
        scores["raw_J"] = content_mse + 10.0 * raw_style
        return scores
