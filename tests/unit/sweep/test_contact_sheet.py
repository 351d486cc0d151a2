"""The contact sheet stays bounded however many runs a sweep has."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from nst_cli.sweep import report


def _runs(count: int, tmp_path: Path) -> list:
    config = SimpleNamespace(output_dir=tmp_path / "missing")  # no final.png: "not finished"
    return [SimpleNamespace(labels={"seed": str(i)}, config=config) for i in range(count)]


def test_a_small_sweep_keeps_full_size_cells(tmp_path: Path) -> None:
    sheet = report.contact_sheet(_runs(3, tmp_path), ["seed"])
    assert sheet.size == (3 * 256, 256 + 20)


def test_thousands_of_runs_make_a_bounded_sheet(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(report, "MAX_SHEET_PIXELS", 2_000_000)  # the same rule, a smaller bound
    for count in (200, 5_000):
        sheet = report.contact_sheet(_runs(count, tmp_path), ["seed"])
        assert sheet.width * sheet.height <= 2_000_000, count
    # 0.9 × 2,000,000 / (48 × 68) = 551 cells at most: 5,000 runs are sampled, not all drawn.
    sheet = report.contact_sheet(_runs(5_000, tmp_path), ["seed"])
    assert (sheet.width // 48) * (sheet.height // 68) <= 600
