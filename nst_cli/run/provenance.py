"""What a run records about itself: config.yaml and the settings stored in every PNG."""

from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any

from nst_cli import __version__
from nst_cli.config.loading import dump_yaml
from nst_cli.config.models import Config
from nst_cli.config.resolve import (
    map_input_paths,
)
from nst_cli.io.files import write_text
from nst_cli.io.rundir import RunDir

log = logging.getLogger(__name__)


def png_metadata(config: Config) -> dict[str, str]:
    """Text stored in every PNG: enough to re-run the exact settings (`--config final.png`)."""
    return {
        "Software": f"nst {__version__}",
        "nst:version": __version__,
        "nst:config": dump_yaml(run_config_dict(config)),
    }


def run_config_dict(config: Config) -> dict[str, Any]:
    """The config as saved in config.yaml and PNG metadata (absolute image paths)."""
    data = config.to_yaml_dict()
    # Absolute paths, so the saved config re-runs from any working directory.
    map_input_paths(data, lambda value: str(Path(value).expanduser().resolve()))
    return data


def write_run_config(run_dir: RunDir, config: Config, **run: Any) -> None:
    """config.yaml: the resolved config plus a `run:` section the loader ignores."""
    data = run_config_dict(config)
    data["run"] = {"nst_version": __version__, **run}
    write_text(run_dir.config, dump_yaml(data))


def timestamp() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")
