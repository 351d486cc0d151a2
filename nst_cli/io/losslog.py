"""The run's loss log (losses.csv): one row per step, appended as the run goes."""

from __future__ import annotations

import csv
import io

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not guarded
    fcntl = None  # type: ignore[assignment]
from collections.abc import Mapping, Sequence
from pathlib import Path

from nst_cli.io.files import write_text

#: losses.csv columns; `scale` is the long side (px) the step ran at in a coarse-to-fine run.
LOSS_COLUMNS = ("step", "scale", "elapsed_s", "total", "content", "style", "tv")


def write_loss_rows(path: Path, rows: Sequence[Mapping[str, float]]) -> None:
    """Atomically (re)write losses.csv with every row so far."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOSS_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k, 0.0)) for k in LOSS_COLUMNS})
    write_text(path, buffer.getvalue())


def read_loss_rows(path: Path) -> list[dict[str, float]]:
    """Rows of an existing losses.csv (empty if there is none)."""
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as fh:
        return [
            {k: float(v) for k, v in row.items() if k in LOSS_COLUMNS} for row in csv.DictReader(fh)
        ]


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"
