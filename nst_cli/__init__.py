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
    "Config": "config.models",
    "resolve_config": "config.resolve",
    "NSTError": "errors",
    "ModelCache": "run.cache",
    "StylizeResult": "run.stylize",
    "stylize": "run.stylize",
    "stylize_batch": "run.stylize",
}

if TYPE_CHECKING:
    from nst_cli.config.models import Config
    from nst_cli.config.resolve import resolve_config
    from nst_cli.errors import NSTError
    from nst_cli.run.cache import ModelCache
    from nst_cli.run.state import StylizeResult
    from nst_cli.run.stylize import stylize, stylize_batch


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
