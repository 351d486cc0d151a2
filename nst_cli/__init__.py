"""nst: Gatys-style neural style transfer from the command line and from Python.

from nst_cli import stylize
result = stylize("configs/car_fluid.yaml")
"""

__version__ = "0.1.0"

from .config import Config, resolve_config  # noqa: E402
from .errors import NSTError  # noqa: E402
from .pipeline import ModelCache, StylizeResult, stylize  # noqa: E402

__all__ = [
    "Config",
    "ModelCache",
    "NSTError",
    "StylizeResult",
    "__version__",
    "resolve_config",
    "stylize",
]
