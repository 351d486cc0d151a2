"""Texture, not objects: how far a painting's deepest features are a texture.

A texture looks alike everywhere; an object (a face, a cat, a cup) is in one place. VGG19's
last block (relu5_x) answers to whole objects, and its Gram matrix, matched at full weight,
paints the painting's objects into the photo: the astronaut's face over a rocket's sky. The
shallower layers do not (with relu5_1 off no face forms, see docs/defaults.md).

So a block-5 style layer is weighed by how stationary the painting is there: the Gram of
each half-size window of the layer is compared with the whole painting's. The procedural
paintings (fluid, swirls, strokes, cubist) differ by 0.11-0.35 of the Gram's power at
relu5_1; photos of a rocket, a face, a cat or a cup by 0.83-1.57. Below `TEXTURE` the layer
keeps its weight, above `OBJECTS` it is off, linearly between. Measured with the painting at `MEASURE_SIDE`
px, so the answer does not change with the run's resolution or scale.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nst_cli.core.features import FeatureExtractor
from nst_cli.core.layers import layer_block
from nst_cli.core.losses.gram import gram_matrix

#: The block whose features are objects rather than texture.
OBJECT_BLOCK = 5
#: The painting's long side while it is measured.
MEASURE_SIDE = 320
#: Non-stationarity up to which a layer keeps its weight, and from which it is off.
TEXTURE, OBJECTS = 0.45, 0.75
#: Windows per side (overlapping, each half the layer's height and width).
WINDOWS = 3


def nonstationarity(features: torch.Tensor) -> float:
    """How much the Gram of a half-size window differs from the whole layer's, as a share
    of the Gram's mean power (mean over a 3×3 grid of overlapping windows): about 0 for a
    texture, over 0.75 where the layer sees objects."""
    whole = gram_matrix(features)
    power = float(whole.pow(2).mean()) or 1.0
    height, width = features.shape[-2:]
    half_h, half_w = max(1, height // 2), max(1, width // 2)
    differences = []
    for row in range(WINDOWS):
        for column in range(WINDOWS):
            top = (height - half_h) * row // (WINDOWS - 1)
            left = (width - half_w) * column // (WINDOWS - 1)
            window = features[..., top : top + half_h, left : left + half_w]
            differences.append(float((gram_matrix(window) - whole).pow(2).mean()) / power)
    return sum(differences) / len(differences)


def texture_share(value: float) -> float:
    """A layer's weight factor for its non-stationarity: 1 for a texture, 0 for objects."""
    return min(1.0, max(0.0, (OBJECTS - value) / (OBJECTS - TEXTURE)))


def object_layers(layers: Mapping[str, float]) -> list[str]:
    """The weighed style layers of the object block."""
    return [name for name, weight in layers.items() if weight and layer_block(name) >= OBJECT_BLOCK]


@torch.no_grad()
def texture_shares(
    extractor: FeatureExtractor, painting: torch.Tensor, layers: Mapping[str, float]
) -> dict[str, float]:
    """Each object-block style layer's factor for this painting ([1, 3, H, W] in [0, 1]);
    layers of other blocks are not listed (they keep their weight)."""
    names = object_layers(layers)
    if not names:
        return {}
    height, width = painting.shape[-2:]
    scale = MEASURE_SIDE / max(height, width)
    size = (max(32, round(height * scale)), max(32, round(width * scale)))
    measured = torch.nn.functional.interpolate(
        painting, size=size, mode="bilinear", antialias=True, align_corners=False
    )
    features = extractor(measured.clamp(0.0, 1.0), names)
    return {name: texture_share(nonstationarity(features[name].float())) for name in names}
