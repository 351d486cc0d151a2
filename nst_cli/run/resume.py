"""Starting, resuming and overwriting a run folder: what may change, and where a run starts from."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import torch

from nst_cli.config.loading import dump_yaml, safe_yaml
from nst_cli.config.models import Config
from nst_cli.config.resolve import RESUMED_BY
from nst_cli.core.pixels import (
    fit_long_side,
)
from nst_cli.errors import ConfigError
from nst_cli.io.checkpoints import load_checkpoint
from nst_cli.io.files import png_header
from nst_cli.io.losslog import read_loss_rows
from nst_cli.io.rundir import RunDir, read_run_config
from nst_cli.run.inputs import Inputs, images_at, initial_image
from nst_cli.run.provenance import run_config_dict

log = logging.getLogger(__name__)


#: Keys a resumed run may change: how long it runs, how often it saves, where it computes.
#: Anything else would make the saved config (and every PNG's provenance) describe settings
#: the continued optimisation does not use.
RESUMABLE_KEYS = ("steps", "save_every", "device", "checkpoint", "max_memory")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        # Layer maps are one setting: adding or dropping a layer is a change of that key.
        flat.update(
            _flatten(value, name)
            if name not in ("layers.content", "layers.style")
            else {name: value}
        )
    return flat


def _shown(value: Any) -> str:
    return "the default" if value is None else repr(value)


def check_resume_changes(run_dir: RunDir, config: Config) -> None:
    """Refuse to resume with settings other than the run's own, except RESUMABLE_KEYS."""
    saved = read_run_config(run_dir.config)
    if saved is None:
        return
    before, now = _flatten(saved[0]), _flatten(run_config_dict(config))
    for key in sorted(set(before) | set(now)):
        if key in RESUMABLE_KEYS or key in ("output", "sweep"):
            continue
        if key == "scales" and _same_sizes(saved[0], config):
            continue  # `auto` pinned to the sizes it gave the run (resume_config)
        if before.get(key) != now.get(key):
            was, wanted = (_shown(v) for v in (before.get(key), now.get(key)))
            raise ConfigError(
                f"--resume {run_dir.root}: {key} cannot change on resume (the run used {was}, "
                f"now {wanted}); only {', '.join(RESUMABLE_KEYS)} can. Start a new run with "
                "another --output instead"
            )


def _same_sizes(saved: dict[str, Any], config: Config) -> bool:
    """Whether the saved run passed through the same scales as `config` does."""
    try:
        return Config.model_validate(saved).scale_sizes() == config.scale_sizes()
    except ValueError:  # pydantic's ValidationError: a config.yaml edited by hand
        return False


@dataclass
class StartingPoint:
    image: torch.Tensor
    step: int = 0
    stage: int = 0
    optimizer_state: dict[str, Any] | None = None
    elapsed: float = 0.0
    rows: list[dict[str, float]] = field(default_factory=list)
    average: torch.Tensor | None = None

    def take_optimizer_state(self) -> dict[str, Any] | None:
        """The saved history, handed over once: kept here too, a resumed run would hold a
        second history (pixels × pairs × 2) for as long as it runs."""
        state, self.optimizer_state = self.optimizer_state, None
        return state


def replaces_finished_run(config: Config, kind: str = "image") -> bool:
    """Whether a new run may replace what is at its output without --overwrite: the folder
    holds nothing, or a finished run it would make again (`unlike_the_finished_run` finds no
    difference), and an `-o` image already there is that run's. The everyday loop (run,
    look, tweak, run again) then needs no flag, while an unfinished run that could be
    resumed, another run, or a file nst did not write is never replaced silently."""
    run_dir = RunDir(config.output_dir)
    made_here = bool(run_dir.previous_outputs()) or run_dir.config.is_file()
    if made_here and unlike_the_finished_run(run_dir, config, kind) is not None:
        return False
    image = config.output_image
    if image is not None and image.exists():
        # The image of the finished run in its folder beside it; a copy kept elsewhere under
        # that name, or another run's image, is the user's.
        header = png_header(image) if image.is_file() else None
        return made_here and header is not None and _same_inputs(header[1], config)
    return True


#: Why a finished run is not replaced, where another check says it better (the unfinished-run
#: and foreign-file refusals of check_run_folder and check_video_folder).
_UNFINISHED, _NO_RUN = "a run that did not finish", "no config.yaml nst wrote"


def unlike_the_finished_run(run_dir: RunDir, config: Config, kind: str) -> str | None:
    """Why the run in `run_dir` is not one `config` may silently replace, or None: it must
    have finished, be of the same kind (an image run or a video run), have the same content
    and style, keep config.yaml as nst wrote it (an annotated one is the user's), and hold
    only nst's files."""
    saved = read_run_config(run_dir.config)
    if saved is None:
        return _NO_RUN
    settings, run = saved
    if run.get("status") != "completed":
        return _UNFINISHED
    other = _kind(run)
    if other != kind:
        return f"a finished {other} run"
    differs = _other_input(settings, config)
    if differs is not None:
        return f"a finished run of another {differs}"
    if not written_by_nst(run_dir):
        return "a finished run whose config.yaml was edited"
    foreign = run_dir.foreign_files()
    if foreign:
        return f"a finished run and {foreign[0].name}, which nst did not write"
    return None


def refuse_replacing(run_dir: RunDir, config: Config, kind: str) -> None:
    """The one line for a finished run that a new run will not replace silently."""
    why = unlike_the_finished_run(run_dir, config, kind)
    if why is None or why in (_UNFINISHED, _NO_RUN):
        return  # replaceable, or for the unfinished-run and foreign-file checks to say
    saved = read_run_config(run_dir.config)
    other = _kind(saved[1]) if saved is not None else kind
    raise ConfigError(
        f"output folder {run_dir.root} holds {why}; --overwrite replaces it, or choose another "
        f"--output (to continue that run: {RESUMED_BY[other]} {run_dir.root})"
    )


def _kind(run: dict[str, Any]) -> str:
    """A run's kind from config.yaml's `run:` section (runs saved before kinds were: images)."""
    kind = str(run.get("kind") or "image")
    return kind if kind in RESUMED_BY else "image"


def _other_input(settings: dict[str, Any], config: Config) -> str | None:
    """'photo' or 'painting' where saved settings name another content or style than
    `config`; None when they name the same."""
    now = run_config_dict(config)
    for key, what in (("content", "photo"), ("style", "painting")):
        if settings.get(key) != now.get(key):
            return what
    return None


def written_by_nst(run_dir: RunDir) -> bool:
    """Whether config.yaml is as nst wrote it: a file the user annotated (a comment, a key
    changed by hand) no longer reads back to the same text."""
    try:
        text = run_dir.config.read_text(encoding="utf-8")
        return dump_yaml(safe_yaml(text, str(run_dir.config))) == text
    except (OSError, UnicodeDecodeError, ConfigError, TypeError):
        return False


def _same_inputs(text: dict[str, Any], config: Config) -> bool:
    """Whether an image's embedded settings name the content and style of `config`."""
    if "nst:version" not in text or "nst:config" not in text:
        return False
    try:
        embedded = safe_yaml(str(text["nst:config"]), "the image's settings")
    except ConfigError:
        return False
    return isinstance(embedded, dict) and _other_input(embedded, config) is None


def check_output_image(config: Config, resume: bool, overwrite: bool) -> None:
    """`-o result.png`: an image already there is the user's; replace it only when asked."""
    image = config.output_image
    if image is not None and image.is_dir():
        raise ConfigError(
            f"-o {image}: is a folder, so no image can be written there; choose another -o"
        )
    if image is None or resume or overwrite or not image.exists():
        return
    raise ConfigError(
        f"output image {image} already exists and nst did not write it (or its run did not "
        "finish); pass --overwrite to replace it, or choose another -o"
    )


def check_run_folder(run_dir: RunDir, resume: bool, overwrite: bool) -> None:
    """Never mix a new run into (or silently overwrite) a previous run's folder."""
    previous = run_dir.previous_outputs()
    if not previous or resume:
        return
    if overwrite:
        foreign = run_dir.foreign_files()
        if foreign:
            raise ConfigError(
                f"output folder {run_dir.root}: {foreign[0].name} was not written by nst (it "
                f"may be yours, or the config being read), so --overwrite will not replace it; "
                "move it or choose another --output"
            )
        return
    saved = read_run_config(run_dir.config)
    if saved is not None and saved[1].get("status") == "completed":
        foreign = run_dir.foreign_files()
        raise ConfigError(
            f"output folder {run_dir.root} holds a finished run and "
            f"{foreign[0].name if foreign else 'files'} nst did not write; --overwrite replaces "
            "only nst's files, or choose another --output"
        )
    raise ConfigError(
        f"output folder {run_dir.root} already holds a run that did not finish ({len(previous)} "
        "files); --resume continues it, --overwrite replaces it, or choose another --output"
    )


def starting_point(
    config: Config, run_dir: RunDir, inputs: Inputs, resume: bool, allow_large: bool
) -> StartingPoint:
    """The checkpoint of a resumed run, or the configured initial image at the first scale."""
    checkpoint = load_checkpoint(run_dir.checkpoint) if resume else None
    stages = config.schedule()
    if checkpoint is None:
        if resume and run_dir.previous_outputs():
            raise ConfigError(
                f"--resume {run_dir.root}: there is no checkpoint.pt"
                + (" (the run has checkpoint: off)" if config.checkpoint == "off" else "")
                + ", so the run cannot continue where it stopped; start it over with --overwrite (instead of --resume) or use "
                "another --output"
            )
        content, style = images_at(config, inputs, stages[0].size)
        return StartingPoint(initial_image(config, content, style, allow_large))
    step = int(checkpoint["step"])
    if step > config.total_steps:
        raise ConfigError(
            f"--resume {run_dir.root}: the run already did {step} steps; steps must be at least "
            f"{step} (pass --steps {step} or more)"
        )
    index = min(int(checkpoint.get("stage", 0)), len(stages) - 1)
    image = checkpoint["image"]
    expected = fit_long_side(inputs.content.size, stages[index].size)
    if tuple(image.shape[-2:]) != (expected[1], expected[0]):
        raise ConfigError(
            f"--resume {run_dir.root}: the checkpoint image is {image.shape[-1]}×{image.shape[-2]} "
            f"but this config gives {expected[0]}×{expected[1]} at that scale; keep resolution, "
            "scales and content unchanged"
        )
    log.info("resuming %s from step %d", run_dir.root, step)
    return StartingPoint(
        image=image,
        step=step,
        stage=index,
        optimizer_state=checkpoint.get("optimizer"),
        elapsed=float(checkpoint.get("elapsed", 0.0)),
        rows=[r for r in read_loss_rows(run_dir.losses) if r["step"] < step],
        average=checkpoint.get("average"),
    )
