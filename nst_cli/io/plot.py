"""The loss curves of a run as a small picture (losses.png), drawn with Pillow alone.

One chart, log scale, total/content/style (and tv when used) against the step, with the
boundaries of a coarse-to-fine run's scales marked. The live preview draws the same series in
the browser; the sweep's index.html shows this picture for every run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw

from nst_cli.io.images import label_font

#: Series drawn, with their colours (the preview page uses the same ones).
SERIES = {
    "total": (20, 20, 20),
    "content": (31, 119, 180),
    "style": (214, 39, 40),
    "tv": (44, 160, 44),
}
WIDTH, HEIGHT = 640, 360
_MARGIN = (72, 16, 16, 48)  # left, top, right, bottom
#: Large enough to read where index.html shows the chart at about two thirds of its size.
FONT_SIZE = 16


def loss_plot(rows: Sequence[Mapping[str, float]]) -> Image.Image:
    """The chart of losses.csv rows (step, scale, total, content, style, tv)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = label_font(FONT_SIZE)
    left, top, right, bottom = _MARGIN
    x0, x1, y0, y1 = left, WIDTH - right, top, HEIGHT - bottom
    draw.rectangle((x0, y0, x1, y1), outline=(180, 180, 180))
    names = [n for n in SERIES if any(float(r.get(n) or 0) > 0 for r in rows)]
    values = [float(r[n]) for r in rows for n in names if float(r.get(n) or 0) > 0]
    if len(rows) < 2 or not values:
        draw.text((x0 + 8, y0 + 8), "not enough steps to plot yet", fill=(90, 90, 90), font=font)
        return image
    steps = [float(r["step"]) for r in rows]
    s_lo, s_hi = min(steps), max(steps)
    v_lo, v_hi = math.log10(min(values)), math.log10(max(values))
    # At most 5 decades: a term that starts at ~0 (content, from the content image) would
    # otherwise squash the rest of the curves into a line.
    v_lo = max(v_lo, v_hi - 5)
    if v_hi - v_lo < 1e-9:
        v_lo, v_hi = v_lo - 0.5, v_hi + 0.5

    def to_xy(step: float, value: float) -> tuple[float, float]:
        x = x0 + (step - s_lo) / max(s_hi - s_lo, 1e-9) * (x1 - x0)
        y = y1 - (max(math.log10(value), v_lo) - v_lo) / (v_hi - v_lo) * (y1 - y0)
        return x, y

    for decade in range(math.ceil(v_lo), math.floor(v_hi) + 1):
        _, y = to_xy(s_lo, 10.0**decade)
        draw.line((x0, y, x1, y), fill=(235, 235, 235))
        draw.text((4, y - FONT_SIZE // 2), f"1e{decade}", fill=(90, 90, 90), font=font)
    previous_scale = rows[0].get("scale")
    for row in rows:
        if row.get("scale") != previous_scale:
            x, _ = to_xy(float(row["step"]), 10.0**v_lo)
            draw.line((x, y0, x, y1), fill=(200, 200, 200))
            draw.text(
                (x + 3, y0 + 2), f"{int(float(row['scale']))}px", fill=(120, 120, 120), font=font
            )
            previous_scale = row.get("scale")
    for name in names:
        points = [
            to_xy(float(r["step"]), float(r[name])) for r in rows if float(r.get(name) or 0) > 0
        ]
        if len(points) > 1:
            draw.line(points, fill=SERIES[name], width=2)
    draw.text((x0, y1 + 6), f"step {int(s_lo)}", fill=(90, 90, 90), font=font)
    last = f"step {int(s_hi)}"
    draw.text((x1 - draw.textlength(last, font=font), y1 + 6), last, fill=(90, 90, 90), font=font)
    for i, name in enumerate(names):
        x = x0 + 110 + i * 100
        draw.line((x, y1 + 16, x + 18, y1 + 16), fill=SERIES[name], width=3)
        draw.text((x + 22, y1 + 6), name, fill=(40, 40, 40), font=font)
    return image
