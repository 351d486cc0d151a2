"""The run's loss log (losses.csv): one row per step, appended as the run goes."""

from __future__ import annotations

import csv
import io

from nst_cli.errors import OutputError

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


#: A loss log larger than this is not one nst wrote for a run it can resume (a million
#: steps' rows are about 60 MB): refused before it is read.
MAX_LOSS_LOG_BYTES = 64 * 2**20


def read_loss_rows(path: Path) -> list[dict[str, float]]:
    """Rows of an existing losses.csv (empty if there is none).

    Raises:
        OutputError: the file is too large, not text, or not nst's columns of numbers; one
            line naming it and the way on.
    """
    if not path.is_file():
        return []
    way_on = "move it away to resume without it, or start over with --overwrite"
    if path.stat().st_size > MAX_LOSS_LOG_BYTES:
        raise OutputError(
            f"{path}: over {MAX_LOSS_LOG_BYTES // 2**20} MB, not a loss log nst wrote; {way_on}"
        )
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "step" not in reader.fieldnames:
                raise ValueError("no step column")
            rows = [
                {k: float(v) for k, v in row.items() if k in LOSS_COLUMNS and v not in (None, "")}
                for row in reader
            ]
        if any("step" not in row for row in rows):
            raise ValueError("a row without a step")
        return rows
    except (UnicodeDecodeError, ValueError, TypeError, csv.Error) as exc:
        raise OutputError(f"{path}: damaged loss log ({str(exc)[:80]}); {way_on}") from None


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:.6g}"
