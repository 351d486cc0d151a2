"""Measures of a result that nst does not optimise: how close its texture and palette are to
the painting's, how much of the photo's structure it keeps, and whether objects of the
painting (faces) appeared in it.

- style distance: the sliced Wasserstein distance between the result's and the painting's
  VGG19 features at relu1_1 … relu5_1, each layer over the painting's own spread, averaged,
  with both images at MEASURE_SIDE px (so results of any size compare, and a print-size one
  costs what a screen-size one does). Unlike a Gram distance it compares whole feature
  distributions, not their second moments.
- palette distance: the sliced Wasserstein distance between the result's and the painting's
  pixel colours in CIELAB (units: ΔE, about 1 = a just-visible difference).
- structure: SSIM of the luminance of result and photo at a quarter of the size (the strokes
  themselves do not count against it; the layout does).
- faces: frontal faces (people, cats) that two of OpenCV's bundled detectors agree on in the
  result, and not at the same place in the photo: a painting's objects painted into the photo.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: The layers of the style distance, and the long side both images are measured at.
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
MEASURE_SIDE = 256
#: Random directions the sliced distances average over, and the most positions they use.
PROJECTIONS = 128
MAX_POINTS = 8192


def sliced_wasserstein(
    points: torch.Tensor, reference: torch.Tensor, projections: int = PROJECTIONS, seed: int = 0
) -> float:
    """The sliced 2-Wasserstein distance between two point clouds [N, D] and [M, D]: the root
    mean square, over random unit directions, of the distance between the sorted projections
    (the 1-D optimal transport), compared at the same quantiles."""
    generator = torch.Generator().manual_seed(seed)
    a, b = _subsample(points), _subsample(reference)
    directions = torch.randn(a.shape[1], projections, generator=generator, dtype=torch.float64)
    directions /= directions.norm(dim=0, keepdim=True)
    # numpy's sort (vectorised) is several times torch's on a CPU; the order is the same.
    pa = np.sort((a.double() @ directions).numpy(), axis=0)
    pb = np.sort((b.double() @ directions).numpy(), axis=0)
    count = min(len(pa), len(pb))
    quantiles = (np.arange(count, dtype=np.float64) + 0.5) / count
    return math.sqrt(float(((_at(pa, quantiles) - _at(pb, quantiles)) ** 2).mean()))


def _subsample(points: torch.Tensor) -> torch.Tensor:
    # An even stride, not a random draw: the same cloud always gives the same sample.
    if len(points) <= MAX_POINTS:
        return points
    # In integers: a float32 linspace rounds past the last index from ~2e7 points on.
    return points[torch.arange(MAX_POINTS) * (len(points) - 1) // (MAX_POINTS - 1)]


def _at(sorted_values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Each column's values at these quantiles (nearest rank)."""
    index = np.minimum((quantiles * len(sorted_values)).astype(np.int64), len(sorted_values) - 1)
    return sorted_values[index]


def style_distance(
    features: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]
) -> dict[str, float]:
    """Per layer, the sliced Wasserstein distance between the two images' features [1, C, H,
    W], in units of the reference's spread along a random direction (its RMS distance from
    its mean over √C), so layers of any scale and width compare: 0 is the painting's own
    distribution, 1 a shift by its typical spread."""
    out = {}
    for name in reference:
        mine = features[name][0].flatten(1).T.float()
        theirs = reference[name][0].flatten(1).T.float()
        spread = float((theirs - theirs.mean(0)).pow(2).mean().sqrt()) or 1.0
        out[name] = sliced_wasserstein(mine, theirs) / spread
    return out


def srgb_to_lab(pixels: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] (…, 3) to CIELAB (D65)."""
    linear = np.where(pixels <= 0.04045, pixels / 12.92, ((pixels + 0.055) / 1.055) ** 2.4)
    xyz = (
        linear
        @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
    )
    xyz = xyz / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack(
        [116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])],
        axis=-1,
    )


def palette_distance(image: np.ndarray, reference: np.ndarray) -> float:
    """The sliced Wasserstein distance between two images' colours in CIELAB (ΔE units);
    images H×W×3 in [0, 1]."""
    # The positions are picked first (the same ones sliced_wasserstein would pick), so only
    # those are converted: the same distance, without a Lab copy of a print-size image.
    a = _subsample(torch.from_numpy(image.reshape(-1, 3)))
    b = _subsample(torch.from_numpy(reference.reshape(-1, 3)))
    return sliced_wasserstein(
        torch.from_numpy(srgb_to_lab(a.numpy())), torch.from_numpy(srgb_to_lab(b.numpy()))
    )


def structure(image: np.ndarray, reference: np.ndarray) -> float:
    """SSIM of the two images' luminance at a quarter of the size (Gaussian window, σ 1.5),
    images H×W×3 in [0, 1] of one size."""
    import cv2

    def luma(pixels: np.ndarray) -> np.ndarray:
        y = (pixels @ np.array([0.299, 0.587, 0.114])).astype(np.float64)
        size = (max(8, y.shape[1] // 4), max(8, y.shape[0] // 4))
        return cv2.resize(y, size, interpolation=cv2.INTER_AREA)

    x, y = luma(image), luma(reference)

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (11, 11), 1.5)

    mx, my = blur(x), blur(y)
    vx, vy, cov = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ssim = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return float(ssim.mean())


#: OpenCV's bundled cascades for the objects that leak most often, faces of people and cats,
#: each with a second cascade that must agree where it fires: a strong texture now and then
#: passes one detector, seldom two trained apart.
CASCADES = {
    "haarcascade_frontalface_default.xml": "haarcascade_frontalface_alt2.xml",
    "haarcascade_frontalcatface_extended.xml": "haarcascade_frontalcatface.xml",
}
#: The short side faces are searched at (24 px, the detectors' window, is a tenth of it).
DETECT_SHORT_SIDE = 240


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    width: int
    height: int

    def overlaps(self, other: Box) -> bool:
        """Whether the two boxes share at least a third of the smaller one."""
        dx = min(self.x + self.width, other.x + other.width) - max(self.x, other.x)
        dy = min(self.y + self.height, other.y + other.height) - max(self.y, other.y)
        smaller = min(self.width * self.height, other.width * other.height)
        return dx > 0 and dy > 0 and dx * dy >= smaller / 3


def faces(image: np.ndarray) -> list[Box] | None:
    """Frontal faces (people and cats) at least a tenth of the short side tall, in an H×W×3
    image in [0, 1], upright or turned by a quarter, half or three-quarter turn (a painted-in
    face is often on its side or upside down), each once, as boxes in the image's own
    coordinates; None where this OpenCV build ships no detectors (opencv-python 5 dropped the
    cascade files).

    The search runs on a copy whose short side is DETECT_SHORT_SIDE px, where such a face is
    the detectors' own 24 px window: the cost of a screen-size search at any size."""
    import cv2

    folder = Path(getattr(getattr(cv2, "data", None), "haarcascades", "") or "")
    if not all((folder / name).is_file() for pair in CASCADES.items() for name in pair):
        return None
    grey = cv2.equalizeHist(
        np.clip(image @ np.array([0.299, 0.587, 0.114]) * 255, 0, 255).astype(np.uint8)
    )
    height, width = grey.shape
    scale = min(1.0, DETECT_SHORT_SIDE / min(height, width))
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    small_height, small_width = grey.shape
    found: list[Box] = []
    for name, second in CASCADES.items():
        detector, confirmer = _cascade(folder / name), _cascade(folder / second)
        for turns in range(4):
            turned = np.ascontiguousarray(np.rot90(grey, turns))
            for x, y, w, h in detector.detectMultiScale(turned, 1.1, 6, minSize=(24, 24)):
                if not _confirmed(confirmer, turned, int(x), int(y), int(w), int(h)):
                    continue
                box = _unturned(int(x), int(y), int(w), int(h), turns, small_height, small_width)
                box = _scaled(box, 1 / scale)
                # One face, once: the people and cat detectors, or two turns, can both
                # find it (a painted wheel was counted as two new faces).
                if not any(box.overlaps(other) for other in found):
                    found.append(box)
    return found


@functools.cache
def _cascade(path: Path) -> Any:
    """A detector, read once per process (reading the four takes ~30 ms)."""
    import cv2

    return cv2.CascadeClassifier(str(path))


def _confirmed(confirmer: Any, grey: np.ndarray, x: int, y: int, w: int, h: int) -> bool:
    """Whether the second cascade finds a face of about this size round this box."""
    margin = w // 2
    crop = grey[max(0, y - margin) : y + h + margin, max(0, x - margin) : x + w + margin]
    least = (int(w * 0.7), int(h * 0.7))
    return len(confirmer.detectMultiScale(np.ascontiguousarray(crop), 1.05, 3, minSize=least)) > 0


def _scaled(box: Box, factor: float) -> Box:
    if factor == 1:
        return box
    return Box(*(round(v * factor) for v in (box.x, box.y, box.width, box.height)))


def _unturned(x: int, y: int, w: int, h: int, turns: int, height: int, width: int) -> Box:
    """A box found in the image turned `turns` quarter turns (np.rot90), in the original."""
    for step in range(turns, 0, -1):  # undo the last quarter turn first
        # np.rot90 maps (row r, column c) of the image before it to (before_width - 1 - c, r).
        before_width = width if (step - 1) % 2 == 0 else height
        x, y, w, h = before_width - y - h, x, h, w
    return Box(x, y, w, h)


def new_faces(image: np.ndarray, content: np.ndarray) -> list[Box] | None:
    """Faces in the result that are not where the photo has one (None: no detectors). The
    photo is searched only when the result holds a face."""
    in_result = faces(image)
    if not in_result:
        return in_result
    in_photo = faces(content)
    if in_photo is None:
        return None
    return [box for box in in_result if not any(box.overlaps(p) for p in in_photo)]
