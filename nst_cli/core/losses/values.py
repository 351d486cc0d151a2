"""Loss values as the loop sees them: read back from the device only when something looks."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch


class Losses(Mapping[str, float]):
    """One step's named losses, read back from the device only when something looks at
    them (a frame save, a bar refresh, the loss log's flush): on a GPU, reading a number is
    a sync that stalls the queue of work, so the loop itself never reads one per step."""

    def __init__(self, names: Sequence[str], values: torch.Tensor) -> None:
        self._names = tuple(names)
        self._values = values.detach()
        self._floats: dict[str, float] | None = None
        #: Whether every term is finite, as a device bool: usable without reading it.
        self.finite = torch.isfinite(self._values).all()

    @property
    def read(self) -> bool:
        """Whether the values are on the host already (reading them costs nothing more)."""
        return self._floats is not None

    def _host(self) -> dict[str, float]:
        if self._floats is None:
            Losses.read_all([self])
        assert self._floats is not None
        return self._floats

    def __getitem__(self, name: str) -> float:
        return self._host()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    @staticmethod
    def read_all(items: Sequence[Mapping[str, float]]) -> None:
        """Bring many steps' losses to the host with one transfer."""
        pending = [i for i in items if isinstance(i, Losses) and i._floats is None]
        for size in {len(p._names) for p in pending}:
            group = [p for p in pending if len(p._names) == size]
            rows = torch.stack([p._values.float() for p in group]).cpu().tolist()
            for item, row in zip(group, rows, strict=True):
                item._floats = dict(zip(item._names, row, strict=True))


def first_non_finite(items: Sequence[Mapping[str, float]]) -> int | None:
    """The index of the first of these steps' losses that is not finite (one transfer)."""
    Losses.read_all(items)
    for index, losses in enumerate(items):
        if not all(math.isfinite(v) for v in losses.values()):
            return index
    return None


@dataclass
class LossTerms:
    """Weighted total (what is minimised) and the unweighted named terms (what is logged)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]

    def lazy(self) -> Losses:
        """Every term, read back from the device only when looked at (see Losses)."""
        names = ["total", *self.terms]
        return Losses(names, torch.stack([t.detach() for t in (self.total, *self.terms.values())]))

    def as_floats(self) -> dict[str, float]:
        """Every term as a Python float (one device sync for all of them)."""
        return dict(self.lazy())
