"""What passes between a run's stages: the prepared run, and the result a caller gets."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from nst_cli.config.models import Config
from nst_cli.core.features import FeatureExtractor
from nst_cli.core.losses.temporal import TemporalTerm
from nst_cli.core.tiles import TileProgress
from nst_cli.io.rundir import RunDir
from nst_cli.run.cache import ModelCache
from nst_cli.run.inputs import Inputs
from nst_cli.run.resume import (
    StartingPoint,
)


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
    #: torch.compile's warm-up (compile: true), not part of `seconds`.
    warmup_seconds: float = 0.0
    #: Preparing each scale (features and targets at its size), not part of `seconds`.
    scale_setup_seconds: float = 0.0
    #: The precision the network ran at (`precision: auto` decided: tf32, fp32 or bf16).
    precision: str = ""

    @property
    def iterations_per_second(self) -> float:
        return self.steps_run / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Prepared:
    """Everything checked and loaded before the run folder is touched."""

    config: Config
    #: What config.yaml and the PNGs record (the config itself, unless it was relocated).
    recorded: Config
    device: torch.device
    #: config.precision decided for the device (`auto` resolved).
    precision: str
    run_dir: RunDir
    inputs: Inputs
    extractor: FeatureExtractor
    cache: ModelCache
    start: StartingPoint
    setup_started: float
    #: A video frame's temporal term (at the frame's full size), added to every scale's loss.
    temporal: TemporalTerm | None = None
    #: Told of each tile of a tiled step (the progress display shows "tile 3/12").
    tile_progress: TileProgress | None = None
