"""The sections of a config (layers, weights, optimizer, loss, model) and one style of a blend: each key's type, bounds and meaning."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from nst_cli.config.choices import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_LR,
    DEFAULT_STYLE_LAYERS,
    MAX_CLIP_FPS,
    MIN_CLIP_FPS,
    VIDEO_SUFFIXES,
    WEIGHT_SOURCES,
)
from nst_cli.core.layers import unknown_layer_message


def finite(value: float, *, allow_zero: bool = True) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (not NaN or inf)")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError("must be positive" if not allow_zero else "must be >= 0")
    return value


#: A whole number given as a number (YAML `true` is not 1 step).
StrictPositiveInt = Annotated[int, Field(strict=True, gt=0)]


def whole_numbers(value: Any, alternative: str) -> Any:
    """Check an int > 0, or a list of them; booleans are not numbers here."""
    items = value if isinstance(value, list) else [value]
    if isinstance(value, list) and not alternative and not value:
        return value
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            also = f", or {alternative}" if alternative else ""
            raise ValueError(f"Input should be a valid integer{also} (got {item!r})")
        if item <= 0:
            raise ValueError(f"Input should be greater than 0 (got {item})")
    if isinstance(value, list) and alternative and not value:
        raise ValueError("Input should be a number, or a non-empty list, one per scale")
    return value


def check_layer_map(value: dict[str, float]) -> dict[str, float]:
    for name, weight in value.items():
        message = unknown_layer_message(name)
        if message:
            raise ValueError(message)
        finite(weight)
    return value


#: A whole number > 0 given as a number (YAML `true` is not 1 step), or `auto`.
StrictPositiveIntOrAuto = Annotated[int, Field(strict=True, gt=0)] | Literal["auto"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StyleImage(Strict):
    """One painting of a blend of styles."""

    path: Path = Field(description="the style image")
    weight: float = Field(
        default=1.0, description="its share of the blend (weights are normalised)"
    )
    scale: float | None = Field(
        default=None, description="its size relative to the output; null: style_scale"
    )

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: float) -> float:
        return finite(value)

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: float | None) -> float | None:
        return None if value is None else finite(value, allow_zero=False)


class LayersConfig(Strict):
    """Which VGG layers feed each loss, with a per-layer weight."""

    content: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_CONTENT_LAYERS),
        description="VGG layer → weight for the content loss (may be `{}` for pure texture synthesis)",
    )
    style: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_STYLE_LAYERS),
        description="VGG layer → weight for the style loss (at least one); with `loss.normalize` unit weights are balanced",
    )

    @field_validator("content")
    @classmethod
    def _content(cls, value: dict[str, float]) -> dict[str, float]:
        return check_layer_map(value)

    @field_validator("style")
    @classmethod
    def _style(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("needs at least one layer, e.g. {relu1_1: 1.0}")
        return check_layer_map(value)


class WeightsConfig(Strict):
    """Loss weights: total = content·L_content + style·L_style + tv·L_tv."""

    content: float = Field(default=1.0, description="α")
    style: float = Field(default=2.0, description="β")
    tv: float = Field(default=0.0, description="γ, total-variation smoothing")
    palette: float = Field(
        default=1.0,
        description="the palette term's weight: the image's colours matched to the painting's as a distribution (sliced Wasserstein of pixel colours, relative to the photo's own distance); with `color: style` and `luminance` (whose run is the default one), not with `histogram` or masks",
    )

    faces: float = Field(
        default=0.25,
        description="with `protect: faces`: the weight of the content term inside the photo's faces (relative errors at relu3_1 and relu4_2 over each face's box); 0.25 keeps a face readable and still lightly painted, 1 keeps it nearly as photographed",
    )

    @field_validator("content", "style", "tv", "palette", "faces")
    @classmethod
    def _weights(cls, value: float) -> float:
        return finite(value)


class OptimizerConfig(Strict):
    """Which optimiser moves the pixels, and how fast."""

    name: Literal["lbfgs", "adam"] = Field(
        default="lbfgs", description="`lbfgs` (projected L-BFGS, see below) or `adam`"
    )
    lr: float | None = Field(
        default=None,
        description="step size (the image is RGB in [0, 1]); an explicit lr far outside the optimiser's range is warned about",
    )
    #: L-BFGS: curvature pairs kept (a checkpoint stores the newest few; see checkpoints.py).
    history_size: Annotated[int, Field(strict=True, ge=1, le=1000)] = Field(
        default=20, description="L-BFGS curvature pairs kept"
    )
    #: L-BFGS: the largest RMS change of the pixels in one step (None: no limit).
    trust_region: float | None = Field(
        default=0.05, description="L-BFGS: largest RMS pixel change in one step (`null`: none)"
    )
    #: L-BFGS: the curvature model's starting matrix (see lbfgs.pyramid; Config.preconditioner).
    precondition: Literal["auto", "none", "pyramid", "light-pyramid"] = Field(
        default="auto",
        description="L-BFGS: `pyramid` starts each step's curvature model from one that moves coarse structure first (coarse grids boosted by their cell size), `light-pyramid` from the same with a quarter of the boost, `none` from the identity; `auto`: `pyramid` on the first scale, `light-pyramid` on later ones, `none` with `masks` (see How the defaults were chosen)",
    )
    #: L-BFGS: start each finer scale with the previous scale's curvature pairs, resized
    #: (lbfgs.carry_history), rather than with none.
    carry_history: bool = Field(
        default=True,
        description="L-BFGS, coarse to fine: each finer scale starts with the previous scale's curvature pairs, resized to it, instead of none (no change to the pictures; 2% lower raw objective at 448 px, see Performance)",
    )

    @field_validator("lr", "trust_region")
    @classmethod
    def _lr(cls, value: float | None) -> float | None:
        return None if value is None else finite(value, allow_zero=False)

    @property
    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.name]


class LossConfig(Strict):
    """How each layer's term is scaled (see losses.style_transfer_loss)."""

    normalize: bool = Field(
        default=True,
        description="every term a relative error (see the formulas), so one β means the same on any weights, size and pair; `false`: the raw means, comparable with other tools",
    )
    gram: Literal["mean", "sum"] = Field(
        default="mean",
        description="`mean`: G = F·Fᵀ/(C·H·W); `sum`: G = F·Fᵀ with the layer loss divided by C·H·W (the seed recipe). With `normalize` both give the same run",
    )
    style: Literal["gram", "wasserstein"] = Field(
        default="gram",
        description="the style statistic: `gram` (Gram matrices, Gatys et al.) or `wasserstein` (each layer's feature mean and covariance, matched by the 2-Wasserstein distance between Gaussians; see Creative control)",
    )
    objects: Literal["avoid", "allow"] = Field(
        default="avoid",
        description="`avoid`: the faces (people, cats) found in the painting are left out of its block-5 Grams (relu5_1 …), with a margin, so they are not painted into the photo while the rest of a composed painting keeps its deepest layer; a painting whose deepest features vary from place to place with nothing found (an animal in profile) has the layer turned down as far as they vary; `allow`: every style layer at its weight over the whole painting",
    )


class ModelConfig(Strict):
    """The frozen feature network."""

    weights: str = Field(
        default="caffe",
        description="`caffe`, `torchvision`, `random`, or a path to a `.pth` state dict",
    )
    pooling: Literal["max", "avg"] = Field(default="max", description="`max` or `avg`")
    preprocessing: Literal["auto", "caffe", "torchvision", "symmetric"] = Field(
        default="auto",
        description="`auto`, `caffe`, `torchvision`, or `symmetric` ((x − 0.5)/0.5, the seed recipe's): the input convention of the weights",
    )

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        if value in WEIGHT_SOURCES:
            return value
        if value.endswith((".pth", ".pt", ".bin")):
            return value
        raise ValueError(
            f"{value!r} is not a weight source: use caffe, torchvision, random, "
            "or a path to a .pth state dict"
        )


class VideoConfig(Strict):
    """`nst video`: how a clip's frames are tied together (Ruder et al. 2016). Unused by
    `nst stylize`."""

    temporal_weight: float = Field(
        default=100.0,
        description="weight of the temporal loss: the mean squared difference (pixels in 0–1) between a frame and the previous stylised frame warped onto it, over the pixels the optical flow can be trusted for; 0 turns it off (each frame still starts from the warped previous one)",
    )
    steps: StrictPositiveIntOrAuto = Field(
        default="auto",
        description="optimiser updates for each frame after the first, at full size, one scale (they start from the previous stylised frame, close to done); `auto`: a fifth of the first frame's `steps` (32 for 160)",
    )
    long_term: bool = Field(
        default=False,
        description="also hold each frame to frames t−2 and t−4 where the nearer ones did not see a pixel (the paper's long-term consistency): steadier where a moving object uncovers what an earlier frame showed; two more optical flows per frame",
    )
    flow: Literal["ultrafast", "fast", "medium"] = Field(
        default="medium",
        description="OpenCV DIS optical flow preset: `medium` is the most accurate, `ultrafast` the quickest",
    )
    max_frames: Annotated[int, Field(strict=True, gt=0)] | None = Field(
        default=None,
        description="stylise only the first this many frames (a quick look at a long clip); null: all",
    )
    fps: float | None = Field(
        default=None,
        description="frame rate of the output when the input is a folder of frames (default 25), from 0.01 to 1000; a video file's own frame rate is always kept",
    )
    output: Path | None = Field(
        default=None,
        description="the stylised clip (`.mp4`, `.webm` or `.gif`); null: `<run folder>/video.mp4`",
    )

    @field_validator("temporal_weight")
    @classmethod
    def _temporal_weight(cls, value: float) -> float:
        return finite(value)

    @field_validator("fps")
    @classmethod
    def _fps(cls, value: float | None) -> float | None:
        if value is None:
            return None
        value = finite(value, allow_zero=False)
        if not MIN_CLIP_FPS <= value <= MAX_CLIP_FPS:
            raise ValueError(
                f"{value:g} frames per second is outside {MIN_CLIP_FPS:g}–{MAX_CLIP_FPS:g} (25 is a film's)"
            )
        return value

    @field_validator("output")
    @classmethod
    def _output(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(
                f"nst video writes {', '.join(VIDEO_SUFFIXES)}, not {value.suffix or 'a file without an extension'!r}; name the output e.g. clip.mp4"
            )
        return value
