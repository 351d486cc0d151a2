"""Texture, not objects: the painting's faces and animals are left out of its deepest
statistics, so they are not painted into the photo.

VGG19's last block (relu5_x) answers to whole objects, and its Gram matrix, matched at full
weight, paints the painting's objects into the photo: the astronaut's face over a rocket's
sky. The shallower layers do not (with relu5_1 off no face forms, see docs/defaults.md).

Two rules, each for what it sees:

- **Found objects.** The faces (people, cats) OpenCV's detectors find in the painting
  (`core.measures.faces`) are left out of the block-5 Gram, with a margin round each box as
  wide as the layer's reach (`object_mask`, a guided Gram over the rest of the painting). A
  composed painting keeps its deepest layer everywhere else: Hokusai's sea, a bedroom's
  perspective, a dancer's room. Where the boxes leave less than `MIN_KEPT` of the painting (a
  close portrait), the layer is off.
- **Objects the detectors miss** (a cat seen from the side, a face in profile): a block-5
  layer is still turned down as far as the painting is not stationary there (the Gram of
  each half-size window against the whole painting's). Real paintings are composed, so this
  is calibrated on them: Hokusai's wave measures 1.03, Van Gogh's bedroom 0.69, Degas's
  dance foyer 0.64, a cat photo 1.57, a close portrait 1.8-2.6. Below `TEXTURE` the layer
  keeps its weight, above `OBJECTS` it is off, linearly between. Measured with the painting
  at `MEASURE_SIDE` px, so the answer does not change with the run's resolution or scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from nst_cli.core.features import FeatureExtractor
from nst_cli.core.layers import layer_block
from nst_cli.core.losses.gram import gram_matrix
from nst_cli.core.measures import faces

#: A found object's box as shares of the painting's width and height: (left, top, right, bottom).
Fraction = tuple[float, float, float, float]

#: The block whose features are objects rather than texture.
OBJECT_BLOCK = 5
#: The painting's long side while it is measured.
MEASURE_SIDE = 320
#: The largest long side faces are looked for at (the detectors search at a fixed size).
DETECT_SIDE = 1024
#: Non-stationarity up to which a layer keeps its weight, and from which it is off.
TEXTURE, OBJECTS = 1.1, 1.5
#: Round a found face, the share of its box's size on each side that the deepest layer also
#: leaves out (relu5_1 sees about 200 px of the painting per position: its features next to
#: a face still hold its eyes), and the share over which the mask then fades back to 1.
MARGIN, FEATHER = 0.5, 0.5
#: The least share of the painting the mask may keep for the layer to stay on.
MIN_KEPT = 0.25
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


def object_boxes(painting: np.ndarray) -> list[Fraction]:
    """The faces (people, cats) found in a painting (H×W×3 in [0, 1]), as shares of its size
    so they hold at every scale; none where this OpenCV build has no detectors."""
    height, width = painting.shape[:2]
    return [
        (box.x / width, box.y / height, (box.x + box.width) / width, (box.y + box.height) / height)
        for box in faces(painting) or []
    ]


def object_mask(
    boxes: Sequence[Fraction],
    height: int,
    width: int,
    margin: float = MARGIN,
    feather: float = FEATHER,
) -> torch.Tensor:
    """[1, 1, height, width]: 0 over each box and its margin, rising linearly to 1 over the
    feather beyond it (both as shares of the box's size); 1 where no box reaches."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    mask = torch.ones(height, width)
    for left, top, right, bottom in boxes:
        size_x, size_y = right - left, bottom - top
        # How far outside the box with its margin, in feathers (0 inside, 1 and more: clear).
        out_x = torch.maximum(left - margin * size_x - xs, xs - right - margin * size_x)
        out_y = torch.maximum(top - margin * size_y - ys, ys - bottom - margin * size_y)
        out_x, out_y = out_x / (feather * size_x), out_y / (feather * size_y)
        clear = torch.maximum(out_y[:, None], out_x[None, :]).clamp(0.0, 1.0)
        mask = torch.minimum(mask, clear)
    return mask[None, None]


def kept_share(boxes: Sequence[Fraction]) -> float:
    """How much of the painting the object mask keeps (its mean, on a 64×64 grid)."""
    return float(object_mask(boxes, 64, 64).mean()) if boxes else 1.0
