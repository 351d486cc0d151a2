"""The run configuration as pydantic models: every key, its type, its bounds and its meaning.

Precedence: defaults < config file < `--set key.path=value` < dedicated CLI flags. Everything
is merged into one plain dict first and validated once (`nst_cli.config.resolve`), so a value
set by a flag gets exactly the same checks and messages as the same value in a file."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from nst_cli.config.choices import (
    DEFAULT_CONTENT_LAYERS,
    DEFAULT_LR,
    DEFAULT_PRESET,
    DEFAULT_STYLE_LAYERS,
    IMAGE_SUFFIXES,
    PRESETS,
    WEIGHT_SOURCES,
    CheckpointMode,
    PresetName,
)
from nst_cli.config.docs import FIELD_DOCS, plain
from nst_cli.config.overrides import deep_copy, has_path, set_by_path
from nst_cli.core.layers import unknown_layer_message
from nst_cli.core.schedule import Stage, auto_scales, split_steps
from nst_cli.errors import ConfigError

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _finite(value: float, *, allow_zero: bool = True) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number (not NaN or inf)")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError("must be positive" if not allow_zero else "must be >= 0")
    return value


def _check_layer_map(value: dict[str, float]) -> dict[str, float]:
    for name, weight in value.items():
        message = unknown_layer_message(name)
        if message:
            raise ValueError(message)
        _finite(weight)
    return value


#: A whole number given as a number (YAML `true` is not 1 step).
StrictPositiveInt = Annotated[int, Field(strict=True, gt=0)]


def _whole_numbers(value: Any, alternative: str) -> Any:
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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StyleImage(_Strict):
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
        return _finite(value)

    @field_validator("scale")
    @classmethod
    def _scale(cls, value: float | None) -> float | None:
        return None if value is None else _finite(value, allow_zero=False)


class LayersConfig(_Strict):
    """Which VGG layers feed each loss, with a per-layer weight."""

    content: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_CONTENT_LAYERS))
    style: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_STYLE_LAYERS))

    @field_validator("content")
    @classmethod
    def _content(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_layer_map(value)

    @field_validator("style")
    @classmethod
    def _style(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("needs at least one layer, e.g. {relu1_1: 1.0}")
        return _check_layer_map(value)


class WeightsConfig(_Strict):
    """Loss weights: total = content·L_content + style·L_style + tv·L_tv."""

    content: float = 1.0
    style: float = 2.0
    tv: float = 0.0

    @field_validator("content", "style", "tv")
    @classmethod
    def _weights(cls, value: float) -> float:
        return _finite(value)


class OptimizerConfig(_Strict):
    """Which optimiser moves the pixels, and how fast."""

    name: Literal["lbfgs", "adam"] = "lbfgs"
    lr: float | None = Field(default=None, description="None = the optimiser's own default")
    #: L-BFGS: curvature pairs kept (a checkpoint stores the newest few; see checkpoints.py).
    history_size: Annotated[int, Field(strict=True, ge=1, le=1000)] = 20
    #: L-BFGS: the largest RMS change of the pixels in one step (None: no limit).
    trust_region: float | None = 0.05
    #: L-BFGS: the curvature model's starting matrix (see lbfgs.pyramid; Config.preconditioner).
    precondition: Literal["auto", "none", "pyramid", "light-pyramid"] = "auto"
    #: L-BFGS: start each finer scale with the previous scale's curvature pairs, resized
    #: (lbfgs.carry_history), rather than with none.
    carry_history: bool = True

    @field_validator("lr", "trust_region")
    @classmethod
    def _lr(cls, value: float | None) -> float | None:
        return None if value is None else _finite(value, allow_zero=False)

    @property
    def effective_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.name]


class LossConfig(_Strict):
    """How each layer's term is scaled (see losses.StyleTransferLoss)."""

    normalize: bool = True
    gram: Literal["mean", "sum"] = "mean"
    style: Literal["gram", "wasserstein"] = "gram"


class ModelConfig(_Strict):
    """The frozen feature network."""

    weights: str = "caffe"
    pooling: Literal["max", "avg"] = "max"
    preprocessing: Literal["auto", "caffe", "torchvision", "symmetric"] = "auto"

    @field_validator("weights")
    @classmethod
    def _weights(cls, value: str) -> str:
        if value in WEIGHT_SOURCES:
            return value
        if value.endswith((".pth", ".pt", ".bin")):
            return value
        raise ValueError(
            f"'{value}' is not a weight source: use caffe, torchvision, random, "
            "or a path to a .pth state dict"
        )


class Config(_Strict):
    """One stylisation run, fully specified."""

    preset: PresetName = DEFAULT_PRESET
    content: Path | None = None
    style: Path | list[StyleImage] | None = None
    masks: dict[Path, Annotated[int, Field(strict=True, ge=0)]] = Field(default_factory=dict)
    output: Path | None = None
    resolution: StrictPositiveInt = 512
    scales: list[StrictPositiveInt] | Literal["auto"] = "auto"
    style_scale: float = 1.0
    style_resize: Literal["long_side", "content_shape"] = "long_side"
    upsample: Literal["plain", "detail"] = "plain"
    color: Literal["style", "luminance", "histogram"] = "style"
    average: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    layers: LayersConfig = Field(default_factory=LayersConfig)
    weights: WeightsConfig = Field(default_factory=WeightsConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    steps: StrictPositiveInt | list[StrictPositiveInt] = 160
    save_every: StrictPositiveInt = 50
    checkpoint: CheckpointMode = "compact"
    precision: Literal["auto", "tf32", "fp32", "bf16"] = "auto"
    memory: Literal["normal", "low"] = "normal"
    compile: StrictBool = False
    init: str = "content"
    seed: Annotated[int, Field(strict=True, ge=0, lt=2**63)] = 0
    device: str = "auto"

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """A preset fills in the keys it names; keys given explicitly win."""
        # On assignment to a built Config (validate_assignment) its sections arrive as models:
        # everything is already filled in then, and the preset has nothing left to do.
        if isinstance(data, dict) and not any(isinstance(v, BaseModel) for v in data.values()):
            preset = data.get("preset", DEFAULT_PRESET)
            if isinstance(preset, str) and preset in PRESETS:
                data = deep_copy(data)
                for key, value in PRESETS[preset].items():
                    if not has_path(data, key):
                        set_by_path(data, key, deep_copy(value))
        return data

    @field_validator("style", mode="before")
    @classmethod
    def _style_items(cls, value: Any) -> Any:
        # A list may mix plain paths and {path, weight, scale} entries.
        if isinstance(value, list):
            if not value:
                raise ValueError("give at least one style image")
            return [{"path": v} if isinstance(v, str | Path) else v for v in value]
        return value

    @field_validator("style")
    @classmethod
    def _style_weights(cls, value: Any) -> Any:
        if isinstance(value, list) and sum(s.weight for s in value) <= 0:
            raise ValueError("the style weights sum to 0; give at least one a positive weight")
        return value

    @model_validator(mode="after")
    def _masks_fit_the_styles(self) -> Config:
        count = len(self.style_images)
        for mask, index in self.masks.items():
            if count and index >= count:
                raise ValueError(
                    f"masks: {mask} maps to style {index}, but there are {count} style "
                    f"image(s) (numbered from 0)"
                )
        if self.masks and self.loss.style != "gram":
            raise ValueError("masks work with loss.style: gram only")
        return self

    @property
    def network_layers(self) -> list[str]:
        """Every layer a forward pass must return (content and style), each once."""
        return list(dict.fromkeys([*self.layers.content, *self.layers.style]))

    @property
    def style_images(self) -> list[StyleImage]:
        """The style images with their blend weights (one, weight 1, for a single path)."""
        if self.style is None:
            return []
        if isinstance(self.style, list):
            return list(self.style)
        return [StyleImage(path=self.style)]

    def style_scale_of(self, index: int) -> float:
        """The scale of style image `index`: its own, else `style_scale`."""
        own = self.style_images[index].scale
        return own if own is not None else self.style_scale

    @field_validator("checkpoint", mode="before")
    @classmethod
    def _checkpoint_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false.
        return "off" if value is False else value

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_shape(cls, value: Any) -> Any:
        # One clear message instead of pydantic's one-per-union-member.
        return _whole_numbers(value, "a list of them, one per scale")

    @field_validator("scales", mode="before")
    @classmethod
    def _scales_shape(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if not isinstance(value, list):
            raise ValueError(f"use auto or a list of long sides like [256, 512] (got {value!r})")
        return _whole_numbers(value, "")

    @model_validator(mode="after")
    def _check_schedule(self) -> Config:
        if isinstance(self.scales, list):
            if not self.scales:
                raise ValueError("scales: empty list; give long-side sizes like [256, 512] or auto")
            if any(b <= a for a, b in zip(self.scales, self.scales[1:], strict=False)):
                raise ValueError(f"scales: {self.scales} must increase, e.g. [256, 512]")
            if self.scales[-1] > self.resolution:
                raise ValueError(
                    f"scales: {self.scales[-1]} is above resolution {self.resolution}; scales "
                    "are the sizes the run passes through on its way to resolution"
                )
        sizes = self.scale_sizes()
        if isinstance(self.steps, list) and len(self.steps) != len(sizes):
            raise ValueError(
                f"steps: {len(self.steps)} numbers for {len(sizes)} scales {sizes}; give "
                "one total or one number per scale"
            )
        if isinstance(self.steps, int) and self.steps < len(sizes):
            raise ValueError(
                f"steps: {self.steps} is fewer than the {len(sizes)} scales {sizes}; raise "
                "steps or set scales: [resolution]"
            )
        return self

    @field_validator("output")
    @classmethod
    def _output(cls, value: Path | None) -> Path | None:
        if value is not None and any(len(part.encode()) > 255 for part in value.parts):
            raise ValueError(
                "a folder name in it is over 255 bytes, longer than file systems allow"
            )
        return value

    @field_validator("style_scale")
    @classmethod
    def _style_scale(cls, value: float) -> float:
        return _finite(value, allow_zero=False)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE_PATTERN.match(value):
            raise ValueError(f"'{value}' is not a device: use auto, cpu, cuda, cuda:N or mps")
        return value

    @field_validator("init")
    @classmethod
    def _init(cls, value: str) -> str:
        if not value:
            raise ValueError("use content, noise, style or an image path")
        return value

    def scale_sizes(self) -> list[int]:
        """The long sides the run passes through, ending at `resolution`."""
        if self.scales == "auto":
            return auto_scales(self.resolution)
        sizes = list(self.scales)
        return sizes if sizes[-1] == self.resolution else [*sizes, self.resolution]

    def preconditioner(self, stage: int) -> str:
        """optimizer.precondition at this stage, `auto` decided: the pyramid on the first
        scale, which starts from the photo and must build the style's large structure; on
        later ones, which start from an upsampled result and must add fine detail, the pyramid
        at a quarter of its boost (the full one there left a fine grain, the identity a
        higher loss; measured: docs/defaults.md). Masked runs keep the identity: the boosted coarse
        grids carry each step across the masks' borders (a test of regions kept apart lost 3%
        of its margin)."""
        if self.optimizer.precondition != "auto":
            return self.optimizer.precondition
        if self.masks:
            return "none"
        return "pyramid" if stage == 0 else "light-pyramid"

    def schedule(self) -> list[Stage]:
        """Each scale with its global step range [start, end)."""
        sizes = self.scale_sizes()
        counts = self.steps if isinstance(self.steps, list) else split_steps(self.steps, sizes)
        scales = tuple(zip(sizes, counts, strict=True))
        stages, start = [], 0
        for index, (size, count) in enumerate(scales):
            stages.append(Stage(index, len(sizes), size, start, start + count, scales))
            start += count
        return stages

    @property
    def total_steps(self) -> int:
        """Optimiser updates over all scales."""
        return sum(self.steps) if isinstance(self.steps, list) else self.steps

    @property
    def output_dir(self) -> Path:
        """The run folder (resolve_config always fills in a default). An `output` naming an
        image (result.png) puts the run folder beside it, named after it (result/)."""
        if self.output is None:
            raise ConfigError("output: no run folder set; pass --output")
        output = Path(self.output)
        return output.with_suffix("") if self.output_image else output

    @property
    def output_image(self) -> Path | None:
        """Where the final image is also written, when `output` names an image file."""
        if self.output is not None and Path(self.output).suffix.lower() in IMAGE_SUFFIXES:
            return Path(self.output)
        return None

    def to_yaml_dict(self) -> dict[str, Any]:
        """Plain, YAML-safe dict of every setting (defaults filled in)."""
        return self.model_dump(mode="json")


def _describe(model: type[BaseModel], prefix: str = "") -> None:
    """Give every field its description from config_docs.FIELD_DOCS (sections: their doc)."""
    for name, info in model.model_fields.items():
        section = info.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            info.description = (section.__doc__ or "").strip().splitlines()[0]
            _describe(section, f"{prefix}{name}.")
        else:
            info.description = plain(FIELD_DOCS[f"{prefix}{name}"][1])
    model.model_rebuild(force=True)


_describe(Config)
