"""The vocabulary of a config: defaults, choices, presets and the limits on config files."""

from __future__ import annotations

from typing import Any, Literal

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
#: The colour modes (`color`): the painting's palette, the photo's colours, or the photo's
#: palette carried into the painting before the run.
COLOR_MODES = ("style", "luminance", "histogram")

INIT_MODES = ("content", "noise", "style")
#: Built-in weight sources of `model.weights` (anything else is a .pth path).
WEIGHT_SOURCES = ("caffe", "torchvision", "random")
#: Device names `device` takes besides cuda:N.
DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")
#: The optimisers (`optimizer.name`) and VGG19's pooling (`model.pooling`).
OPTIMIZER_NAMES = ("lbfgs", "adam")
POOLINGS = ("max", "avg")
#: What `nst video` writes.
VIDEO_SUFFIXES = (".mp4", ".webm", ".gif")
#: `output` ending in one of these names the final image; the run folder goes beside it.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
#: Image and video names an output could be mistaken for that nst does not write: `-o x.gif`
#: is refused rather than made a folder called x.gif.
UNWRITABLE_SUFFIXES = (
    ".gif",
    ".bmp",
    ".mp4",
    ".webm",
    ".mov",
    ".avi",
    ".heic",
    ".heif",
    ".avif",
    ".jxl",
    ".jp2",
    ".ico",
    ".tga",
    ".ppm",
    ".pgm",
    ".psd",
    ".svg",
)
#: Sections that are not run settings: `run` (written by the tool into a run's config.yaml)
#: and `sweep` (read by `nst sweep`); both are set aside when a config is validated.
METADATA_KEYS = ("run", "sweep")

#: Keys added after nst began saving its settings, each with the value that reproduces what
#: a run saved before them did: resuming or re-running such a run (`--resume`, `--config
#: final.png`) keeps its behaviour where today's default differs.
INTRODUCED: dict[str, Any] = {
    "optimizer.precondition": "none",
    "optimizer.carry_history": False,
    "match_luminance": False,
    "protect": "off",
}


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
#: The largest `resolution` (long side, px): the largest side a JPEG can hold; far past what
#: fits in memory, it bounds what a mistyped number can make nst print or plan.
MAX_RESOLUTION = 65_535
#: The frame rates a clip may have: ffmpeg writes an empty or zero-length file outside them.
MIN_CLIP_FPS, MAX_CLIP_FPS = 0.01, 1000.0
MAX_YAML_NODES = 100_000


# --------------------------------------------------------------------------- presets

PresetName = Literal["fast", "balanced", "quality"]
#: How much optimiser state checkpoint.pt keeps (see nst_cli.checkpoints).
CheckpointMode = Literal["compact", "exact", "off"]
DEFAULT_PRESET: PresetName = "balanced"
#: What each preset sets: the steps, nothing else (all three run `scales: auto` and L-BFGS,
#: the defaults); `steps` given explicitly (file, --set, flag) wins.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"steps": 60},
    "balanced": {"steps": 160},
    "quality": {"steps": 500},
}

#: Frames `save_every: auto` saves over a run: enough for `nst gif` to show the optimisation.
FRAMES_PER_RUN = 50
