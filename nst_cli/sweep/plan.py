"""Planning many runs: a grid of values of one config, or a folder of photos (folder runs).

Each run gets its own folder named from its values or its photo; finished runs with the same
resolved config are skipped on a re-run, interrupted ones resume from their checkpoint."""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from nst_cli import __version__
from nst_cli.config.choices import IMAGE_SUFFIXES, WEIGHT_SOURCES
from nst_cli.config.loading import safe_yaml
from nst_cli.config.models import Config
from nst_cli.config.resolve import default_run_name, names_several_images, resolve_config
from nst_cli.errors import ConfigError, NSTError
from nst_cli.io.files import write_text
from nst_cli.io.rundir import RunDir, read_run_config
from nst_cli.run.inputs import load_inputs
from nst_cli.run.provenance import run_config_dict
from nst_cli.sweep.grid import (
    GridRun,
    Param,
    run_config,
    safe_name,
    sweep_grid,
    unique_name,
)

log = logging.getLogger(__name__)


@dataclass
class PlannedRun:
    name: str
    values: dict[str, Any]
    labels: dict[str, str]
    config: Config
    state: str = "new"  # new | done | resume | replace | failed
    #: Why the run failed (its image could not be read, the loss diverged, a worker died).
    error: str | None = None


@dataclass
class SweepOutcome:
    root: Path
    runs: list[PlannedRun]
    rows: list[dict[str, Any]] = field(default_factory=list)
    grid: Path | None = None
    summary: Path | None = None
    index: Path | None = None


def plan_sweep(
    config_path: Path | None,
    params: Sequence[Param],
    sets: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    output: Path | None = None,
    *,
    overwrite: bool = False,
    allow_large: bool = False,
) -> tuple[Path, list[PlannedRun]]:
    """Resolve and validate every run of a grid before any of them starts.

    Args:
        config_path: the base config (None: defaults and flags only).
        params: the swept keys and their values (parse_param); the runs are their product.
        sets: `key.path=value` items applied to every run.
        overrides: dotted keys -> values from flags, for every run.
        output: the sweep's folder (None: from the config's name).
        overwrite: replace another sweep recorded in that folder.
        allow_large: accept images over the size and memory limits.

    Returns:
        The sweep's folder and its planned runs (for run_sweep).
    """
    root, grid = sweep_grid(config_path, params, sets, overrides, output)
    return root, plan_grid(root, grid, overwrite=overwrite, allow_large=allow_large)


def plan_grid(
    root: Path, grid: Sequence[GridRun], *, overwrite: bool = False, allow_large: bool = False
) -> list[PlannedRun]:
    """The grid's runs (grid.sweep_grid) with the files they name read and checked."""
    runs = []
    for point in grid:
        try:
            runs.append(_plan_run(point, allow_large))
        except NSTError as exc:
            raise type(exc)(f"sweep run {point.name}: {exc}") from None
    check_sweep_folder(root, runs, overwrite)
    return runs


def _plan_run(point: GridRun, allow_large: bool) -> PlannedRun:
    """One run of a sweep or folder run: its images read and checked (sizes, memory) before the
    first run starts, and what its folder already holds."""
    load_inputs(point.config, allow_large)
    _check_weights_file(point.config)
    return PlannedRun(point.name, point.values, point.labels, point.config, _state(point.config))


#: Files a folder given as --content contributes to a folder run (what Pillow reads).
FOLDER_SUFFIXES = (*IMAGE_SUFFIXES, ".bmp", ".gif")


def content_files(content: Path | None) -> list[Path] | None:
    """The images a folder run stylises when `content` is a folder or a glob (photos/*.jpg);
    None when it names one file."""
    if content is None or not names_several_images(content):
        return None
    text = str(content)
    if Path(text).expanduser().is_dir():
        folder = Path(text).expanduser()
        found = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES
        )
        where = f"folder {folder}"
    else:
        found = sorted(Path(p) for p in glob.glob(os.path.expanduser(text)) if Path(p).is_file())
        where = f"pattern {text}"
    if not found:
        raise ConfigError(
            f"content: the {where} matches no image files ({', '.join(FOLDER_SUFFIXES)})"
        )
    return found


def plan_folder(
    config_path: Path | None,
    sets: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    output: Path | None = None,
    *,
    overwrite: bool = False,
    allow_large: bool = False,
) -> tuple[Path, list[PlannedRun]]:
    """Every image of a content folder or glob as one run (a folder run), same settings.

    Run folders are named by the images' stems. An image that cannot be used is planned as a
    failed run, reported at the end, and does not stop the others.

    Args:
        config_path: the config whose `content` is a folder or a glob (None: flags only).
        sets: `key.path=value` items for every run.
        overrides: dotted keys -> values from flags (`content` among them).
        output: the folder run's folder (None: from the config's name).
        overwrite: replace another sweep recorded in that folder.
        allow_large: accept images over the size and memory limits.

    Returns:
        The folder and its planned runs (for run_sweep).
    """
    base = resolve_config(config_path, sets, overrides)
    files = content_files(base.content)
    if files is None:
        raise ConfigError(f"content: {base.content} is one image, not a folder or a pattern")
    given = (overrides or {}).get("output") or output
    if given is None and base.output != Path("outputs") / default_run_name(base, config_path):
        given = base.output  # `output:` in the config file names the folder run's folder
    if given is not None and Path(given).suffix.lower() in IMAGE_SUFFIXES:
        raise ConfigError(
            f"--output {given}: a folder run writes one run folder per image; give a folder"
        )
    root = Path(given) if given else Path("outputs") / _folder_name(base, config_path)
    # nst's own outputs are never inputs (an output folder inside the photos' folder).
    files = [path for path in files if not _written_by_the_folder_run(path, root)]
    if not files:
        raise ConfigError(
            f"content: {base.content} holds no images but this folder run's own outputs"
        )
    # The images come from the folder, not from a --content flag that named the folder.
    overrides = {k: v for k, v in (overrides or {}).items() if k != "content"}
    runs: list[PlannedRun] = []
    errors: list[NSTError] = []
    # A photo keeps the run folder it had (a.bmp added beside a.jpg must not rename a.jpg's).
    earlier = _recorded_names(root)
    for path in sorted(files, key=lambda p: (str(p) not in earlier, str(p))):
        taken = [run.name for run in runs]
        name = earlier.get(str(path))
        if name is None or name in taken:
            name = unique_name(safe_name(path.stem), [*taken, *earlier.values()])
        values, labels = {"content": str(path)}, {"content": path.name}
        config = run_config(config_path, sets, overrides, root / name, values)
        try:
            run = _plan_run(GridRun(name, values, labels, config), allow_large)
        except NSTError as exc:
            errors.append(exc)
            run = PlannedRun(name, values, labels, config, "failed", str(exc))
        runs.append(run)
    if len(errors) == len(runs):
        raise errors[0]  # nothing can run (a missing style image, say): one line, not one per image
    check_sweep_folder(root, runs, overwrite)
    return root, runs


def _written_by_the_folder_run(path: Path, root: Path) -> bool:
    """Whether an image is one this folder run writes: its contact sheet, or a file inside
    one of its run folders (a glob reaching into the output folder)."""
    try:
        inside = path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return inside.parts == ("grid.png",) or len(inside.parts) > 1


def _recorded_names(root: Path) -> dict[str, str]:
    """content path -> run folder name, as the folder run's sweep.yaml recorded them."""
    manifest = root / MANIFEST
    try:
        recorded = safe_yaml(manifest.read_text(encoding="utf-8"), str(manifest))
    except (OSError, UnicodeDecodeError, ConfigError):
        return {}
    runs = recorded.get("runs") if isinstance(recorded, dict) else None
    if not isinstance(runs, dict):
        return {}
    return {
        str(values["content"]): str(name)
        for name, values in runs.items()
        if isinstance(values, dict) and isinstance(values.get("content"), str)
    }


def _folder_name(config: Config, config_path: Path | None) -> str:
    """outputs/<config name>, or <content folder>_<style> without a config file."""
    if config_path is not None and Path(config_path).suffix.lower() != ".png":
        return Path(config_path).stem
    content = Path(str(config.content)).expanduser()
    folder = content if content.is_dir() else content.parent
    style = "+".join(s.path.stem for s in config.style_images) or "style"
    return f"{safe_name(folder.resolve().name)}_{style}"


def _check_weights_file(config: Config) -> None:
    weights = config.model.weights
    if weights not in WEIGHT_SOURCES and not Path(weights).is_file():
        raise ConfigError(f"model.weights: {weights}: weights file not found")


#: The file in a sweep folder that records which runs the sweep holds.
MANIFEST = "sweep.yaml"


def check_sweep_folder(root: Path, runs: Sequence[PlannedRun], overwrite: bool) -> None:
    """A sweep folder holds one sweep: another one is refused unless --overwrite. The same
    sweep grown (more values, more photos in a folder run's folder) is the same sweep."""
    manifest = root / MANIFEST
    if not manifest.is_file() or overwrite:
        return
    try:
        recorded = safe_yaml(manifest.read_text(encoding="utf-8"), str(manifest))
    except (OSError, UnicodeDecodeError, ConfigError):
        recorded = None
    planned = {run.name: json.dumps(run.values, sort_keys=True, default=str) for run in runs}
    before = recorded.get("runs") if isinstance(recorded, dict) else None
    # The whole plan is the sweep's identity: the same swept values over another photo or
    # other base settings are another sweep (manifests from before settings were recorded
    # are compared by their values alone).
    settings = recorded.get("settings") if isinstance(recorded, dict) else None
    digests = {run.name: settings_digest(run.config) for run in runs}
    same_settings = not isinstance(settings, dict) or all(
        digests.get(name, digest) == digest for name, digest in settings.items()
    )
    if (
        same_settings
        and isinstance(before, dict)
        and all(
            planned.get(name) == json.dumps(values, sort_keys=True, default=str)
            for name, values in before.items()
        )
    ):
        return
    raise ConfigError(
        f"{root} holds another sweep ({MANIFEST} lists other runs); pass --overwrite to replace "
        "it, or choose another --output"
    )


def settings_digest(config: Config) -> str:
    """A short fingerprint of a run's whole resolved config, for sweep.yaml."""
    text = json.dumps(run_config_dict(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_manifest(root: Path, runs: Sequence[PlannedRun]) -> None:
    """Record the sweep's runs, so a different sweep into this folder is noticed."""
    root.mkdir(parents=True, exist_ok=True)
    data = {
        "nst_version": __version__,
        "runs": {run.name: run.values for run in runs},
        "settings": {run.name: settings_digest(run.config) for run in runs},
    }
    write_text(root / MANIFEST, yaml.safe_dump(data, sort_keys=False))


def _state(config: Config) -> str:
    """done: this folder holds a completed run of the same resolved config; resume: an
    interrupted one; replace: a run of other settings; new: nothing yet."""
    run_dir = RunDir(config.output_dir)
    found = read_run_config(run_dir.config)
    if found is None:
        return "replace" if run_dir.previous_outputs() else "new"
    saved, run = found
    if saved != run_config_dict(config):
        return "replace"
    if run.get("status") == "completed" and run_dir.final.is_file():
        return "done"
    return "resume" if run_dir.checkpoint.is_file() else "replace"


def fail(run: PlannedRun, error: str) -> None:
    """Mark a run failed, say so now (the rest go on), keep the reason for the summary."""
    run.state, run.error = "failed", error
    log.error("run %s failed: %s", run.name, error)
