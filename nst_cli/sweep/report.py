"""A sweep's reports: summary.csv, the contact sheet and index.html."""

from __future__ import annotations

import csv
import html
import io
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from PIL import Image, ImageDraw, ImageOps

from nst_cli import __version__
from nst_cli.errors import NSTError, OutputError
from nst_cli.io.files import save_png, write_text
from nst_cli.io.images import label_font
from nst_cli.io.losslog import read_loss_rows
from nst_cli.io.rundir import RunDir, read_run_config
from nst_cli.sweep.grid import (
    ALIASES,
)
from nst_cli.sweep.plan import PlannedRun, SweepOutcome

log = logging.getLogger(__name__)


def summary_row(run: PlannedRun, scored: bool = False) -> dict[str, Any]:
    """Swept values, final losses, seconds and where the image is; with `scored`, a
    finished run's measures from `nst score` too (run.score), so runs can be ranked."""
    run_dir = RunDir(run.config.output_dir)
    try:
        rows = read_loss_rows(run_dir.losses)
    except OutputError as exc:  # one run's damaged log: its row says so, the report goes on
        log.warning("%s", exc)
        rows = []
    last = rows[-1] if rows else {}
    status = "missing"
    found = read_run_config(run_dir.config)
    if found is not None:
        status = found[1].get("status", "unknown")
    if run.error is not None:
        status = "failed"
    return {
        "run": run.name,
        **{value_column(k): run.labels[k] for k in run.values},
        "status": status,
        "total": last.get("total"),
        "content": last.get("content"),
        "style": last.get("style"),
        "tv": last.get("tv"),
        "seconds": last.get("elapsed_s"),
        "image": str(run_dir.final),
        "error": run.error or "",
        **(_measures(run_dir, status) if scored else {}),
    }


#: The `nst score` columns of a scored sweep, blank where a run has no final image.
SCORE_COLUMNS = ("style_swd", "palette_swd", "structure_ssim", "new_faces")


def _measures(run_dir: RunDir, status: str) -> dict[str, Any]:
    blank: dict[str, Any] = dict.fromkeys(SCORE_COLUMNS)
    if status != "completed" or not run_dir.final.is_file():
        return blank
    from nst_cli.run.score import score_result

    try:
        return score_result(run_dir.final).as_dict()
    except NSTError as exc:  # one run's inputs gone since: its row says nothing, the rest go on
        log.warning("%s: not scored (%s)", run_dir.root, exc)
        return blank


#: summary.csv / index.html columns that are not swept values.
REPORT_COLUMNS = ("image", "run", "status", "total", "content", "style", "tv", "seconds", "error")


def value_column(key: str) -> str:
    """The column of a swept key; `swept.content` where the key would shadow a loss column."""
    return f"swept.{key}" if key in REPORT_COLUMNS else key


def write_reports(outcome: SweepOutcome, runs: Sequence[PlannedRun]) -> None:
    """grid.png, summary.csv and index.html in the sweep folder."""
    root = outcome.root
    keys = list(runs[0].values) if runs else []
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(outcome.rows[0]) if outcome.rows else ["run"])
    writer.writeheader()
    writer.writerows(outcome.rows)
    outcome.summary = root / "summary.csv"
    write_text(outcome.summary, buffer.getvalue())
    outcome.grid = root / "grid.png"
    provenance = {
        "Software": f"nst {__version__}",
        "nst:version": __version__,
        "nst:sweep": yaml.safe_dump({run.name: run.values for run in runs}, sort_keys=False),
    }
    save_png(contact_sheet(runs, keys), outcome.grid, provenance)
    outcome.index = root / "index.html"
    write_text(outcome.index, index_html(outcome.rows, keys, root))


#: The contact sheet's size bound: past it the cells shrink (to MIN_CELL), then only an evenly
#: spread sample of the runs is shown (index.html lists them all).
MAX_SHEET_PIXELS = 64_000_000
MIN_CELL = 48


def contact_sheet(runs: Sequence[PlannedRun], keys: Sequence[str], cell: int = 256) -> Image.Image:
    """Final images in a grid: rows by the first swept key, columns by the rest; labelled.
    However many runs there are, the sheet stays under MAX_SHEET_PIXELS."""
    label_height = 20
    # 90%: a square-ish grid has up to one row and column more than the runs need.
    fits = int(0.9 * MAX_SHEET_PIXELS / (MIN_CELL * (MIN_CELL + label_height)))
    if len(runs) > fits:  # a sample, evenly spread, and a line saying so
        step = len(runs) / fits
        runs = [runs[int(i * step)] for i in range(fits)]
        keys = keys[:1]
    if len(keys) > 1:
        rows = len(dict.fromkeys(run.labels[keys[0]] for run in runs))
        columns = math.ceil(len(runs) / rows)
    else:  # one key (a batch of photos, say): one row, wrapped into a square-ish block past 8
        count = max(len(runs), 1)
        columns = count if count <= 8 else max(8, math.ceil(math.sqrt(count)))
        rows = math.ceil(count / columns)
    while cell > MIN_CELL and columns * cell * rows * (cell + label_height) > MAX_SHEET_PIXELS:
        cell = max(MIN_CELL, int(cell * 0.9))
    sheet = Image.new("RGB", (columns * cell, rows * (cell + label_height)), (24, 24, 24))
    draw = ImageDraw.Draw(sheet)
    for index, run in enumerate(runs):
        row, column = divmod(index, columns)
        x, y = column * cell, row * (cell + label_height)
        final = RunDir(run.config.output_dir).final
        if final.is_file():
            with Image.open(final) as image:
                # Scaled to fit the cell, up as well as down, so small runs stay visible.
                thumb = ImageOps.contain(
                    image.convert("RGB"), (cell, cell), Image.Resampling.LANCZOS
                )
            sheet.paste(
                thumb,
                (x + (cell - thumb.width) // 2, y + label_height + (cell - thumb.height) // 2),
            )
        else:
            draw.text((x + 8, y + label_height + cell // 2), "not finished", fill=(200, 80, 80))
        text = ", ".join(f"{ALIASES.get(k, k)}={run.labels[k]}" for k in keys)
        draw.text((x + 4, y + 3), text, fill=(235, 235, 235), font=label_font(14))
    return sheet


#: Values of the tv, error and status columns that need no column when every run has them.
_NOTHING_TO_SAY = (None, "", 0, 0.0, "completed")


def index_html(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], root: Path) -> str:
    """A self-contained page: every run's image, values and losses; click a header to sort.

    It fits a laptop window (1200 px) without sideways scrolling, the loss curves at a
    readable size: the run's name is the image's caption, a column that is empty or zero in
    every run (`error`, `tv`, `status` when all completed) is left out, and headers wrap where numbers do not. Images load
    lazily (only those scrolled into view), so a sweep or folder of thousands of runs opens
    at once and the page itself stays about half a kilobyte a run."""
    scores = [c for c in SCORE_COLUMNS if rows and c in rows[0]]
    said = [  # tv, error and status: only where some run has one to say
        c for c in REPORT_COLUMNS[2:]
        if c not in ("tv", "error", "status") or any(row.get(c) not in _NOTHING_TO_SAY for row in rows)
    ]  # fmt: skip
    columns = [*map(value_column, keys), *said, *scores]
    head = (
        '<th data-col="0">run</th>'
        + "".join(
            f'<th data-col="{i}" title="{html.escape(c)}">'
            f"{html.escape(ALIASES.get(c, c).replace('_', ' '))}</th>"
            for i, c in enumerate(columns, 1)
        )
        + f'<th data-col="{len(columns) + 1}">loss curves</th>'
    )

    body = []
    for row in rows:
        image = Path(row["image"])
        try:
            src = image.relative_to(root).as_posix()
        except ValueError:
            src = image.as_posix()
        name = html.escape(row["run"])
        cells = [
            f'<td class="run" data-sort="{name}"><a href="{html.escape(src)}"><img src="{html.escape(src)}" alt="{name}" loading="lazy" decoding="async"></a><span>{name}</span></td>'
        ]
        for column in columns:
            value = row.get(column)
            text = (
                ""
                if value is None
                else (f"{value:.4g}" if isinstance(value, float) else str(value))
            )
            sort = value if isinstance(value, int | float) else text
            cells.append(f'<td data-sort="{html.escape(str(sort))}">{html.escape(text)}</td>')
        plot = image.parent / "losses.png"
        if plot.is_file():
            href = html.escape(
                src.rsplit("/", 1)[0] + "/losses.png" if "/" in src else "losses.png"
            )
            cells.append(
                f'<td class="plot"><a href="{href}"><img class="plot" src="{href}" alt="losses" loading="lazy" decoding="async"></a></td>'
            )
        else:
            cells.append('<td class="plot"></td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        _PAGE.replace("{{HEAD}}", head)
        .replace("{{BODY}}", "\n".join(body))
        .replace("{{COUNT}}", str(len(rows)))
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>nst sweep ({{COUNT}} runs)</title>
<style>
body{font-family:system-ui,sans-serif;margin:1em;background:#fafafa;color:#222}
table{border-collapse:collapse;font-size:14px;width:100%}th,td{padding:4px 6px;border-bottom:1px solid #ddd;text-align:left;vertical-align:middle}
td{white-space:nowrap}th{cursor:pointer;background:#eee;position:sticky;top:0;max-width:7em}th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
img{display:block;height:auto}td.run img{width:clamp(120px,12.5vw,256px)}td.run span{font-size:12px;color:#555;white-space:normal}
td.plot{width:34%}img.plot{width:100%;min-width:280px;max-width:640px}
.wrap{overflow-x:auto;max-width:100%}
</style></head><body>
<h1>nst sweep: {{COUNT}} runs</h1><p>Click a column header to sort. <a href="grid.png">Contact sheet</a> · <a href="summary.csv">summary.csv</a></p>
<div class="wrap"><table id="runs"><thead><tr>{{HEAD}}</tr></thead><tbody>
{{BODY}}
</tbody></table></div>
<script>
document.querySelectorAll("#runs th").forEach(function (th) {
  th.addEventListener("click", function () {
    var col = +th.dataset.col, body = document.querySelector("#runs tbody");
    var asc = !th.classList.contains("asc");
    document.querySelectorAll("#runs th").forEach(function (h) { h.classList.remove("asc", "desc"); });
    th.classList.add(asc ? "asc" : "desc");
    var rows = Array.from(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].dataset.sort || "", y = b.cells[col].dataset.sort || "";
      var nx = parseFloat(x), ny = parseFloat(y);
      var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return asc ? r : -r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
</script></body></html>
"""
