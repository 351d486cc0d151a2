"""`stylize()`: the plain Python API behind `nst stylize`.

config -> images -> features -> losses -> optimisation loop -> files in the run folder.
Whatever happens (finished, Ctrl-C, NaN, disk full), the newest good image, the frames and
the loss log already written are kept, and config.yaml says how the run ended.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .callbacks import Checkpointer, FrameSaver, LatestImage, LossLog
from .config import Config, dump_yaml, resolve_config
from .devices import resolve_device
from .errors import ConfigError, NSTError, WeightsError
from .features import FeatureExtractor, build_extractor, downsampling_factor, layer_index
from .images import load_image, resize_long_side, resize_to, to_pil, to_tensor
from .losses import StyleTransferLoss, style_targets
from .optimize import Callback, optimize
from .outputs import RunDir, read_loss_rows, save_png, write_text

log = logging.getLogger("nst")


@dataclass
class StylizeResult:
    """Where the outputs are and how the run went."""

    run_dir: Path
    final_image: Path
    losses: dict[str, float]
    steps: int
    steps_run: int
    seconds: float
    setup_seconds: float
    status: str
    device: str
    frames: list[int] = field(default_factory=list)

    @property
    def iterations_per_second(self) -> float:
        return self.steps_run / self.seconds if self.seconds > 0 else 0.0


class ModelCache:
    """Keeps loaded networks and style targets between runs (a sweep reuses them)."""

    def __init__(self) -> None:
        self._extractors: dict[tuple[Any, ...], FeatureExtractor] = {}
        self._targets: dict[tuple[Any, ...], dict[str, torch.Tensor]] = {}

    def extractor(
        self, config: Config, layers: Sequence[str], device: torch.device
    ) -> FeatureExtractor:
        model = config.model
        # The deepest layer decides the truncation; a deeper network serves shallower runs too.
        key = (
            model.weights,
            model.pooling,
            model.preprocessing,
            config.seed if model.weights == "random" else None,
            str(device),
        )
        cached = self._extractors.get(key)
        if cached is not None and all(_fits(cached, n) for n in layers):
            return cached
        extractor = build_extractor(
            model.weights, layers, model.pooling, model.preprocessing, config.seed
        )
        extractor = extractor.to(device)
        self._extractors[key] = extractor
        self._targets.clear()
        return extractor

    def style_targets(
        self,
        extractor: FeatureExtractor,
        style: torch.Tensor,
        key: tuple[Any, ...],
        layers: dict[str, float],
    ) -> dict[str, torch.Tensor]:
        full_key = (id(extractor), key, tuple(layers))
        cached = self._targets.get(full_key)
        if cached is None:
            with torch.no_grad():
                cached = style_targets(extractor(style, layers), layers)
            self._targets[full_key] = cached
        return cached


def _fits(extractor: FeatureExtractor, layer: str) -> bool:
    return layer_index(layer) < len(extractor.layers)


def _check_size(size: tuple[int, int], layers: Sequence[str], role: str, key: str) -> None:
    factor = downsampling_factor(layers)
    if min(size) < factor:
        raise ConfigError(
            f"{key}: the {role} image would be {size[0]}×{size[1]} px, too small for the layers "
            f"used (down to {max(layers, key=layer_index)}, halved {factor.bit_length() - 1} "
            f"times); its short side must be at least {factor} px. Raise {key}"
        )


def require_inputs(config: Config) -> None:
    """Both images must be named and exist: checked before any work (or any sweep run) starts."""
    for role, path in (("content", config.content), ("style", config.style)):
        if path is None:
            raise ConfigError(
                f"{role}: no {role} image given; set {role}: in the config or pass --{role}"
            )
        if not Path(path).exists():
            raise ConfigError(f"{role} image {path}: file not found")


def prepare_images(config: Config, allow_large: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Content at `resolution` (long side), style at resolution × style_scale; aspect kept."""
    require_inputs(config)
    layers = [*config.layers.content, *config.layers.style]
    content = load_image(config.content, "content", allow_large)
    if max(content.size) < config.resolution / 2:
        log.warning(
            "content image %s is %d×%d, far smaller than resolution %d; upscaling it (the "
            "result will look soft)",
            config.content,
            *content.size,
            config.resolution,
        )
    content = resize_long_side(content, config.resolution)
    _check_size(content.size, layers, "content", "resolution")
    style = load_image(config.style, "style", allow_large)
    style = resize_long_side(style, max(1, round(config.resolution * config.style_scale)))
    _check_size(style.size, list(config.layers.style), "style", "style_scale")
    return to_tensor(content), to_tensor(style)


def initial_image(
    config: Config, content: torch.Tensor, style: torch.Tensor, allow_large: bool = False
) -> torch.Tensor:
    """The starting pixels: the content photo, seeded noise, the style image, or a file."""
    height, width = content.shape[-2:]
    if config.init == "content":
        return content.clone()
    if config.init == "noise":
        generator = torch.Generator().manual_seed(config.seed)
        return torch.rand(content.shape, generator=generator)
    if config.init == "style":
        return to_tensor(resize_to(to_pil(style), (width, height)))
    path = Path(config.init)
    if not path.exists():
        raise ConfigError(
            f"init: '{config.init}' is neither content, noise, style nor an existing image file"
        )
    return to_tensor(resize_to(load_image(path, "init", allow_large), (width, height)))


def png_metadata(config: Config) -> dict[str, str]:
    """Text stored in every PNG: enough to re-run the exact settings (`--config final.png`)."""
    return {
        "Software": f"nst {__version__}",
        "nst:version": __version__,
        "nst:config": dump_yaml(_config_for_file(config)),
    }


def _config_for_file(config: Config) -> dict[str, Any]:
    data = config.to_yaml_dict()
    # Absolute image paths, so the saved config re-runs from any working directory.
    for key in ("content", "style"):
        if data.get(key):
            data[key] = str(Path(data[key]).expanduser().resolve())
    if data.get("init") not in ("content", "noise", "style"):
        data["init"] = str(Path(data["init"]).expanduser().resolve())
    return data


def write_run_config(run_dir: RunDir, config: Config, **run: Any) -> None:
    """config.yaml: the resolved config plus a `run:` section the loader ignores."""
    data = _config_for_file(config)
    data["run"] = {"nst_version": __version__, **run}
    write_text(run_dir.config, dump_yaml(data))


def _load_checkpoint(run_dir: RunDir) -> dict[str, Any] | None:
    if not run_dir.checkpoint.is_file():
        return None
    try:
        state = torch.load(run_dir.checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file must not stop a fresh start from being offered
        raise WeightsError(
            f"{run_dir.checkpoint}: checkpoint unreadable ({type(exc).__name__}); delete it to start over"
        ) from None
    if not isinstance(state, dict) or "image" not in state or "step" not in state:
        raise WeightsError(f"{run_dir.checkpoint}: not an nst checkpoint; delete it to start over")
    return state


def stylize(
    config: Config | str | Path,
    *,
    callbacks: Sequence[Callback] = (),
    should_stop: Callable[[], bool] = lambda: False,
    resume: bool = False,
    allow_large: bool = False,
    cache: ModelCache | None = None,
) -> StylizeResult:
    """Run one stylisation and write its run folder; returns where things are and the losses."""
    if not isinstance(config, Config):
        config = resolve_config(config)
    assert config.output is not None
    setup_started = time.perf_counter()
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    run_dir = RunDir(Path(config.output))
    cache = cache or ModelCache()

    content, style = prepare_images(config, allow_large)
    layers = list(dict.fromkeys([*config.layers.content, *config.layers.style]))
    extractor = cache.extractor(config, layers, device)
    if config.model.weights == "random":
        log.warning("model.weights=random: the network is untrained; results show no real style")
    content, style = content.to(device), style.to(device)
    with torch.no_grad():
        content_targets = (
            {k: v.detach() for k, v in extractor(content, config.layers.content).items()}
            if config.layers.content
            else {}
        )
    style_key = (str(config.style), config.resolution, config.style_scale)
    targets = cache.style_targets(extractor, style, style_key, config.layers.style)
    loss_fn = StyleTransferLoss(
        content_targets,
        targets,
        config.layers.content,
        config.layers.style,
        config.weights.content,
        config.weights.style,
        config.weights.tv,
    )

    start_step, optimizer_state, elapsed_offset, rows = 0, None, 0.0, []
    checkpoint = _load_checkpoint(run_dir) if resume else None
    if checkpoint is not None:
        if tuple(checkpoint["image"].shape) != tuple(content.shape):
            raise ConfigError(
                f"--resume {run_dir.root}: the checkpoint image is "
                f"{checkpoint['image'].shape[-1]}×{checkpoint['image'].shape[-2]} but this config "
                f"gives {content.shape[-1]}×{content.shape[-2]}; keep resolution and content unchanged"
            )
        start_step = min(int(checkpoint["step"]), config.steps)
        image = checkpoint["image"].to(device)
        optimizer_state = checkpoint.get("optimizer")
        elapsed_offset = float(checkpoint.get("elapsed", 0.0))
        rows = [r for r in read_loss_rows(run_dir.losses) if r["step"] < start_step]
        log.info("resuming %s from step %d", run_dir.root, start_step)
    else:
        image = initial_image(config, content.cpu(), style.cpu(), allow_large).to(device)

    run_dir.create()
    started_at = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
    write_run_config(
        run_dir,
        config,
        status="running",
        started=started_at,
        device=str(device),
        steps_done=start_step,
    )
    text = png_metadata(config)
    latest = LatestImage()
    frames = FrameSaver(run_dir, config.save_every, text)
    loss_log = LossLog(run_dir.losses, config.save_every, rows)
    # Each row's elapsed_s continues across resumes.
    shifted_log = _shift_elapsed(loss_log, elapsed_offset)
    checkpointer = Checkpointer(run_dir, config.save_every, elapsed_offset)
    setup_seconds = time.perf_counter() - setup_started

    status = "failed"
    final_saved = False
    try:
        result = optimize(
            image,
            extractor,
            loss_fn,
            config.optimizer.name,
            config.optimizer.effective_lr,
            config.steps,
            start_step=start_step,
            optimizer_state=optimizer_state,
            callbacks=[latest, frames, shifted_log, checkpointer, *callbacks],
            should_stop=should_stop,
        )
        status = "interrupted" if result.interrupted else "completed"
        save_png(to_pil(result.image), run_dir.final, {**text, "nst:step": str(result.step)})
        final_saved = True
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except NSTError:
        status = "failed"
        raise
    finally:
        if not final_saved:
            _save_on_the_way_out(run_dir, latest, text, status)
        loss_log.flush()
        finished = _dt.datetime.now().astimezone().isoformat(timespec="seconds")
        write_run_config(
            run_dir,
            config,
            status=status,
            started=started_at,
            finished=finished,
            device=str(device),
            steps_done=max(latest.step, start_step),
        )
    return StylizeResult(
        run_dir=run_dir.root,
        final_image=run_dir.final,
        losses=result.losses,
        steps=result.step,
        steps_run=result.steps_run,
        seconds=result.seconds,
        setup_seconds=setup_seconds,
        status=status,
        device=str(device),
        # Every frame in the folder, earlier sessions of a resumed run included.
        frames=sorted(int(p.stem.split("_")[-1]) for p in run_dir.frames.glob("step_*.png")),
    )


def _shift_elapsed(loss_log: LossLog, offset: float) -> Callback:
    if not offset:
        return loss_log

    def shifted(event: Any) -> None:
        from dataclasses import replace

        loss_log(replace(event, elapsed=event.elapsed + offset))

    return shifted


def _save_on_the_way_out(
    run_dir: RunDir, latest: LatestImage, text: dict[str, str], status: str
) -> None:
    """On failure or interrupt, the newest good image still becomes final.png."""
    if latest.image is None:
        return
    try:
        save_png(
            to_pil(latest.image),
            run_dir.final,
            {**text, "nst:step": str(latest.step), "nst:status": status},
        )
    except NSTError as exc:  # the original error matters more; say this one and go on
        log.error("%s", exc)
