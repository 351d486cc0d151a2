"""A sweep's index.html: readable numbers, sortable by their full value, thumbnails that fit."""

from __future__ import annotations

from pathlib import Path

from nst_cli.sweep.report import index_html


def test_numbers_show_four_significant_digits_and_sort_by_the_full_value(tmp_path: Path) -> None:
    rows = [
        {"image": str(tmp_path / "a" / "final.png"), "run": "a", "status": "completed",
         "total": 0.123456789, "weights.style": 2.0},
    ]  # fmt: skip
    page = index_html(rows, ["weights.style"], tmp_path)
    assert ">0.1235</td>" in page and 'data-sort="0.123456789"' in page
    assert "0.123457" not in page  # no six-digit noise
    assert 'class="wrap"' in page and "max-width" in page  # wide tables scroll, not overflow
