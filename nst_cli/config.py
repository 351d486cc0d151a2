"""The run configuration: pydantic models, YAML loading, overrides, one validation.

Precedence: defaults < config file < `--set key.path=value` < dedicated CLI flags.
Everything is merged into one plain dict first and validated once, so a value set by a flag
gets exactly the same checks (and error messages) as the same value in a file.
"""

from __future__ import annotations

import difflib
import glob
import math
import os
import re
import stat
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)

from .config_docs import FIELD_DOCS, plain
from .errors import ConfigError
from .layers import unknown_layer_message

DEFAULT_CONTENT_LAYERS = {"relu4_2": 1.0}
DEFAULT_STYLE_LAYERS = {
    name: 1.0 for name in ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
}
#: Default learning rate per optimiser; the image is RGB in [0, 1].
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}
#: lr ranges each optimiser works in; an explicit lr outside them gets a warning (an lr set
#: for one optimiser is wrong for the other: L-BFGS's 1.0 destroys an Adam run).
SENSIBLE_LR = {"lbfgs": (0.1, 2.0), "adam": (1e-4, 0.1)}
#: Keywords of `init` (anything else is an image path).
INIT_MODES = ("content", "noise", "style")
#: Built-in weight sources of `model.weights` (anything else is a .pth path).
WEIGHT_SOURCES = ("caffe", "torchvision", "random")
#: Device names `device` takes besides cuda:N.
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
#: `output` ending in one of these names the final image; the run folder goes beside it.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
#: Sections that are not run settings: `run` (written by the tool into a run's config.yaml)
#: and `sweep` (read by `nst sweep`); both are set aside when a config is validated.
METADATA_KEYS = ("run", "sweep")

#: Keys added after nst began saving its settings, each with the value that reproduces what
#: a run saved before them did: resuming or re-running such a run (`--resume`, `--config
#: final.png`) keeps its behaviour where today's default differs.
INTRODUCED: dict[str, Any] = {"optimizer.precondition": "none", "optimizer.carry_history": False}


def fill_introduced(data: dict[str, Any]) -> None:
    """Settings nst saved before an INTRODUCED key existed get that key's earlier value."""
    for key, value in INTRODUCED.items():
        *sections, leaf = key.split(".")
        node: Any = data
        for section in sections:
            node = node.setdefault(section, {}) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.setdefault(leaf, value)


#: The most text read as settings from a PNG (nst's own are a few kB).
MAX_EMBEDDED_CONFIG = 256 * 1024
#: Config files are small; anything bigger is the wrong file (or /dev/zero).
MAX_CONFIG_BYTES = 1_000_000
#: Bounds on what a YAML config may expand to (see safe_yaml).
MAX_YAML_DEPTH = 50
MAX_YAML_NODES = 100_000

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


# --------------------------------------------------------------------------- schedule

#: Coarse-to-fine starts near this long side: below it VGG19's deepest style layers see
#: too few positions to carry a style's large structures.
AUTO_SCALE_START = 256
#: `scales: auto` runs a single scale up to this resolution.
AUTO_SCALE_SINGLE_MAX = 384
#: The share of a coarse-to-fine run's time that its last (full-size) scale gets.
FINAL_SCALE_TIME = 0.7


@dataclass(frozen=True)
class Stage:
    """One scale of a coarse-to-fine run: its long side and its global step range."""

    index: int
    count: int
    size: int
    start: int
    end: int
    #: (long side, steps) of every scale of the run, in order: what `work_until` weighs.
    scales: tuple[tuple[int, int], ...] = ()

    @property
    def is_last(self) -> bool:
        return self.index == self.count - 1

    def work_until(self, step: int) -> float:
        """The cost of the run's steps before `step`, in steps at this scale: a step costs
        ∝ size² (pixels), so with the last scale taking 70% of the time, an ETA that counted
        steps alike would be ~3× short while the first scale runs. Steps alike where the
        run's scales are not known."""
        if not self.scales:
            return float(step)
        work, start = 0.0, 0
        for size, count in self.scales:
            work += min(max(step - start, 0), count) * (size / self.size) ** 2
            start += count
        return work + max(step - start, 0)


def auto_scales(resolution: int) -> list[int]:
    """From ~256 px up to `resolution` in steps of about √2 (one scale up to 384 px)."""
    if resolution <= AUTO_SCALE_SINGLE_MAX:
        return [resolution]
    count = max(1, round(math.log(resolution / AUTO_SCALE_START, math.sqrt(2))))
    ratio = resolution / AUTO_SCALE_START
    sizes = [round(AUTO_SCALE_START * ratio ** (i / count)) for i in range(count)]
    return [*sizes, resolution]


def split_steps(total: int, sizes: Sequence[int]) -> list[int]:
    """Share `total` steps among scales so that the last scale gets FINAL_SCALE_TIME of the
    time and the coarser ones share the rest equally (each gets at least one step).

    A step costs about size² (pixels), so a scale's steps are ∝ its time share / size². The
    coarse scales, cheap per step, lay out the style's large structures in a few steps; the
    full size, started from their upsampled result, is where the picture is finished. Giving
    every scale the same time instead left the last scale 23 of 160 steps at 512 px, and
    its strokes soft: at the same time in all, this split lowered the evaluator's style
    error 11% and its content error 10% over five pairs (README, How the defaults were
    chosen).
    """
    if len(sizes) == 1:
        return [total]
    if total < len(sizes):
        raise ValueError(f"steps: {total} is fewer than the {len(sizes)} scales {list(sizes)}")
    coarse = (1 - FINAL_SCALE_TIME) / (len(sizes) - 1)
    times = [coarse] * (len(sizes) - 1) + [FINAL_SCALE_TIME]
    shares = [time / size**2 for time, size in zip(times, sizes, strict=True)]
    exact = [total * share / sum(shares) for share in shares]
    counts = [max(1, math.floor(x)) for x in exact]
    # Hand the rounding remainder to the scales that lost the most to floor().
    by_loss = sorted(range(len(sizes)), key=lambda i: counts[i] - exact[i])
    for i in by_loss[: total - sum(counts)]:
        counts[i] += 1
    while sum(counts) > total:
        counts[counts.index(max(counts))] -= 1
    return counts


# --------------------------------------------------------------------------- presets

PresetName = Literal["fast", "balanced", "quality"]
#: How much optimiser state checkpoint.pt keeps (see nst_cli.checkpoints).
CheckpointMode = Literal["compact", "exact", "off"]
DEFAULT_PRESET: PresetName = "balanced"
#: What each preset sets; any key given explicitly (file, --set, flag) wins over these.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"scales": "auto", "steps": 60, "optimizer.name": "lbfgs"},
    "balanced": {"scales": "auto", "steps": 160, "optimizer.name": "lbfgs"},
    "quality": {"scales": "auto", "steps": 500, "optimizer.name": "lbfgs"},
}


def _has_path(data: Mapping[str, Any], key: str) -> bool:
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


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
                data = _deep_copy(data)
                for key, value in PRESETS[preset].items():
                    if not _has_path(data, key):
                        set_by_path(data, key, _deep_copy(value))
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
        higher loss; measured in README). Masked runs keep the identity: the boosted coarse
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


# --------------------------------------------------------------------------- loading


def _read_text(path: Path) -> str:
    """A config file's text: a regular file of bounded size (a FIFO or /dev/zero would hang
    or fill the memory)."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path}: is a directory, expected a YAML config file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: not a regular file; give a YAML config file")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{path}: {info.st_size:,} bytes is too large for a config (limit "
            f"{MAX_CONFIG_BYTES:,}); is it the right file?"
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file; expected a YAML config") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None


class YamlSyntaxError(ConfigError):
    """Text that is not YAML at all (callers may fall back to the plain string)."""


def safe_yaml(text: str, source: str) -> Any:
    """yaml.safe_load, bounded: nesting at most MAX_YAML_DEPTH deep, and at most
    MAX_YAML_NODES values once aliases are expanded (a "billion laughs" document of a few
    hundred bytes expands to gigabytes when the settings are walked)."""
    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise ConfigError(f"{source}: YAML nested over {MAX_YAML_DEPTH} levels deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None and _expanded_size(root, {}) > MAX_YAML_NODES:
            raise ConfigError(
                f"{source}: the YAML expands to over {MAX_YAML_NODES:,} values through its "
                "aliases (*name); a config is far smaller. Write the values out"
            )
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise YamlSyntaxError(f"{source}: not valid YAML{where}: {problem}") from None


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values the node becomes with every alias copied out (memoised: linear time)."""
    key = id(node)
    if key not in memo:
        memo[key] = 1  # a cycle counts once instead of recursing forever
        if isinstance(node, yaml.SequenceNode):
            memo[key] = 1 + sum(_expanded_size(child, memo) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            memo[key] = 1 + sum(
                _expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value
            )
    return memo[key]


def _read_yaml(path: Path) -> dict[str, Any]:
    data = safe_yaml(_read_text(path), str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys (content:, style:, …), "
            f"not a {type(data).__name__}"
        )
    if isinstance(data.get("run"), dict) and "nst_version" in data["run"]:
        fill_introduced(data)  # a run folder's config.yaml
    for key in METADATA_KEYS:
        data.pop(key, None)
    return data


def read_sweep_section(path: Path) -> object | None:
    """The `sweep:` section of a YAML config file, if any (validated by the sweep module)."""
    path = Path(path)
    if path.suffix.lower() == ".png":
        return None
    data = safe_yaml(_read_text(path), str(path)) if path.exists() else None
    return data.get("sweep") if isinstance(data, dict) else None


def _read_png_config(path: Path) -> dict[str, Any]:
    """Settings embedded by nst in a PNG's text metadata (provenance)."""
    from PIL import Image, UnidentifiedImageError

    previous_limit = Image.MAX_IMAGE_PIXELS
    # Only the text chunks are read (nst writes them before the pixels), never the pixels, so
    # Pillow's decompression-bomb check (a warning from 89 MP, an error from 179 MP) is off.
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            text = image.info.get("nst:config")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ConfigError(f"{path}: cannot read PNG ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous_limit
    if not text:
        raise ConfigError(f"{path}: this PNG carries no nst settings (only images nst wrote do)")
    if len(text) > MAX_EMBEDDED_CONFIG:
        raise ConfigError(f"{path}: the embedded nst settings are implausibly large; not read")
    try:
        data = safe_yaml(text, f"{path} (embedded nst settings)")
    except ConfigError:
        data = None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the embedded nst settings are damaged")
    fill_introduced(data)
    for key in METADATA_KEYS:
        data.pop(key, None)
    # A shared image must not decide where files are written: the run goes where the command
    # line (or the default) says.
    data.pop("output", None)
    return data


def parse_set_option(item: str) -> tuple[str, Any]:
    """Parse `key.path=value` (value read as YAML, so 1e4, true, [a, b] and {x: 1} work)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key.path=value, e.g. --set weights.style=1e5")
    key, _, raw = item.partition("=")
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {item!r}: empty key; expected key.path=value")
    try:
        value = safe_yaml(raw, f"--set {key}") if raw.strip() else None
    except YamlSyntaxError:
        value = raw
    return key, value


def set_by_path(data: dict[str, Any], key: str, value: Any, origin: str = "--set") -> None:
    """Set data['a']['b'] for key 'a.b', creating mappings on the way."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parts[: i + 1])
            raise ConfigError(f"{origin} {key}: '{where}' is a single value, not a section")
        node = child
    node[parts[-1]] = value


def _suggest(loc: Sequence[str | int]) -> str:
    """Closest valid key for an unknown one, by walking the model tree along loc."""
    model: type[BaseModel] | None = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part)) if model else None
        ann = field.annotation if field else None
        model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    if model is None:
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    if not str(loc[-1]).strip("'"):
        close = []
    valid = ", ".join(model.model_fields)
    return f" (did you mean '{close[0]}'?)" if close else f" (valid keys: {valid})"


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: `source: key.path: message`, joined into one line."""
    problems = []
    for err in exc.errors():
        loc = [str(p) if str(p).isprintable() else repr(str(p)) for p in err["loc"]]
        key = ".".join(loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            message = f"unknown key{_suggest(loc)}"
        else:
            message = err["msg"].removeprefix("Value error, ")
            shown = err["type"] not in ("missing", "value_error")
            if shown and "input" in err and not isinstance(err["input"], dict | list):
                message += f" (got {err['input']!r})"
        if not loc and re.match(r"^[a-z_.]+: ", message):
            problems.append(message)  # a whole-config check names its own key
        else:
            problems.append(f"{key}: {message}")
    return f"{source}: " + "; ".join(problems)


def map_input_paths(data: dict[str, Any], change: Callable[[str], str]) -> None:
    """Apply `change` to every input file a config dict names, in place: content, each style
    image, masks, an init image, a weights file (not the keywords those keys also take).

    The one list of which keys hold paths: rebasing a config file's relative paths, recording
    absolute ones, and shipping the files with a remote run all go through it."""

    def rebase(node: dict[str, Any], key: str, keywords: tuple[str, ...]) -> None:
        value = node.get(key)
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, str) and value and value not in keywords:
            node[key] = change(value)

    rebase(data, "content", ())
    rebase(data, "style", ())
    if isinstance(data.get("masks"), dict):
        masks = {}
        for key, value in data["masks"].items():
            holder = {"path": str(key)}
            rebase(holder, "path", ())
            masks[holder["path"]] = value
        data["masks"] = masks
    if isinstance(data.get("style"), list):
        items = [dict(i) if isinstance(i, dict) else {"path": i} for i in data["style"]]
        for item in items:
            rebase(item, "path", ())
        data["style"] = items
    rebase(data, "init", INIT_MODES)
    if isinstance(data.get("model"), dict):
        rebase(data["model"], "weights", WEIGHT_SOURCES)


def _resolve_relative(data: dict[str, Any], base: Path) -> None:
    """Paths in a config file are relative to the file's folder, not the working directory."""
    map_input_paths(
        data, lambda value: value if Path(value).expanduser().is_absolute() else str(base / value)
    )


def names_several_images(content: Path | str) -> bool:
    """`content` is a folder or a glob (photos/*.jpg) rather than one image: a batch. A file
    whose name only looks like a pattern (photo[1].jpg) is one image."""
    path = Path(str(content)).expanduser()
    return path.is_dir() or (glob.has_magic(str(content)) and not path.exists())


def input_files(config: Config) -> list[Path]:
    """Every input file the config names (see map_input_paths), each once."""
    found: dict[str, None] = {}

    def note(value: str) -> str:
        found[value] = None
        return value

    map_input_paths(config.to_yaml_dict(), note)
    return [Path(p) for p in found]


def resolve_config(
    path: Path | str | None = None,
    sets: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Merge file, `--set` items and flag overrides (dotted keys), validate once."""
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        data = _read_png_config(path) if path.suffix.lower() == ".png" else _read_yaml(path)
        _resolve_relative(data, path.resolve().parent)
    for item in sets:
        key, value = parse_set_option(item)
        set_by_path(data, key, value)
    for key, value in (overrides or {}).items():
        if value is not None:
            set_by_path(data, key, value, origin="option")
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    if config.output is None:
        config.output = Path("outputs") / default_run_name(config, path)
    if os.environ.get(TINY_ENV):
        config = shrink(config)
    return config


#: Set (to anything non-empty) to run every command at thumbnail size in a few steps: the
#: test that executes the README's commands uses it. Same settings otherwise.
TINY_ENV = "NST_TINY"


def shrink(config: Config) -> Config:
    """The same run at thumbnail size: as many scales (32, 40, 48 … px), ≤ 2 steps each,
    a frame every 2 steps."""
    stages = config.schedule()
    sizes = [32 + 8 * i for i in range(len(stages))]
    steps: int | list[int] = (
        [min(2, n) for n in config.steps]
        if isinstance(config.steps, list)
        else min(config.steps, 2 * len(stages))
    )
    return config.model_copy(
        update={
            "resolution": sizes[-1],
            "scales": sizes,
            "steps": steps,
            "save_every": min(config.save_every, 2),
        }
    )


def resume_config(
    run_dir: Path, sets: Sequence[str] = (), overrides: Mapping[str, Any] | None = None
) -> Config:
    """The config that continues the run in `run_dir`: its own config.yaml, with `sets` and
    `overrides` on top (only RESUMABLE_KEYS may differ; stylize checks that)."""
    output = (overrides or {}).get("output")
    if output is not None and Path(output).resolve() != Path(run_dir).resolve():
        raise ConfigError(
            f"--resume {run_dir} continues that folder; drop --output {output} "
            "(to branch off, copy the folder and resume the copy)"
        )
    if not (Path(run_dir) / "config.yaml").is_file():
        if (Path(run_dir) / "sweep.yaml").is_file():
            raise ConfigError(
                f"--resume {run_dir}: a sweep or batch folder; run the command that made it "
                f"again to continue it, or resume one of its runs (--resume {run_dir}/RUN)"
            )
        raise ConfigError(f"--resume {run_dir}: no config.yaml there; is it an nst run folder?")
    return resolve_config(
        Path(run_dir) / "config.yaml", sets, {**(overrides or {}), "output": str(run_dir)}
    )


def default_run_name(config: Config, path: Path | None) -> str:
    """outputs/<config name>, or <content>_<style> when there is no config file."""
    if path is not None and Path(path).suffix.lower() != ".png":
        return Path(path).stem
    content = config.content.stem if config.content else "content"
    style = "+".join(s.path.stem for s in config.style_images) or "style"
    return f"{content}_{style}"


def dump_yaml(data: Mapping[str, Any]) -> str:
    """YAML text in the key order of the model (readable, diffable)."""
    return yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True)
