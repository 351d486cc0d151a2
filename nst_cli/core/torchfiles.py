"""Reading torch files that came from outside the process (weights, checkpoints), safely.

One loader for all of them: `torch.load(weights_only=True)`, so a pickle that would run code
is refused, and every way a file can be damaged becomes one UnreadableFile with a short
reason; the caller words the error for its own kind of file.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch


class UnreadableFile(Exception):
    """Why a torch file could not be read, in a few words."""


def load_tensors(path: Path) -> object:
    """The file's contents (tensors, dicts, lists, numbers); UnreadableFile on any failure."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol notices from torch
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UnreadableFile("file not found") from None
    except IsADirectoryError:
        raise UnreadableFile("is a directory") from None
    except pickle.UnpicklingError as exc:
        # weights_only cannot tell a pickle that references code from damaged bytes.
        raise UnreadableFile(
            "refused to load: not a plain file of tensors (it may hold a pickle that could run "
            f"code, or not be a torch file at all) ({_unsupported(str(exc))})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        # A text file or random bytes reach torch's unpickler as garbage.
        raise UnreadableFile(f"{type(exc).__name__}: {str(exc)[:80]}") from None


def _unsupported(text: str) -> str:
    """The line of torch's message that names the refused global, else its first line."""
    for line in text.splitlines():
        if "Unsupported" in line:
            return line.strip()[:120]
    return text.splitlines()[0][:120]
