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


def test_thousands_of_runs_make_a_page_that_loads_only_what_is_in_view(tmp_path: Path) -> None:
    count = 5000
    rows = []
    for i in range(count):
        run = tmp_path / f"run_{i:04d}"
        run.mkdir()
        (run / "losses.png").write_bytes(b"")
        rows.append(
            {"image": str(run / "final.png"), "run": run.name, "status": "completed",
             "total": 1.0 / (i + 1), "weights.style": float(i)}
        )  # fmt: skip
    page = index_html(rows, ["weights.style"], tmp_path)
    images = page.count("<img ")
    assert images == 2 * count  # each run's image and its loss curves ...
    assert page.count('loading="lazy"') == images  # ... fetched only when scrolled into view
    assert len(page.encode()) < 600 * count  # and the page itself stays small
