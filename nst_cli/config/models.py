"""The run configuration as pydantic models: every key, its type, its bounds and its meaning.

Precedence: defaults < config file < `--set key.path=value` < dedicated CLI flags. Everything
is merged into one plain dict first and validated once (`nst_cli.config.resolve`), so a value
set by a flag gets exactly the same checks and messages as the same value in a file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, StrictBool, field_validator, model_validator

from nst_cli.config.choices import (
    DEFAULT_PRESET,
    FRAMES_PER_RUN,
    IMAGE_SUFFIXES,
    MAX_RESOLUTION,
    PRESETS,
    UNWRITABLE_SUFFIXES,
    CheckpointMode,
    PresetName,
)
from nst_cli.config.overrides import deep_copy, has_path, set_by_path
from nst_cli.config.sections import (
    LayersConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    Strict,
    StrictPositiveInt,
    StyleImage,
    VideoConfig,
    WeightsConfig,
    finite,
    whole_numbers,
)
from nst_cli.core.schedule import MIN_STEPS_PER_SCALE, Stage, auto_scales, split_steps
from nst_cli.errors import ConfigError

_DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


class Config(Strict):
    """One stylisation run, fully specified."""

    preset: PresetName = Field(
        default=DEFAULT_PRESET,
        description="`fast`, `balanced` or `quality`: sets `steps` only, 60, 160 or 500 (table below); `steps` given explicitly wins",
    )
    content: Path | None = Field(
        default=None,
        description="content image (the photo); a folder or a glob (`photos/*.jpg`) makes a batch, one run per image",
    )
    style: Path | list[StyleImage] | None = Field(
        default=None,
        description="style image (the painting), or a list of them to blend: paths or `{path, weight, scale}` (weights default 1 and are normalised; `scale` defaults to `style_scale`)",
    )
    masks: dict[Path, Annotated[int, Field(strict=True, ge=0)]] = Field(
        default_factory=dict,
        description="spatial control: mask image → index of a style in `style` (from 0), e.g. `{sky.png: 0, road.png: 1}`; a mask has the content's aspect ratio, white = this style, grey = partly, black = not; where no mask covers, only the content loss applies (Gram style loss only)",
    )
    output: Path | None = Field(default=None, description="run folder")
    resolution: Annotated[int, Field(strict=True, gt=0, le=MAX_RESOLUTION)] = Field(
        default=512,
        description=f"long side of the output in px, at most {MAX_RESOLUTION:,}; the content's aspect ratio is kept",
    )
    scales: list[StrictPositiveInt] | Literal["auto"] = Field(
        default="auto",
        description="coarse-to-fine: the long sides the run passes through, e.g. `[256, 512]`, increasing, each ≤ `resolution` (which is appended if the list stops short). `auto`: one scale up to 384 px, else from 256 px up to `resolution` in steps of about √2 (512 → 256, 362, 512); at most one scale per 10 `steps` (fewer steps run fewer scales, and say so)",
    )
    style_scale: float = Field(
        default=1.0,
        description="style image long side = scale × `style_scale`, aspect kept (never squashed to the content's shape)",
    )
    style_resize: Literal["long_side", "content_shape"] = Field(
        default="long_side",
        description="`long_side` (as above) or `content_shape`: the style is squashed to the content's exact shape (the seed recipe's way; `style_scale` is then unused)",
    )
    upsample: Literal["plain", "detail"] = Field(
        default="plain",
        description="how each finer scale starts: `plain` upsamples the result so far (bicubic); `detail` also adds the content's detail at the new size (the band the coarser image could not hold), so the finer scale starts sharp",
    )
    color: Literal["style", "luminance", "histogram"] = Field(
        default="style",
        description="`style`: the palette follows the painting; `luminance`: the default run, then every saved image takes the content's colours (chroma) and keeps the result's luminance, so the painting's texture is as strong as with `style`; `histogram`: the style image's colours are first matched to the content's (mean and covariance in RGB)",
    )
    protect: Literal["faces", "off"] = Field(
        default="faces",
        description="`faces`: faces OpenCV's detectors find in the photo are held to the photo's features harder (a content term inside each face's box, feathered, at `weights.faces`), so eyes, nose and mouth stay readable while the rest is painted; `off`: every pixel alike",
    )
    match_luminance: StrictBool = Field(
        default=True,
        description="with `color: luminance`: the painting's luminance is first matched to the photo's (its mean and spread, Gatys et al. 2016), so a night photo stays dark; `false` keeps the painting's own light",
    )
    average: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0,
        description="`0.9`, say: frames and the final image are an exponential moving average of the iterates (weight of the past), smoother, mostly useful with Adam; `0` saves the iterate itself",
    )
    layers: LayersConfig = Field(
        default_factory=LayersConfig,
        description="Which VGG layers feed each loss, with a per-layer weight.",
    )
    weights: WeightsConfig = Field(
        default_factory=WeightsConfig,
        description="Loss weights: total = content·L_content + style·L_style + tv·L_tv.",
    )
    loss: LossConfig = Field(
        default_factory=LossConfig,
        description="How each layer's term is scaled (see losses.style_transfer_loss).",
    )
    optimizer: OptimizerConfig = Field(
        default_factory=OptimizerConfig,
        description="Which optimiser moves the pixels, and how fast.",
    )
    model: ModelConfig = Field(
        default_factory=ModelConfig, description="The frozen feature network."
    )
    steps: StrictPositiveInt | list[StrictPositiveInt] = Field(
        default=160,
        description="optimiser updates in all, shared among the scales so the last (full-size) one gets 70% of the time and the coarser ones equal parts of the rest (160 at 512 px → 60, 30, 70), or one number per scale, e.g. `[100, 40]`",
    )
    save_every: StrictPositiveInt | Literal["auto"] = Field(
        default="auto",
        description="a frame (and a checkpoint) every this many steps; `auto`: about 50 frames over the run (every `steps // 50` steps, at least 1), so `nst gif` has an animation to show; larger than `steps` means only step 0",
    )
    checkpoint: CheckpointMode = Field(
        default="compact",
        description="`compact` (~60 B/px, resume within 2%), `exact` (~520 B/px, resume exact) or `off`",
    )
    precision: Literal["auto", "tf32", "fp32", "bf16"] = Field(
        default="auto",
        description="`auto` (`tf32` on CUDA, `bf16` on a CPU that computes bfloat16 natively (Intel AMX, AVX-512 BF16: AMD Zen 4 and later), `fp32` elsewhere; config.yaml's `run:` says which), `tf32` (float32, TensorFloat-32 matmuls/convolutions on CUDA; plain float32 elsewhere), `fp32` (strict float32), `bf16` (the network in bfloat16, as under autocast; Grams and losses stay float32)",
    )
    memory: Literal["normal", "low"] = Field(
        default="normal",
        description="`low` recomputes each VGG block's interior in the backward pass (activation checkpointing) instead of storing it, and keeps the L-BFGS history in float16, and memory freed by a step goes back to the system rather than being kept for the next: less memory, more time (see Performance)",
    )
    max_memory: Annotated[float, Field(gt=0)] | None = Field(
        default=None,
        description="GiB a run may plan on at most, on a shared machine: it tiles, or is refused, to stay under it; null: 80% of the least of the machine's memory (or the GPU's), its container's limit and `ulimit -v`",
    )
    tile: Literal["auto", "off"] | Annotated[int, Field(strict=True, ge=64)] = Field(
        default="auto",
        description="run the network over the image in tiles of about this many px (at least 64) with a halo, giving the same loss and gradient as untiled (docs: Print-size images): `auto` tiles only a scale that would not fit the device's memory otherwise, `off` never tiles",
    )
    output_depth: Annotated[  # a flag's value comes as text: --output-depth 16
        Literal["auto", 8, 16], BeforeValidator(lambda v: int(v) if v in ("8", "16") else v)
    ] = Field(
        default="auto",
        description="bits per channel of the final image given by `-o`: `16` writes 16-bit PNG or TIFF from the float image; `auto` is 16 for `.tif`/`.tiff`, 8 otherwise (JPEG and WebP are always 8)",
    )
    compile: StrictBool = Field(
        default=False,
        description="`true` runs the network through `torch.compile` (a one-off warm-up per size, shown in the summary)",
    )
    init: str = Field(
        default="content",
        description="`content`, `noise` (seeded uniform noise), `style`, or an image path (at the first scale)",
    )
    seed: Annotated[int, Field(strict=True, ge=0, lt=2**63)] = Field(
        default=0, description="random seed; same config + seed on CPU gives the same image"
    )
    device: str = Field(
        default="auto",
        description="`auto` (cuda, then mps, then cpu), `cpu`, `cuda`, `cuda:N`, `mps`",
    )
    video: VideoConfig = Field(
        default_factory=VideoConfig,
        description="`nst video` only: how the frames of a clip are tied together.",
    )

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

    @field_validator("tile", mode="before")
    @classmethod
    def _tile_value(cls, value: Any) -> Any:
        # YAML reads a bare `off` as false; a flag's value comes as text.
        if value is False:
            return "off"
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and value < 64:
            raise ValueError(f"tile {value} is too small: give at least 64 (px), auto or off")
        if (
            value is True
            or not isinstance(value, int | str)
            or (isinstance(value, str) and value not in ("auto", "off"))
        ):
            raise ValueError(f"tile must be auto, off or a size in px (at least 64), not {value!r}")
        return value

    @field_validator("style")
    @classmethod
    def _style_weights(cls, value: Any) -> Any:
        if isinstance(value, list) and sum(s.weight for s in value) <= 0:
            raise ValueError("the style weights sum to 0; give at least one a positive weight")
        return value

    @model_validator(mode="after")
    def _depth_fits_the_format(self) -> Config:
        image = self.output_image
        if (
            self.output_depth == 16
            and image is not None
            and image.suffix.lower() not in (".png", ".tif", ".tiff")
        ):
            raise ValueError(
                f"output_depth 16: {image.suffix} holds 8 bits per channel; "
                "write .png or .tif, or set output_depth: 8"
            )
        return self

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

    @field_validator("checkpoint", "protect", mode="before")
    @classmethod
    def _checkpoint_off(cls, value: Any) -> Any:
        # YAML 1.1 reads a bare `off` as false.
        return "off" if value is False else value

    @field_validator("steps", mode="before")
    @classmethod
    def _steps_shape(cls, value: Any) -> Any:
        # One clear message instead of pydantic's one-per-union-member.
        return whole_numbers(value, "a list of them, one per scale")

    @field_validator("save_every", mode="before")
    @classmethod
    def _save_every_shape(cls, value: Any) -> Any:
        return value if value == "auto" else whole_numbers(value, "auto")

    @field_validator("scales", mode="before")
    @classmethod
    def _scales_shape(cls, value: Any) -> Any:
        if value == "auto":
            return value
        if not isinstance(value, list):
            raise ValueError(f"use auto or a list of long sides like [256, 512] (got {value!r})")
        return whole_numbers(value, "")

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
        if value is not None and value.suffix.lower() in UNWRITABLE_SUFFIXES:
            raise ValueError(
                f"nst cannot write a {value.suffix} image; name one of "
                f"{', '.join(IMAGE_SUFFIXES)} (or a folder); an animation of the run comes from "
                "nst gif"
            )
        return value

    @field_validator("style_scale")
    @classmethod
    def _style_scale(cls, value: float) -> float:
        return finite(value, allow_zero=False)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not _DEVICE_PATTERN.match(value):
            raise ValueError(f"{value!r} is not a device: use auto, cpu, cuda, cuda:N or mps")
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
            return auto_scales(self.resolution, self.steps if isinstance(self.steps, int) else None)
        sizes = list(self.scales)
        return sizes if sizes[-1] == self.resolution else [*sizes, self.resolution]

    def schedule_note(self) -> str | None:
        """One line when the steps are too few for the scales: `scales: auto` then runs
        fewer of them (say which, and what gives all of them); an explicit list is kept, and
        the line says what to change. None when every scale gets its share."""
        if not isinstance(self.steps, int):
            return None  # steps per scale: the user's own split
        sizes = self.scale_sizes()
        if self.scales == "auto":
            full = auto_scales(self.resolution)
            if len(sizes) == len(full):
                return None
            return (
                f"{self.steps} steps are too few for the {len(full)} scales of a "
                f"{self.resolution} px run (coarse to fine needs about {MIN_STEPS_PER_SCALE} "
                f"a scale): running {_sizes(sizes)}; --steps {MIN_STEPS_PER_SCALE * len(full)} "
                "or more runs all of them"
            )
        if len(sizes) == 1 or self.steps >= MIN_STEPS_PER_SCALE * len(sizes):
            return None  # one scale: as few steps as asked for, nothing to spread
        return (
            f"steps: {self.steps} over the {len(sizes)} scales {_sizes(sizes)} leaves each "
            f"a few steps, and the picture soft; give --steps "
            f"{MIN_STEPS_PER_SCALE * len(sizes)} or more, or scales: [{self.resolution}]"
        )

    def foreign_weight_notes(self) -> list[str]:
        """A line for a style or content weight on another tool's scale (≥ FOREIGN_WEIGHT):
        nst normalises its losses (weights near 1 balance them), where neural-style's are raw
        sums (style 100 against content 5 by default), so 1000 here is a nearly blank canvas
        of texture, not "ten times the painting". The run goes ahead; the line says what was
        likely meant."""
        notes = []
        for key, flag in (("style", "--style-weight"), ("content", "--content-weight")):
            value = getattr(self.weights, key)
            if value < FOREIGN_WEIGHT:
                continue
            default = WeightsConfig.model_fields[key].default
            theirs = NEURAL_STYLE_WEIGHTS[key]
            likely = min(max(default * value / theirs, 0.5), 5.0)
            notes.append(
                f"weights.{key}={value:g} looks like another tool's scale (neural-style's "
                f"default is {theirs:g}): nst's losses are normalised, its {key} weight is "
                f"{default:g} by default and useful from about 0.5 to 5; {flag} {likely:.2g} is "
                "likely what you meant"
            )
        return notes

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
    def frame_every(self) -> int:
        """Steps between saved frames (and checkpoints): `save_every`, or for `auto` about
        FRAMES_PER_RUN frames over the whole run."""
        if self.save_every == "auto":
            return max(1, self.total_steps // FRAMES_PER_RUN)
        return self.save_every

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

    @property
    def output_bits(self) -> int:
        """Bits per channel of the `-o` image: `output_depth`, or 16 for TIFF under `auto`."""
        if self.output_depth != "auto":
            return int(self.output_depth)
        image = self.output_image
        return 16 if image is not None and image.suffix.lower() in (".tif", ".tiff") else 8

    def to_yaml_dict(self) -> dict[str, Any]:
        """Plain, YAML-safe dict of every setting (defaults filled in)."""
        return self.model_dump(mode="json")


#: A style or content weight from here up is on another tool's scale (foreign_weight_notes).
FOREIGN_WEIGHT = 100.0
#: neural-style's defaults (-style_weight, -content_weight): what its users' numbers are against.
NEURAL_STYLE_WEIGHTS = {"style": 100.0, "content": 5.0}


def _sizes(sizes: list[int]) -> str:
    """'256 → 640 → 1600 px', or '1600 px (one scale)'."""
    if len(sizes) == 1:
        return f"{sizes[0]} px (one scale)"
    return " → ".join(str(size) for size in sizes) + " px"
