"""`nst score`: how a result compares with its photo and painting, on measures nst does not
optimise (core.measures): a judge of the defaults, and a way to rank a sweep's runs."""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nst_cli.config.choices import IMAGE_SUFFIXES
from nst_cli.config.loading import read_png_config
from nst_cli.core import measures
from nst_cli.core.features import FeatureExtractor, build_extractor
from nst_cli.core.pixels import fit_long_side, resize_to
from nst_cli.errors import ConfigError, ImageError
from nst_cli.io.images import load_image

log = logging.getLogger(__name__)

#: The smallest side the style distance can measure: relu5_1 is four poolings deep.
MIN_SIDE = 16


@dataclass(frozen=True)
class Score:
    """One result's measures (lower distances are closer; structure is 1 for the photo's
    own layout); `faces` is None where this OpenCV has no face detectors."""

    style: float
    palette: float
    structure: float
    faces: int | None
    style_layers: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The headline measures, for tables and JSON."""
        return {
            "style_swd": round(self.style, 5),
            "palette_swd": round(self.palette, 3),
            "structure_ssim": round(self.structure, 4),
            "new_faces": self.faces,
        }

    def rows(self) -> list[tuple[str, str, str]]:
        """(measure, value, what it means) for a person: `nst score`'s table, the studio's."""
        faces = "no detector in this OpenCV" if self.faces is None else str(self.faces)
        return [
            ("style distance", f"{self.style:.3f}", "0 = the painting's texture"),
            ("palette distance", f"{self.palette:.2f} ΔE", "0 = the painting's colours"),
            ("structure kept", f"{self.structure:.3f}", "SSIM, 1 = the photo's layout"),
            ("new faces", faces, "painted into the photo"),
        ]


def inputs_of(result: Path) -> tuple[Path, Path]:
    """The photo and (first) painting an image nst wrote was made from, from its settings."""
    try:
        data = read_png_config(result)
    except ConfigError as exc:
        raise ConfigError(f"{exc}; give --content and --style") from None
    style = data.get("style")
    if isinstance(style, list) and style:
        paintings = [entry["path"] if isinstance(entry, dict) else entry for entry in style]
        style = paintings[0]
        if len(paintings) > 1:
            log.info(
                "%s: made from a blend of %d paintings; measured against the first, %s "
                "(--style names another)",
                result,
                len(paintings),
                style,
            )
    content = data.get("content")
    if isinstance(content, str) and (
        Path(content).suffix.lower() not in IMAGE_SUFFIXES or Path(content).is_dir()
    ):
        raise ConfigError(
            f"{result}: a frame of a video run (its photo is the clip {content}); nst score "
            "compares a still with its photo: give the clip's frame with --content, and "
            "--style"
        )
    if not isinstance(content, str) or not isinstance(style, str):
        raise ConfigError(
            f"{result}: its settings name no content and style; give --content and --style"
        )
    return Path(content), Path(style)


def _array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0


def score_result(
    result: Path, content: Path | None = None, style: Path | None = None, allow_large: bool = False
) -> Score:
    """Measure `result` against its photo and painting (read from the image's own settings
    when not given). The painting is brought to the result's long side; the textures of both
    are compared at core.measures.MEASURE_SIDE at most. `allow_large` accepts images over the
    100-megapixel limit (a print-size result)."""
    made = load_image(result, "result", allow_large)
    if content is None or style is None:
        found = inputs_of(result)
        content, style = content or found[0], style or found[1]
    photo = load_image(content, "content", allow_large)
    # A run brings the photo to its long side, so a result of it is that size to a pixel.
    fitted = fit_long_side(photo.size, max(made.size))
    if any(abs(a - b) > 1 for a, b in zip(fitted, made.size, strict=True)):
        log.warning(
            "%s: %d×%d px, another shape than the result's %d×%d; its structure is compared "
            "stretched to the result's (is this the photo the result was made from?)",
            content,
            *photo.size,
            *made.size,
        )
    photo = resize_to(photo, made.size)
    # At the result's long side, larger or smaller, as a run uses it (style_scale 1): a small
    # painting measured at its own size would compare strokes of another scale.
    painting = load_image(style, "style", allow_large)
    painting = resize_to(painting, fit_long_side(painting.size, max(made.size)))
    for path, image, what in ((result, made, ""), (style, painting, " (at the result's size)")):
        if min(_measured_size(image.size)) < MIN_SIDE:
            raise ImageError(
                f"{path}: {image.size[0]}×{image.size[1]} px{what} is too small to score; the "
                f"style distance needs at least {MIN_SIDE} px on each side"
            )
    with torch.no_grad():
        ours = _network()(_tensor(_measured(made)), list(measures.STYLE_LAYERS))
        layers = measures.style_distance(ours, _painting_features(style, painting))
    made_array, photo_array = _array(made), _array(photo)
    faces = measures.new_faces(made_array, photo_array)
    return Score(
        style=float(np.mean(list(layers.values()))),
        palette=measures.palette_distance(made_array, _array(painting)),
        structure=measures.structure(made_array, photo_array),
        faces=None if faces is None else len(faces),
        style_layers=layers,
    )


@functools.cache
def _network() -> FeatureExtractor:
    return build_extractor("caffe", measures.STYLE_LAYERS)


#: Paintings whose features are kept (a sweep scores many results of one painting).
_PAINTINGS: dict[tuple[object, ...], dict[str, torch.Tensor]] = {}
MAX_KEPT_PAINTINGS = 4


def _painting_features(path: Path, painting: Image.Image) -> dict[str, torch.Tensor]:
    """The painting's features at the measuring size, kept per file content and size."""
    key = (hashlib.sha1(path.read_bytes()).hexdigest(), painting.size)
    if key not in _PAINTINGS:
        while len(_PAINTINGS) >= MAX_KEPT_PAINTINGS:
            _PAINTINGS.pop(next(iter(_PAINTINGS)))
        _PAINTINGS[key] = _network()(_tensor(_measured(painting)), list(measures.STYLE_LAYERS))
    return _PAINTINGS[key]


def _measured_size(size: tuple[int, int]) -> tuple[int, int]:
    """The (width, height) the style distance measures an image of `size` at (never larger)."""
    if max(size) <= measures.MEASURE_SIDE:
        return size
    return fit_long_side(size, measures.MEASURE_SIDE)


def _measured(image: Image.Image) -> Image.Image:
    """The image at the style distance's measuring size."""
    return resize_to(image, _measured_size(image.size))


def _tensor(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(_array(image).astype(np.float32)).permute(2, 0, 1).unsqueeze(0)
