"""Domain errors. The library raises these; only the CLI turns them into exit codes.

Each message is one line a user can act on: what was wrong, where (file or key), what to do.
"""

from __future__ import annotations


class NSTError(Exception):
    """Base class for every error the tool reports without a traceback."""

    #: process exit status used by the CLI (2 = usage/config, 1 = runtime failure)
    exit_code: int = 1


class ConfigError(NSTError):
    """A config file, key or override is invalid."""

    exit_code = 2


class ImageError(NSTError):
    """An input image is missing, unreadable or unusable."""

    exit_code = 2


class WeightsError(NSTError):
    """Network weights could not be found, read or trusted."""

    exit_code = 2


class DeviceError(NSTError):
    """The requested compute device is not available."""

    exit_code = 2


class OutputError(NSTError):
    """An output file or folder could not be written."""

    exit_code = 1


class NonFiniteLossError(NSTError):
    """The loss became NaN or infinite during optimisation."""

    exit_code = 1


class CheckpointError(NSTError):
    """A run's checkpoint.pt is damaged, tampered with, or from another nst."""

    exit_code = 2
