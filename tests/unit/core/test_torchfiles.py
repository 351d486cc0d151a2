"""The one safe loader for torch files: data loads, code and garbage are refused with a reason."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from nst_cli.core.torchfiles import UnreadableFile, load_tensors


class _Evil:
    def __reduce__(self):
        return (print, ("this would run",))


def test_tensors_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    torch.save({"a": torch.ones(2), "n": 3, "items": [torch.zeros(1)]}, path)
    data = load_tensors(path)
    assert isinstance(data, dict) and data["n"] == 3 and torch.equal(data["a"], torch.ones(2))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda p: None, "file not found"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"not a torch file at all"), "not a plain file of tensors"),
        (lambda p: p.write_bytes(pickle.dumps(_Evil())), "refused to load: not a plain file"),
        (lambda p: p.write_bytes(b"PK\x03\x04broken zip"), "Error"),
    ],
)
def test_every_failure_is_one_reason(tmp_path: Path, make, reason: str) -> None:
    path = tmp_path / "bad.pt"
    make(path)
    with pytest.raises(UnreadableFile, match=reason):
        load_tensors(path)
