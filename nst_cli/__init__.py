"""nst: Gatys-style neural style transfer from the command line and from Python.

    from nst_cli import stylize
    result = stylize("configs/car_fluid.yaml")

The public names are imported lazily so that `nst --help` does not wait for torch to load.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Config": "config",
    "resolve_config": "config",
    "NSTError": "errors",
    "ModelCache": "pipeline",
    "StylizeResult": "pipeline",
    "stylize": "pipeline",
    "stylize_batch": "pipeline",
}

if TYPE_CHECKING:
    from .config import Config, resolve_config
    from .errors import NSTError
    from .pipeline import ModelCache, StylizeResult, stylize, stylize_batch


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nst_cli' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)


__all__ = [
    "Config",
    "ModelCache",
    "NSTError",
    "StylizeResult",
    "__version__",
    "resolve_config",
    "stylize",
    "stylize_batch",
]
